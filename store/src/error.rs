//! The store's one error type: what failed, and whether trying again may
//! help. Callers decide by [`ErrorKind`], never by an error's text, and no
//! error's text is meant for a client (the service logs it and answers
//! with the kind).

use std::fmt;

/// What a caller should do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database or the artifact store was away, busy or slow, or a
    /// transaction lost a race with another (deadlock, serialization): the
    /// same work may pass if it is tried again.
    Transient,
    /// The change breaks a rule the schema keeps (a unique index, a check,
    /// a guarded status move): it conflicts with what is stored, and will
    /// again.
    Conflict,
    /// What is stored cannot be read as it must be (a row that does not
    /// decode, a status the code does not know).
    Corrupt,
    /// Anything else: configuration, or a fault of the program.
    Other,
}

/// A failure of the store.
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    /// A race the transaction lost, which the database undid whole.
    lost_race: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A failure of `kind`.
    pub fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            lost_race: false,
            source: source.into(),
        }
    }

    /// Stored data that does not read as it must.
    pub fn corrupt(what: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::new(ErrorKind::Corrupt, what)
    }

    /// What to do about it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same work may pass if tried again.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The same failure for another party (a batch's failure is each of
    /// its members'): its kind and its text.
    pub fn shared(&self) -> StoreError {
        StoreError::new(self.kind, self.source.to_string())
    }

    /// Whether a transaction lost a race (a deadlock, a serialization
    /// failure, a busy or locked SQLite): the database undid it whole, so
    /// running it again cannot apply anything twice.
    pub fn is_lost_race(&self) -> bool {
        self.lost_race
    }
}

impl From<oblivion_protocol::ids::NegativeId> for StoreError {
    fn from(e: oblivion_protocol::ids::NegativeId) -> Self {
        StoreError::corrupt(e)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Races a transaction can lose, which the database undoes whole:
/// PostgreSQL's serialization failure and deadlock; SQLite's busy and
/// locked, with their extended codes (busy recovery, busy snapshot, busy
/// timeout; locked shared cache, locked virtual table).
const LOST_RACE: &[&str] = &[
    "40001", "40P01", "5", "6", "261", "262", "517", "773", "518",
];

/// PostgreSQL's other codes for a failure worth trying again: too many
/// connections, the server shutting down or starting, and the connection
/// exceptions (class 08).
const PG_TRANSIENT: &[&str] = &[
    "53300", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006",
];

/// Raised by a trigger: PostgreSQL's `RAISE EXCEPTION` and SQLite's
/// `RAISE(ABORT, …)` (a constraint by a trigger), and SQLite's plain
/// constraint failure. The schema's triggers guard status moves.
const RAISED: &[&str] = &["P0001", "1811", "19"];

/// What to do about `e`, and whether it is a race its transaction lost.
fn classify(e: &sqlx::Error) -> (ErrorKind, bool) {
    use sqlx::Error as E;
    if let E::Database(d) = e {
        let code = d.code();
        let code = code.as_deref().unwrap_or_default();
        if LOST_RACE.contains(&code) {
            return (ErrorKind::Transient, true);
        }
    }
    let kind = match e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => ErrorKind::Transient,
        E::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or_default();
            if PG_TRANSIENT.contains(&code) {
                ErrorKind::Transient
            } else if RAISED.contains(&code) || !matches!(d.kind(), sqlx::error::ErrorKind::Other) {
                ErrorKind::Conflict
            } else {
                ErrorKind::Other
            }
        }
        E::Decode(_) | E::ColumnDecode { .. } | E::ColumnNotFound(_) | E::TypeNotFound { .. } => {
            ErrorKind::Corrupt
        }
        _ => ErrorKind::Other,
    };
    (kind, false)
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let (kind, lost_race) = classify(&e);
        StoreError {
            lost_race,
            ..StoreError::new(kind, e)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            e => StoreError::new(ErrorKind::Other, e),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::corrupt(e)
    }
}

/// A failure of the artifact store: a missing blob is not one (reads
/// answer `None`), so every I/O error is the disk or the object store
/// being away or full for now.
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::new(ErrorKind::Transient, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_transient_and_a_bad_row_corrupt() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from(sqlx::Error::Io(io)).is_transient());
        let bad = serde_json::from_str::<u32>("x").unwrap_err();
        assert_eq!(StoreError::from(bad).kind(), ErrorKind::Corrupt);
        assert_eq!(
            StoreError::from(sqlx::Error::RowNotFound).kind(),
            ErrorKind::Other
        );
    }
}
