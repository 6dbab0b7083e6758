//! The database: the one source of truth for jobs, rounds, shards, leases,
//! updates and workers' counters. SQLite (embedded, the default) or
//! PostgreSQL, through sqlx's `Any` driver so that both run the same
//! queries (`$N` placeholders, `RETURNING`, `ON CONFLICT DO NOTHING` are
//! common to both).
//!
//! Every state change is one transaction ([`transaction!`]) whose
//! `UPDATE … WHERE status = …` guards are checked by rows affected; the
//! schema adds what the code must not be trusted with alone (one active
//! lease per shard, one update per shard and round, job statuses that only
//! move forward, a log of every status change). Schema changes are
//! versioned migrations. The methods live beside what they store: jobs,
//! rounds, leases, updates, workers, collection, trust, accounts, payments.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use oblivion_protocol::JobId;
use sqlx::any::AnyPoolOptions;
use sqlx::any::{AnyArguments, AnyQueryResult};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::backend::Backend;
use crate::error::{ErrorKind, StoreError};
use crate::migrations;

/// Seconds since the Unix epoch, with fractions (for records; expiry runs
/// on a monotonic clock).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Handle on the database.
#[derive(Clone, Debug)]
pub struct Db {
    /// Reads (and, on PostgreSQL, writes).
    pub(crate) pool: AnyPool,
    /// Writes: on SQLite one connection of its own, which every write
    /// transaction uses in turn, so that its page cache stays valid from
    /// one to the next (a connection's cache is dropped whenever another
    /// connection has written, and under load the writer then read most
    /// pages back from the log); on PostgreSQL the one pool.
    pub(crate) writes: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite's one writer, taken in this process before a write
    /// transaction begins (see [`Db::writer`]); `None` on PostgreSQL.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// The settings of every SQLite connection. WAL: readers never wait for
/// the writer. NORMAL: a commit is in the log before it returns, so a
/// killed process loses nothing committed; only a power cut may lose the
/// last commits (SQLite's advice for WAL; fsync per commit would cap the
/// coordinator at a few hundred changes a second).
const SQLITE: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;";

/// The writer connection's, besides: a page cache of 64 MiB, which holds
/// the pages a load of thousands of updates a second keeps changing (the
/// default 2 MiB held few of them); and a checkpoint every 10,000 pages
/// of log (40 MiB) instead of 1,000, so that a page changed by many
/// commits is copied to the database once for all of them. A checkpoint
/// runs within the commit that crosses the mark, holding the writer.
const SQLITE_WRITER: &str = "PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 10000;";

async fn sqlite_settings(conn: &mut sqlx::AnyConnection, more: &str) -> Result<(), sqlx::Error> {
    conn.execute(format!("{SQLITE} {more}").as_str()).await?;
    Ok(())
}

/// How many times a transaction is tried again after a transient failure.
pub(crate) const RETRIES: u32 = 4;

/// The wait before try `n` (1, 2, …) again: 10, 20, 40, 80 ms.
pub(crate) fn backoff(n: u32) -> Duration {
    Duration::from_millis(5 << n.min(8))
}

/// One attempt of a [`transaction!`], typed: its `?`s convert to
/// [`StoreError`].
pub(crate) fn attempt<T, F: Future<Output = Result<T, StoreError>>>(f: F) -> F {
    f
}

/// Runs `$body` in a write transaction `$tx` (the body commits it, or
/// returns early to roll it back), and runs it again from the start on a
/// transient failure that certainly undid it: one before it began (no
/// connection, a busy pool), or a race it lost (a deadlock, a
/// serialization failure, a busy or locked SQLite), up to [`RETRIES`] more
/// times, backing off. A connection lost midway is returned as transient
/// but not run again here: its commit may have happened unanswered, and
/// the caller's retry meets the guards instead. The one way the store
/// changes state in a transaction. (A macro: a helper taking an async
/// closure over the transaction would tie its future to the borrow, and
/// lose `Send`.)
macro_rules! transaction {
    ($db:expr, |$tx:ident| $body:block) => {{
        let mut tries = 0u32;
        loop {
            let result = {
                let _writer = $db.writer().await;
                match $db.write().await {
                    Err(e) => Err((e, true)),
                    Ok(began) => {
                        #[allow(unused_mut)]
                        let mut $tx = began;
                        $crate::db::attempt(async { $body }).await.map_err(|e| {
                            let undone = e.is_lost_race();
                            (e, undone)
                        })
                    }
                }
            };
            match result {
                Err((e, true)) if e.is_transient() && tries < $crate::db::RETRIES => {
                    tries += 1;
                    ::tokio::time::sleep($crate::db::backoff(tries)).await;
                }
                result => break result.map_err(|(e, _)| e),
            }
        }
    }};
}
pub(crate) use transaction;

/// The PostgreSQL channel on which changed jobs are announced (payload:
/// the job id).
pub const JOBS_CHANNEL: &str = "oblivion_jobs";

/// Statuses of a job that has not finished (it may be cancelled or failed
/// from them, and nothing of it is collected).
pub(crate) const UNFINISHED: &str = "('funding', 'pending', 'running')";
/// Statuses of a job being trained (a paid job waiting for its deposit is
/// not).
pub(crate) const TRAINING: &str = "('pending', 'running')";

impl Db {
    /// Connects to `url` (creating an SQLite file if missing) with at
    /// most `max_connections` for reads (and, on SQLite, one more for
    /// writes) and brings the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).map_err(|e| StoreError::new(ErrorKind::Other, e))?;
        let options = || {
            AnyPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
        };
        match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                let pool = options()
                    .after_connect(|conn, _| Box::pin(sqlite_settings(conn, "")))
                    .connect(&url)
                    .await?;
                migrations::run(&pool, backend).await?;
                let writes = options()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(|conn, _| Box::pin(sqlite_settings(conn, SQLITE_WRITER)))
                    .connect(&url)
                    .await?;
                Ok(Db {
                    pool,
                    writes,
                    backend,
                    writer: Some(Arc::new(tokio::sync::Mutex::new(()))),
                })
            }
            Backend::Postgres => {
                let pool = options().connect(url).await?;
                migrations::run(&pool, backend).await?;
                Ok(Db {
                    writes: pool.clone(),
                    pool,
                    backend,
                    writer: None,
                })
            }
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `FOR SHARE` where the database has row locks: taken on a job's row
    /// by changes that depend on its status, so that a concurrent cancel
    /// (which updates the row) waits for them, and they for it.
    pub(crate) fn share_lock(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }

