//! The ids of stored records, one type each: a lease's id cannot be passed
//! where a job's is meant. On the wire and in JSON each is its number.
//!
//! The database keys rows with signed 64-bit integers and hands out only
//! positive ones, so an id converts from a row's `i64` checked
//! ([`TryFrom<i64>`]) and back with [`JobId::db`] and its twins.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored id that is negative, which no row has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} id is never negative, got {value}")]
pub struct NegativeId {
    /// Which record's id.
    pub kind: &'static str,
    /// The value read.
    pub value: i64,
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The id as the database stores it. Ids come from the
            /// database's positive row ids, so they fit.
            pub fn db(self) -> i64 {
                i64::try_from(self.0).unwrap_or(i64::MAX)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = NegativeId;

            fn try_from(value: i64) -> Result<Self, NegativeId> {
                u64::try_from(value)
                    .map($name)
                    .map_err(|_| NegativeId { kind: $kind, value })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIntError;

            fn from_str(s: &str) -> Result<Self, ParseIntError> {
                s.parse().map($name)
            }
        }
    };
}

id!(
    /// A job's id.
    JobId,
    "job"
);
id!(
    /// A lease's id: one grant of one shard to one worker.
    LeaseId,
    "lease"
);
id!(
    /// A worker's id, given by the coordinator at each connection.
    WorkerId,
    "worker"
);
id!(
    /// A model's id in the registry.
    ModelId,
    "model"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_number_on_the_wire_and_in_the_database() {
        let id = JobId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<JobId>("42").unwrap(), id);
        assert_eq!(id.db(), 42);
        assert_eq!(JobId::try_from(42i64), Ok(id));
        assert_eq!("42".parse::<JobId>(), Ok(id));
        assert_eq!(id.to_string(), "42");
    }

    #[test]
    fn a_negative_stored_id_is_refused_by_name() {
        let err = LeaseId::try_from(-1i64).unwrap_err();
        assert_eq!(err.to_string(), "a lease id is never negative, got -1");
    }
}
