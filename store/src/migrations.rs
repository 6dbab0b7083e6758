//! Versioned schema migrations, embedded in the binary and applied at
//! start-up by sqlx's migrator (which records them in `_sqlx_migrations`).
//!
//! The files live in `store/migrations/<backend>/`, one directory per
//! database, with the same versions in both. They are listed
//! here with `include_str!` rather than through `sqlx::migrate!`, whose
//! proc-macro would build a second copy of the database drivers for the
//! host just to read a directory.
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

/// (version, description, SQL).
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "guarded transitions",
        include_str!("../migrations/sqlite/0002_guarded_transitions.sql"),
    ),
    (
        3,
        "instances",
        include_str!("../migrations/sqlite/0003_instances.sql"),
    ),
    (
        4,
        "shared instances",
        include_str!("../migrations/sqlite/0004_shared_instances.sql"),
    ),
    (
        5,
        "collection",
        include_str!("../migrations/sqlite/0005_collection.sql"),
    ),
    (
        6,
        "accounts",
        include_str!("../migrations/sqlite/0006_accounts.sql"),
    ),
    (
        7,
        "payments",
        include_str!("../migrations/sqlite/0007_payments.sql"),
    ),
    (
        8,
        "trust",
        include_str!("../migrations/sqlite/0008_trust.sql"),
    ),
    (
        9,
        "established accounts",
        include_str!("../migrations/sqlite/0009_established.sql"),
    ),
    (
        10,
        "settlement grace",
        include_str!("../migrations/sqlite/0010_settlement_grace.sql"),
    ),
    (
        11,
        "backup leases",
        include_str!("../migrations/sqlite/0011_backup_leases.sql"),
    ),
];

const POSTGRES: Embedded = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "guarded transitions",
        include_str!("../migrations/postgres/0002_guarded_transitions.sql"),
    ),
    (
        3,
        "instances",
        include_str!("../migrations/postgres/0003_instances.sql"),
    ),
    (
        4,
        "shared instances",
        include_str!("../migrations/postgres/0004_shared_instances.sql"),
    ),
    (
        5,
        "collection",
        include_str!("../migrations/postgres/0005_collection.sql"),
    ),
    (
        6,
        "accounts",
        include_str!("../migrations/postgres/0006_accounts.sql"),
    ),
    (
        7,
        "payments",
        include_str!("../migrations/postgres/0007_payments.sql"),
    ),
    (
        8,
        "trust",
        include_str!("../migrations/postgres/0008_trust.sql"),
    ),
    (
        9,
        "established accounts",
        include_str!("../migrations/postgres/0009_established.sql"),
    ),
    (
        10,
        "settlement grace",
        include_str!("../migrations/postgres/0010_settlement_grace.sql"),
    ),
    (
        11,
        "backup leases",
        include_str!("../migrations/postgres/0011_backup_leases.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Applies the migrations `pool` lacks.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let embedded = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    Migrator::new(Source(embedded))
        .await
        .map_err(StoreError::from)?
        .run(pool)
        .await
        .map_err(StoreError::from)
}
