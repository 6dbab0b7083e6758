//! An account's private key and what it signs.

use alloy::primitives::{Address, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use oblivion_protocol::auth::{SignIn, SignInChallenge};

/// Why a key or a signature is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not 32 bytes of hex, or not a valid secp256k1 scalar.
    #[error("the key is not a 32-byte hex private key")]
    Malformed,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A secp256k1 private key: an Ethereum account.
#[derive(Clone)]
pub struct Key(PrivateKeySigner);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "Key({})", self.address())
    }
}

impl Key {
    /// Parses a hex private key, with or without `0x`.
    pub fn parse(hex_key: &str) -> Result<Key, KeyError> {
        hex_key
            .trim()
            .parse::<PrivateKeySigner>()
            .map(Key)
            .map_err(|_| KeyError::Malformed)
    }

    /// The account's address, EIP-55 checksummed.
    pub fn address(&self) -> String {
        self.0.address().to_checksum(None)
    }

    /// The account's address.
    pub fn address_bytes(&self) -> Address {
        self.0.address()
    }

    /// EIP-191 `personal_sign` of `message`, as `0x` hex of 65 bytes.
    pub fn sign_message(&self, message: &str) -> Result<String, KeyError> {
        let sig: Signature = self
            .0
            .sign_message_sync(message.as_bytes())
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(format!("0x{}", hex::encode(sig.as_bytes())))
    }

    /// The underlying signer (for transactions and typed data).
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.0
    }
}

/// The EIP-55 checksummed form of a `0x` hex address (as EIP-4361 messages
/// carry it), or `None` when it is not one.
pub fn checksummed(address: &str) -> Option<String> {
    address.parse::<Address>().ok().map(|a| a.to_checksum(None))
}

/// The signed answer to `challenge` for `key` on `chain_id`.
pub fn sign_in(challenge: &SignInChallenge, key: &Key, chain_id: u64) -> Result<SignIn, KeyError> {
    let message = challenge.message(&key.address(), chain_id);
    let signature = key.sign_message(&message)?;
    Ok(SignIn { message, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// anvil's first development account (public knowledge, no funds).
    const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn a_key_knows_its_address_and_signs_recoverably() {
        let key = Key::parse(DEV_KEY).unwrap();
        assert_eq!(key.address(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        let sig = key.sign_message("hello").unwrap();
        let bytes = hex::decode(sig.trim_start_matches("0x")).unwrap();
        let sig = Signature::try_from(bytes.as_slice()).unwrap();
        assert_eq!(
            sig.recover_address_from_msg("hello").unwrap(),
            key.address_bytes()
        );
        assert!(Key::parse("0x1234").is_err());
        assert!(!format!("{key:?}").contains("ac0974"));
        assert_eq!(
            checksummed("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266").as_deref(),
            Some("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
        for wallet_form in [
            "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        ] {
            assert_eq!(
                checksummed(wallet_form).as_deref(),
                Some("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
            );
        }
        assert_eq!(checksummed("0x1234"), None);
    }
}
