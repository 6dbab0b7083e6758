//! Amounts of the chain's currency, in wei.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest amount: 2^256 - 1, what an EVM word holds.
const MAX: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// An amount of wei: a whole number from 0 to 2^256 - 1. Written as a
/// decimal string, on the wire and in the database, because JSON numbers
/// cannot hold 256 bits. Kept as its canonical digits (no leading zero),
/// so that amounts compare and print without big-number arithmetic here;
/// the chain crate converts to and from its `U256`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Wei(String);

/// Text that is not an amount of wei.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number of wei below 2^256, as a decimal string; got {0:?}")]
pub struct NotWei(pub String);

impl Wei {
    /// Nothing.
    pub fn zero() -> Wei {
        Wei("0".into())
    }

    /// Parses decimal digits (leading zeros allowed, nothing else).
    pub fn parse(text: &str) -> Result<Wei, NotWei> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotWei(text.to_string()));
        }
        let digits = text.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.len() > MAX.len() || (digits.len() == MAX.len() && digits > MAX) {
            return Err(NotWei(text.to_string()));
        }
        Ok(Wei(digits.to_string()))
    }

    /// Its decimal digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is nothing.
    pub fn is_zero(&self) -> bool {
        self.0 == "0"
    }
}

impl From<u64> for Wei {
    fn from(n: u64) -> Wei {
        Wei(n.to_string())
    }
}

impl TryFrom<String> for Wei {
    type Error = NotWei;

    fn try_from(text: String) -> Result<Wei, NotWei> {
        Wei::parse(&text)
    }
}

impl From<Wei> for String {
    fn from(w: Wei) -> String {
        w.0
    }
}

impl std::str::FromStr for Wei {
    type Err = NotWei;

    fn from_str(text: &str) -> Result<Wei, NotWei> {
        Wei::parse(text)
    }
}

impl fmt::Display for Wei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Numeric order: canonical digits compare by length, then digit by digit.
impl Ord for Wei {
    fn cmp(&self, other: &Wei) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Wei {
    fn partial_cmp(&self, other: &Wei) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_is_canonical_digits_below_two_to_the_256() {
        assert_eq!(Wei::parse("000120").unwrap().as_str(), "120");
        assert!(Wei::parse("0").unwrap().is_zero());
        assert!(Wei::parse(MAX).is_ok());
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        for bad in [
            "",
            "12.5",
            "-1",
            "1e18",
            " 1",
            "0x10",
            over,
            &"9".repeat(79),
        ] {
            assert!(Wei::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            NotWei("12.5".into())
                .to_string()
                .contains("whole number of wei")
        );
    }

    #[test]
    fn amounts_order_as_numbers_and_travel_as_strings() {
        let (small, big) = (Wei::from(9), Wei::parse("10").unwrap());
        assert!(small < big && big > Wei::zero());
        assert_eq!(serde_json::to_string(&big).unwrap(), "\"10\"");
        assert_eq!(
            serde_json::from_str::<Wei>("\"007\"").unwrap(),
            Wei::from(7)
        );
        assert!(
            serde_json::from_str::<Wei>("7").is_err(),
            "a number is refused"
        );
    }
}
