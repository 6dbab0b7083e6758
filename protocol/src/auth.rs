//! Accounts: Sign-In with Ethereum (EIP-4361).
//!
//! A person's wallet is their account. Signing in takes two requests:
//! `POST /api/auth/nonce` answers a [`SignInChallenge`] (what the message
//! must say, with a single-use nonce); the client puts its address in
//! [`SignInChallenge::message`], has the wallet sign that text
//! (`personal_sign`, EIP-191), and sends both as a [`SignIn`] to
//! `POST /api/auth/login`. The coordinator parses and checks the message with
//! an EIP-4361 library and answers a [`SessionView`] with an HTTP-only cookie.

use serde::{Deserialize, Serialize};

/// Name of the session cookie over plain HTTP (HTTP-only: page scripts
/// never see it).
pub const SESSION_COOKIE: &str = "oblivion_session";

/// Name of the session cookie over HTTPS. Browsers take a `__Host-` cookie
/// only when it is `Secure`, has `Path=/` and no `Domain`, so a sibling
/// subdomain cannot plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-oblivion_session";

/// `POST /api/auth/nonce` answer: every field of the message but the
/// signer's address (and, when the coordinator names none, the chain id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInChallenge {
    /// The coordinator's authority (`host[:port]`) the message must name.
    pub domain: String,
    /// The URI the message must name (the coordinator's origin).
    pub uri: String,
    /// A single-use nonce (alphanumeric, as EIP-4361 asks).
    pub nonce: String,
    /// RFC 3339 time the challenge was made.
    pub issued_at: String,
    /// RFC 3339 time after which the message is refused.
    pub expiration_time: String,
    /// The human line the wallet shows.
    pub statement: String,
    /// The chain the coordinator settles on; the message must name it. When
    /// `None`, the wallet's own chain is named.
    pub chain_id: Option<u64>,
}

impl SignInChallenge {
    /// The EIP-4361 message for `address` (EIP-55 checksummed) on `chain_id`
    /// (ignored when the challenge names a chain).
    ///
    /// Written out here rather than with an EIP-4361 crate: the client only
    /// fills in a fixed template, and the coordinator parses and checks the
    /// result with a full implementation, so a mistake here is refused there.
    pub fn message(&self, address: &str, chain_id: u64) -> String {
        let chain_id = self.chain_id.unwrap_or(chain_id);
        format!(
            "{domain} wants you to sign in with your Ethereum account:\n\
             {address}\n\
             \n\
             {statement}\n\
             \n\
             URI: {uri}\n\
             Version: 1\n\
             Chain ID: {chain_id}\n\
             Nonce: {nonce}\n\
             Issued At: {issued_at}\n\
             Expiration Time: {expiration_time}",
            domain = self.domain,
            statement = self.statement,
            uri = self.uri,
            nonce = self.nonce,
            issued_at = self.issued_at,
            expiration_time = self.expiration_time,
        )
    }
}

/// `POST /api/auth/login` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// The EIP-4361 message, exactly as signed.
    pub message: String,
    /// The 65-byte EIP-191 signature, `0x`-prefixed hex.
    pub signature: String,
}

/// `POST /api/auth/login` and `GET /api/auth/session` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The signed-in account, lower-case `0x` hex.
    pub address: String,
    /// When the session ends, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Lower-case `0x` hex of a 20-byte address, or `None` when `s` is not one.
pub fn normalize_address(s: &str) -> Option<String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_follows_the_eip_4361_layout() {
        let c = SignInChallenge {
            domain: "127.0.0.1:8080".into(),
            uri: "http://127.0.0.1:8080".into(),
            nonce: "abcdEFGH1234".into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            expiration_time: "2026-01-01T00:10:00Z".into(),
            statement: "Sign in to Oblivion.".into(),
            chain_id: None,
        };
        let m = c.message("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", 31337);
        assert_eq!(
            m,
            "127.0.0.1:8080 wants you to sign in with your Ethereum account:\n\
             0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to Oblivion.\n\n\
             URI: http://127.0.0.1:8080\nVersion: 1\nChain ID: 31337\n\
             Nonce: abcdEFGH1234\nIssued At: 2026-01-01T00:00:00Z\n\
             Expiration Time: 2026-01-01T00:10:00Z"
        );
        let fixed = SignInChallenge {
            chain_id: Some(80002),
            ..c
        };
        assert!(fixed.message("0x00", 1).contains("Chain ID: 80002\n"));
    }

    #[test]
    fn addresses_normalize_to_lower_case() {
        assert_eq!(
            normalize_address("0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266").as_deref(),
            Some("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
        );
        assert_eq!(normalize_address("0x1234"), None);
        assert_eq!(
            normalize_address("f39fd6e51aad88f6f4ce6ab8827279cfffb92266"),
            None
        );
    }
}
