//! The address of a stored blob (weights, a data shard, an update, an
//! uploaded file): the sha256 of its bytes. Every part that names a blob
//! (the wire, the spec, the database, the artifact store) names it by this
//! type, so a blob's address is checked once, where it is read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A blob's sha256. Written as 64 lowercase hex digits on the wire, in
/// URLs and in the database; kept as its 32 bytes, so it is `Copy` and an
/// invalid one cannot exist.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId([u8; 32]);

/// Text that is not a blob's address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be a sha256 (64 lowercase hex digits); got {0:?}")]
pub struct NotBlobId(pub String);

impl BlobId {
    /// The address of these bytes.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hex digits (the only spelling, so that one
    /// blob has one address in text too).
    pub fn parse(text: &str) -> Result<BlobId, NotBlobId> {
        let lowercase = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut bytes = [0; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) if lowercase => Ok(BlobId(bytes)),
            _ => Err(NotBlobId(text.chars().take(80).collect())),
        }
    }

    /// Its hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex digits, for logs and pages (at most 64).
    pub fn short(&self, n: usize) -> String {
        let mut text = self.hex();
        text.truncate(n);
        text
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short(12))
    }
}

impl FromStr for BlobId {
    type Err = NotBlobId;

    fn from_str(text: &str) -> Result<BlobId, NotBlobId> {
        BlobId::parse(text)
    }
}

impl TryFrom<String> for BlobId {
    type Error = NotBlobId;

    fn try_from(text: String) -> Result<BlobId, NotBlobId> {
        BlobId::parse(&text)
    }
}

impl From<BlobId> for String {
    fn from(id: BlobId) -> String {
        id.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_named_by_the_sha256_of_its_bytes() {
        // sha256("abc"), from FIPS 180-2's examples.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(BlobId::of(b"abc").to_string(), abc);
        assert_eq!(abc.parse::<BlobId>().unwrap(), BlobId::of(b"abc"));
        assert_eq!(BlobId::of(b"abc").short(8), "ba7816bf");
    }

    #[test]
    fn only_64_lowercase_hex_digits_name_a_blob() {
        let abc = BlobId::of(b"abc").to_string();
        for bad in [
            String::new(),
            abc[..63].to_string(),
            format!("{abc}0"),
            abc.to_uppercase(),
            format!("../{}", &abc[3..]),
            "g".repeat(64),
        ] {
            assert!(BlobId::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_blob_id_travels_as_its_hex_and_is_checked_while_read() {
        let id = BlobId::of(b"weights");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
        let err = serde_json::from_str::<BlobId>("\"w1\"").unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
    }
}
