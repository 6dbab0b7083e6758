//! Which database a URL names, and the SQL that differs between the two.

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: embedded, one instance.
    Sqlite,
    /// `postgres://…`: shared by several instances.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or a readable refusal.
    pub fn of(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(format!(
                "database URL {url:?} is neither sqlite://PATH nor postgres://…"
            ))
        }
    }
}
