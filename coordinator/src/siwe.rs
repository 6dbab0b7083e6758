//! Checking a Sign-In with Ethereum (EIP-4361) answer: a pure function of
//! the message, the signature, what this coordinator expects, and the time.
//! The single use of the nonce is the database's part (see
//! `Db::take_nonce`).

use std::str::FromStr;

use oblivion_protocol::auth::SignIn;
use signinwithethereum::Message;
use time::OffsetDateTime;

/// Largest sign-in message, bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Tolerated clock difference for a message's `Issued At`.
const CLOCK_SKEW: time::Duration = time::Duration::seconds(60);

/// What a message must say.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// This coordinator's authority (`host[:port]`).
    pub domain: &'a str,
    /// The chain the coordinator settles on, if any.
    pub chain_id: Option<u64>,
    /// Now.
    pub now: OffsetDateTime,
    /// Longest a message may stay valid (from now).
    pub max_validity: time::Duration,
}

/// A message whose signature and fields check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signer, lower-case `0x` hex.
    pub address: String,
    /// The nonce it carries (still to be taken, once, from the database).
    pub nonce: String,
}

/// Checks `answer` against `expected`; the error says what is wrong.
pub fn verify(answer: &SignIn, expected: &Expected) -> Result<Verified, String> {
    if answer.message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the sign-in message is longer than {MAX_MESSAGE_BYTES} bytes"
        ));
    }
    let message = Message::from_str(&answer.message)
        .map_err(|e| format!("the sign-in message is not an EIP-4361 message: {e}"))?;
    // The library checks the signature over its own rendering of the
    // message: it must be the text that was signed.
    if message.to_string() != answer.message {
        return Err("the sign-in message is not in EIP-4361's canonical layout".into());
    }
    let domain = message.domain.as_str();
    if domain != expected.domain {
        return Err(format!(
            "the sign-in message is for {domain}, not for this coordinator ({})",
            expected.domain
        ));
    }
    if message.uri.authority_str() != Some(expected.domain) {
        return Err(format!(
            "the sign-in message's URI {} is not on {}",
            message.uri, expected.domain
        ));
    }
    if let Some(chain) = expected.chain_id
        && message.chain_id != chain
    {
        return Err(format!(
            "the sign-in message names chain {}, this coordinator settles on chain {chain}",
            message.chain_id
        ));
    }
    let Some(expires) = &message.expiration_time else {
        return Err("the sign-in message has no Expiration Time".into());
    };
    if !(*expires > expected.now) {
        return Err("the sign-in message has expired; ask for a new nonce".into());
    }
    if !(*expires <= expected.now + expected.max_validity) {
        return Err(format!(
            "the sign-in message stays valid for longer than {} s",
            expected.max_validity.whole_seconds()
        ));
    }
    if !message.valid_at(&expected.now) {
        return Err("the sign-in message is not valid yet (Not Before)".into());
    }
    if !(message.issued_at <= expected.now + CLOCK_SKEW) {
        return Err("the sign-in message was issued in the future".into());
    }
    let signature = answer
        .signature
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 65]>::try_from(b).ok())
        .ok_or("the signature is not 65 bytes of 0x-prefixed hex")?;
    message.verify_eip191(&signature).map_err(|_| {
        format!(
            "the signature was not made by {}",
            signinwithethereum::eip55(&message.address)
        )
    })?;
    Ok(Verified {
        address: format!("0x{}", hex::encode(message.address)),
        nonce: message.nonce,
    })
}

/// RFC 3339 of `t`, as challenges and messages carry times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_chain::{Key, sign_in};
    use oblivion_protocol::auth::SignInChallenge;

    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const OTHER: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn challenge(now: OffsetDateTime) -> SignInChallenge {
        SignInChallenge {
            domain: "127.0.0.1:8080".into(),
            uri: "http://127.0.0.1:8080".into(),
            nonce: "abcdEFGH1234".into(),
            issued_at: rfc3339(now),
            expiration_time: rfc3339(now + time::Duration::minutes(10)),
            statement: "Sign in to Oblivion.".into(),
            chain_id: Some(31337),
        }
    }

    fn expected(now: OffsetDateTime) -> Expected<'static> {
        Expected {
            domain: "127.0.0.1:8080",
            chain_id: Some(31337),
            now,
            max_validity: time::Duration::minutes(15),
        }
    }

    #[test]
    fn a_signed_challenge_verifies_as_its_signer() {
        let now = OffsetDateTime::now_utc();
        let key = Key::parse(KEY).unwrap();
        let answer = sign_in(&challenge(now), &key, 1).unwrap();
        let v = verify(&answer, &expected(now)).unwrap();
        assert_eq!(v.address, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
        assert_eq!(v.nonce, "abcdEFGH1234");
    }

    #[test]
    fn forged_expired_and_foreign_messages_are_refused() {
        let now = OffsetDateTime::now_utc();
        let key = Key::parse(KEY).unwrap();
        let other = Key::parse(OTHER).unwrap();
        let good = sign_in(&challenge(now), &key, 1).unwrap();

        // Signed by another key, or altered after signing.
        let forged = SignIn {
            signature: other.sign_message(&good.message).unwrap(),
            ..good.clone()
        };
        assert!(
            verify(&forged, &expected(now))
                .unwrap_err()
                .contains("not made by")
        );
        let altered = SignIn {
            message: good.message.replace("abcdEFGH1234", "abcdEFGH9999"),
            ..good.clone()
        };
        assert!(
            verify(&altered, &expected(now))
                .unwrap_err()
                .contains("not made by")
        );

        // Expired.
        let later = now + time::Duration::minutes(11);
        assert!(
            verify(&good, &expected(later))
                .unwrap_err()
                .contains("expired")
        );

        // Another domain.
        let mut c = challenge(now);
        c.domain = "evil.example".into();
        c.uri = "https://evil.example".into();
        let foreign = sign_in(&c, &key, 1).unwrap();
        assert!(
            verify(&foreign, &expected(now))
                .unwrap_err()
                .contains("evil.example")
        );

        // Another chain.
        let mut c = challenge(now);
        c.chain_id = Some(1);
        let wrong_chain = sign_in(&c, &key, 1).unwrap();
        assert!(
            verify(&wrong_chain, &expected(now))
                .unwrap_err()
                .contains("chain 1")
        );

        // Valid for too long.
        let mut c = challenge(now);
        c.expiration_time = rfc3339(now + time::Duration::days(30));
        let long = sign_in(&c, &key, 1).unwrap();
        assert!(
            verify(&long, &expected(now))
                .unwrap_err()
                .contains("longer than")
        );

        // Garbage.
        let junk = SignIn {
            message: "hello".into(),
            signature: "0x00".into(),
        };
        assert!(
            verify(&junk, &expected(now))
                .unwrap_err()
                .contains("EIP-4361")
        );
    }
}
