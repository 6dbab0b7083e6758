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
    (
        13,
        "models",
        Sql::Dialects {
            sqlite: include_str!("../migrations/sqlite/0013_models.sql"),
            postgres: include_str!("../migrations/postgres/0013_models.sql"),
        },
    ),
    (
        14,
        "market",
        Sql::Shared(include_str!("../migrations/0014_market.sql")),
    ),
    (
        15,
        "chain history",
        Sql::Shared(include_str!("../migrations/0015_chain_history.sql")),
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

/// The migrations of `backend`, up to version `last`.
#[derive(Debug)]
struct Source(Backend, i64);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            let mut all = migrations(self.0);
            all.retain(|m| m.version <= self.1);
            Ok(all)
        })
    }
}

/// Applies the migrations `pool` lacks.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    Migrator::new(Source(backend, i64::MAX))
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
        (13, "23c15f4d054ee780", "431b6f8abe474de9"),
        (14, "249eea7e09fc0f5f", "c8bbd1392f60592b"),
        (15, "1acdabc4f19e7d44", "d3416e6bc8941db8"),
    ];

    /// A database at `version`, in memory, with a completed training job
    /// and an inference job, as the builds of that version wrote them.
    async fn with_completed_jobs(version: i64) -> AnyPool {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Migrator::new(Source(Backend::Sqlite, version))
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let training = r#"{"name":"iris","model":{"kind":"mlp","hidden":[16]},"dataset":{"builtin":"iris"},"rounds":2,"shards_per_round":2,"batch_size":8,"optimizer":{"kind":"adam","learning_rate":0.01}}"#;
        let inference = r#"{"task":"inference","name":"rows","model":{"job":1},"inputs":{"builtin":"iris"},"shards":2}"#;
        for (id, spec) in [(1, training), (2, inference)] {
            sqlx::query(
                "INSERT INTO jobs (id, name, spec, status, round, global_sha, input_shape, classes, \
                 validation_sha, train_samples, validation_samples, round_started_at, created_at, \
                 creator) VALUES ($1, 'j', $2, 'completed', 2, 'g', '[4]', 3, 'v', 120, 30, 0, 7, \
                 '0xabc')",
            )
            .bind(id)
            .bind(spec)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO rounds (job_id, round, global_sha, loss, accuracy, train_loss, \
                 updates, seconds, train_seconds, aggregate_seconds) \
                 VALUES ($1, 2, 'g', 0.25, 0.9, 0.3, 2, 1, 1, 0)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool
    }

    #[tokio::test]
    async fn the_jobs_completed_before_the_registry_enter_it() {
        let pool = with_completed_jobs(11).await;
        run(&pool, Backend::Sqlite).await.unwrap();
        let model: String = sqlx::query_scalar("SELECT model FROM jobs WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            model, r#"{"kind":"mlp","hidden":[16]}"#,
            "the architecture column"
        );
        let entries: Vec<(i64, String, f64, i64)> =
            sqlx::query_as("SELECT job_id, dataset, accuracy, rounds FROM models")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            entries,
            vec![(1, r#"{"builtin":"iris"}"#.to_string(), 0.9, 2)],
            "the training job's model, not the inference job's"
        );
    }

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