    /// Row-lock clause for a row a transaction is about to change, taken
    /// before it reads what the change depends on (nothing on SQLite,
    /// whose write transactions hold the whole database).
    pub(crate) fn update_lock(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Tells every instance listening (PostgreSQL's NOTIFY, delivered when
    /// the transaction commits) that `jobs` changed, with one statement
    /// however many they are; nothing on SQLite, which one instance uses
    /// alone.
    pub(crate) async fn notify(
        &self,
        tx: &mut Transaction<'static, Any>,
        jobs: impl IntoIterator<Item = JobId>,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let jobs: BTreeSet<JobId> = jobs.into_iter().collect();
        for jobs in jobs.into_iter().collect::<Vec<_>>().chunks(CHUNK) {
            let mut p = self.placeholders();
            let channel = p.one();
            let sql = format!(
                "SELECT pg_notify({channel}, v.column1) FROM (VALUES {}) AS v",
                p.rows(jobs.len(), 1)
            );
            let mut query = bound(&sql, std::iter::empty()).bind(JOBS_CHANNEL);
            for job in jobs {
                query = query.bind(job.to_string());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Makes every commit so far durable against a power cut, where
    /// commits alone are not on SQLite: its log is synced only at
    /// checkpoints (`synchronous = NORMAL`), so the log file is synced
    /// here (what checkpoints copied out of it is synced already).
    /// Garbage collection calls it before it deletes blobs that those
    /// commits stopped naming, so that a power cut cannot bring back a row
    /// naming a deleted blob. Nothing on PostgreSQL, whose commits are
    /// durable.
    pub async fn make_durable(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(&self.pool)
                .await?;
        let log = format!("{file}-wal");
        tokio::task::spawn_blocking(move || match std::fs::File::open(&log) {
            Ok(log) => log.sync_all(),
            // No log: every commit is in the database file, synced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| StoreError::new(ErrorKind::Other, e))?
        .map_err(StoreError::from)
    }

    /// The right to write, on SQLite, which has one writer at a time: its
    /// write transactions queue here, in order, and each is woken when the
    /// last commits. Left to SQLite, a writer that finds the database busy
    /// sleeps in its busy handler for up to 100 ms at a time, however soon
    /// the other commits: under load, most of the time went to those
    /// sleeps. (Another process writing the same file still meets the busy
    /// handler; one instance uses an SQLite file.) Nothing on PostgreSQL,
    /// whose writers lock rows.
    pub(crate) async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// A transaction that will write. SQLite takes its write lock at once,
    /// so that two writers never deadlock upgrading from read to write.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        // Begun on a task of its own, so that a caller that goes away (a
        // client that disconnects drops its request) cannot cut a `BEGIN`
        // off halfway. sqlx 0.8's SQLite `begin_with` awaits the
        // connection's handle after its `BEGIN IMMEDIATE` succeeded and
        // before the `Transaction` exists: dropped there, the connection
        // went back to the pool inside a transaction that nothing would
        // end, holding the write lock, and every later write failed
        // ("database is locked"; "begin_with at non-zero transaction
        // depth"). A transaction begun for a caller that left is dropped
        // here, and so rolled back.
        let pool = self.writes.clone();
        let backend = self.backend;
        let begun = tokio::spawn(async move {
            match backend {
                Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => pool.begin().await,
            }
        })
        .await
        .map_err(|e| StoreError::new(ErrorKind::Other, e))?;
        Ok(begun?)
    }
}

/// A statement that writes, run alone (its own transaction). On SQLite it
/// first waits for the writer's turn, as every transaction does
/// ([`Db::writer`]): one that did not would wait in SQLite's busy handler
/// while the queued writers hand the lock on to each other, and could
/// starve (up to the busy timeout, then fail).
pub(crate) trait WriteOnce {
    /// Runs the statement on `db`, in the writers' queue.
    fn write_once(self, db: &Db)
    -> impl Future<Output = Result<AnyQueryResult, StoreError>> + Send;
}

impl<'q> WriteOnce for Query<'q, Any, AnyArguments<'q>> {
    async fn write_once(self, db: &Db) -> Result<AnyQueryResult, StoreError> {
        let _writer = db.writer().await;
        Ok(self.execute(&db.writes).await?)
    }
}

/// Most rows one statement of a batch names: SQLite takes at most 32,766
/// values a statement, and a row may take a dozen.
pub(crate) const CHUNK: usize = 1000;

/// The placeholders of a statement whose size is a batch's, numbered in
/// the order they are written into it (so values are bound in that order
/// too): `$1, $2, …` on PostgreSQL; `?` on SQLite, whose numbered
/// parameters cost a linear search each as sqlx binds them (it asks each
/// one's name): quadratic in a batch's thousands of values, 30 ms for a
/// batch of 256 updates. Anonymous ones are bound by position.
pub(crate) struct Placeholders {
    backend: Backend,
    next: usize,
}

impl Placeholders {
    /// The next placeholder.
    pub(crate) fn one(&mut self) -> String {
        self.next += 1;
        match self.backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${}", self.next),
        }
    }

    /// The next `count`, comma-separated.
    pub(crate) fn list(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| self.one())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The next `rows` × `columns`, as the rows of a VALUES list:
    /// `(?, ?), (?, ?)`.
    pub(crate) fn rows(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Db {
    /// Placeholders for one statement (see [`Placeholders`]).
    pub(crate) fn placeholders(&self) -> Placeholders {
        Placeholders {
            backend: self.backend,
            next: 0,
        }
    }
}

/// `sql` with `values` bound in order, not kept prepared (its text
/// depends on the batch's size).
pub(crate) fn bound(
    sql: &str,
    values: impl Iterator<Item = i64>,
) -> Query<'_, Any, AnyArguments<'_>> {
    let mut query = sqlx::query_with(sql, AnyArguments::default()).persistent(false);
    for v in values {
        query = query.bind(v);
    }
    query
}
