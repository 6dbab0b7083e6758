//! Versioned schema migrations, embedded in the binary and applied at
//! start-up by sqlx's migrator (which records them in `_sqlx_migrations`).
//!
//! One set of migrations for both databases: `store/migrations/NNNN_*.sql`
//! is written once, with `{float}` and `{bigint}` where the type names
//! differ (`REAL`/`INTEGER` on SQLite, `DOUBLE PRECISION`/`BIGINT` on
//! PostgreSQL); a version whose SQL truly differs (row ids, triggers) has
//! one file per database under `store/migrations/<backend>/`. They are
//! listed here with `include_str!` rather than through `sqlx::migrate!`,
//! whose proc-macro would build a second copy of the database drivers for
//! the host just to read a directory.
//!
//! sqlx checks every applied migration against its checksum, so each
//! database's text of a shipped version must never change: the tests pin
//! them.
//!
//! The first migration is the schema of the builds before migrations
//! existed, written with `IF NOT EXISTS`, so such a data directory upgrades
//! in place.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::backend::Backend;
use crate::error::StoreError;

/// A migration's SQL: one text for both databases, or one each.
enum Sql {
    Shared(&'static str),
    Dialects {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

/// Every migration: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, Sql)] = &[
    (
        1,
        "initial",
        Sql::Dialects {
            sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
            postgres: include_str!("../migrations/postgres/0001_initial.sql"),
        },
    ),
    (
        2,
        "guarded transitions",
        Sql::Dialects {
            sqlite: include_str!("../migrations/sqlite/0002_guarded_transitions.sql"),
            postgres: include_str!("../migrations/postgres/0002_guarded_transitions.sql"),
        },
    ),
    (
        3,
        "instances",
        Sql::Shared(include_str!("../migrations/0003_instances.sql")),
    ),
    (
        4,
        "shared instances",
        Sql::Shared(include_str!("../migrations/0004_shared_instances.sql")),
    ),
    (
        5,
        "collection",
        Sql::Shared(include_str!("../migrations/0005_collection.sql")),
    ),
    (
        6,
        "accounts",
        Sql::Shared(include_str!("../migrations/0006_accounts.sql")),
    ),
    (
        7,
        "payments",
        Sql::Dialects {
            sqlite: include_str!("../migrations/sqlite/0007_payments.sql"),
            postgres: include_str!("../migrations/postgres/0007_payments.sql"),
        },
    ),
    (
        8,
        "trust",
        Sql::Shared(include_str!("../migrations/0008_trust.sql")),
    ),
    (
        9,
        "established accounts",
        Sql::Shared(include_str!("../migrations/0009_established.sql")),
    ),
    (
        10,
        "settlement grace",
        Sql::Shared(include_str!("../migrations/0010_settlement_grace.sql")),
    ),
    (
        11,
        "backup leases",
        Sql::Shared(include_str!("../migrations/0011_backup_leases.sql")),
    ),
    (
        12,
        "inference",
        Sql::Dialects {
            sqlite: include_str!("../migrations/sqlite/0012_inference.sql"),
            postgres: include_str!("../migrations/postgres/0012_inference.sql"),
        },
    ),
];

impl Sql {
    /// The text `backend` runs.
    fn text(&self, backend: Backend) -> Cow<'static, str> {
        match (self, backend) {
            (Sql::Dialects { sqlite, .. }, Backend::Sqlite) => Cow::Borrowed(sqlite),
            (Sql::Dialects { postgres, .. }, Backend::Postgres) => Cow::Borrowed(postgres),
            (Sql::Shared(sql), _) if !sql.contains('{') => Cow::Borrowed(sql),
            (Sql::Shared(sql), Backend::Sqlite) => Cow::Owned(
                sql.replace("{float}", "REAL")
                    .replace("{bigint}", "INTEGER"),
            ),
            (Sql::Shared(sql), Backend::Postgres) => Cow::Owned(
                sql.replace("{float}", "DOUBLE PRECISION")
                    .replace("{bigint}", "BIGINT"),
            ),
        }
    }
}

/// The migrations as `backend` runs them.
fn migrations(backend: Backend) -> Vec<Migration> {
    MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.text(backend),
                false,
            )
        })
        .collect()
}

#[derive(Debug)]
struct Source(Backend);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(migrations(self.0)) })
    }
}

/// Applies the migrations `pool` lacks.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    Migrator::new(Source(backend))
        .await
        .map_err(StoreError::from)?
        .run(pool)
        .await
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of each shipped version's checksum (sha384 of its text),
    /// per database, as databases made by earlier builds recorded them.
    const SHIPPED: &[(i64, &str, &str)] = &[
        (1, "9030de70b41486e9", "ac4e6caf5712b504"),
        (2, "e63d132bdbefbd42", "788d75f811a7c3cc"),
        (3, "23c9b196e2c88dd0", "f19ebac86d84886c"),
        (4, "5824d586b61d2b19", "5824d586b61d2b19"),
        (5, "ff9279064fd8a54b", "aa44212b7d01f109"),
        (6, "501f2d2b38190aad", "a3c6d991d6ca94f3"),
        (7, "b4adae2c844e40f1", "eee4301bedbfef39"),
        (8, "67433f49552501cd", "bf74f7bf2855e179"),
        (9, "251e5742ba6205e7", "92472224984c8140"),
        (10, "1c179c38abb792b3", "1c179c38abb792b3"),
        (11, "30da70573fdd120d", "30da70573fdd120d"),
        (12, "615cae162e1500d2", "c5e1834cf9be0fb1"),
    ];

    #[test]
    fn every_shipped_migration_reads_as_it_was_applied() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let migrations = migrations(backend);
            assert!(migrations.len() >= SHIPPED.len());
            for (version, sqlite, postgres) in SHIPPED {
                let m = migrations
                    .iter()
                    .find(|m| m.version == *version)
                    .unwrap_or_else(|| panic!("version {version} is gone"));
                let expected = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                assert_eq!(
                    &hex::encode(&*m.checksum)[..16],
                    *expected,
                    "version {version} on {backend:?} no longer reads as it was applied"
                );
                assert!(
                    !m.sql.contains('{'),
                    "version {version} on {backend:?} has a placeholder left"
                );
            }
        }
    }
}
