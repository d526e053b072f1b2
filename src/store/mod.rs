//! The store layer: the only code that speaks SQL.
//!
//! openspot runs on SQLite (the embedded default, one node) and PostgreSQL (many
//! replicas). Both are first-class, so SQL is written once in the portable subset
//! (`$n` placeholders, `RETURNING`, `ON CONFLICT`) and compiled for each backend by the
//! [`run!`] macro, which stamps the same body out for both pool types. Only where the
//! semantics differ (locking, upserts with back-references) does a function have two
//! arms. Every function takes the spot first and every `WHERE` starts with
//! `spot_id = $1`, so an id of another spot is "not found" by construction.

pub mod backup;
pub mod blacklist;
pub mod citus;
pub mod connectors;
pub mod console;
pub mod course_groups;
pub mod courses;
pub mod custom_roles;
pub mod group_links;
pub mod groups;
pub mod kz_subscriptions;
pub mod kz_tokens;
pub mod members;
pub mod memberships;
pub mod messages;
pub mod outbox;
pub mod participants;
pub mod pins;
pub mod properties;
pub mod property_values;
pub mod rate_limits;
pub mod smart_groups;
pub mod smart_sql;
pub mod spots;
pub mod sql;
pub mod transfer;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::domain::ids::MemberId;

/// A connection pool on one of the two supported backends.
#[derive(Clone, Debug)]
pub enum Db {
    /// The readers' pool; the writer, the one connection every write transaction
    /// ([`Db::begin`]) takes (see [`SqliteWriter`]); and the rate limiter's companion
    /// database (see [`SqliteLimits`]).
    Sqlite(SqlitePool, SqliteWriter, SqliteLimits),
    Postgres(PgPool),
}

/// SQLite's one write connection: a pool of a single connection that every
/// [`Db::begin`] (`BEGIN IMMEDIATE`) takes, beside the readers' pool.
///
/// Why: SQLite lets one connection write at a time anyway, and a connection keeps its
/// page cache only while no other connection writes the database; after another's
/// commit it drops the whole cache and reads every page again. With writes spread over
/// the pool's connections, each write transaction re-read its B-tree pages from the WAL
/// (strace of 1,000 member invites: 28 `pread`s each, 33 with an outbox row; issue 14).
/// One writer keeps its pages cached between writes, and writers queue on the pool, in
/// order, instead of polling the lock on the busy timeout.
#[derive(Clone, Debug)]
pub struct SqliteWriter(SqlitePool);

/// The rate limiter's windows on SQLite (`store::rate_limits`): a companion database
/// file beside the main one (`<file>-limits`), with one connection of its own.
///
/// Why: every rate-limit lease is a commit, and in WAL mode a commit to a database
/// makes every other connection to it drop its whole page cache at its next read. With
/// the windows in the main file, the leases of one busy spot (about 24 commits a second
/// at 12,000 requests a second) kept the readers' caches cold: 2.3 `pread`s per read of
/// one member and 30 per page of a 100-member filter, where the same reads without the
/// commits took 0.5 and 0.2, and that filtered read ran at 0.76× the bare server's
/// throughput (issue 17). A commit to the companion file leaves the main database's
/// pages cached. The windows are counters that end within a day, not data: the companion
/// is in no backup or spot export, and losing it resets the current windows.
#[derive(Clone, Debug)]
pub struct SqliteLimits(SqlitePool);

/// The companion database of the SQLite database at `main` (see [`SqliteLimits`]).
pub fn limits_path(main: &std::path::Path) -> std::path::PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push("-limits");
    name.into()
}

/// A borrowed connection (pooled or inside a transaction) on either backend.
pub enum Ex<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Ex<'_> {
    /// The same connection for a shorter borrow, so that one `Ex` serves two calls.
    pub fn reborrow(&mut self) -> Ex<'_> {
        match self {
            Ex::Sqlite(c) => Ex::Sqlite(c),
            Ex::Postgres(c) => Ex::Postgres(c),
        }
    }

    /// A row-lock clause (` FOR SHARE`, ` FOR UPDATE`) to append on PostgreSQL; nothing
    /// on SQLite, whose write transactions (`BEGIN IMMEDIATE`) exclude each other already.
    pub fn row_lock(&self, clause: &'static str) -> &'static str {
        match self {
            Ex::Sqlite(_) => "",
            Ex::Postgres(_) => clause,
        }
    }
}

/// A write transaction. On SQLite it is opened with `BEGIN IMMEDIATE` so that
/// concurrent writers queue on the busy timeout instead of failing on upgrade.
///
/// Besides the connection it remembers whether outbox rows were written (so that the
/// commit wakes this process's dispatcher, [`outbox::wake`]) and which member is acting
/// (read by event emission for Kaizala's `fromUser`).
pub struct Tx {
    inner: TxInner,
    outbox_written: bool,
    actor: Option<MemberId>,
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A pooled connection for reads.
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// Runs the same body against whichever backend `$ex` (an [`Ex`]) holds.
/// Inside the body `$c` is `&mut SqliteConnection` or `&mut PgConnection`.
#[macro_export]
macro_rules! run {
    ($ex:expr, |$c:ident| $body:expr) => {
        match $ex {
            $crate::store::Ex::Sqlite($c) => $body,
            $crate::store::Ex::Postgres($c) => $body,
        }
    };
}

/// Binds every value of a `Vec<Bind>` onto a query, in order.
#[macro_export]
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::store::sql::Bind::Text(v) => q.bind(v.as_str()),
                $crate::store::sql::Bind::I64(v) => q.bind(*v),
                $crate::store::sql::Bind::Uuid(v) => q.bind(*v),
                $crate::store::sql::Bind::Bool(v) => q.bind(*v),
                $crate::store::sql::Bind::F64(v) => q.bind(*v),
            };
        }
        q
    }};
}

impl Tx {
    fn new(inner: TxInner) -> Self {
        Tx { inner, outbox_written: false, actor: None }
    }

    pub fn ex(&mut self) -> Ex<'_> {
        match &mut self.inner {
            TxInner::Sqlite(t) => Ex::Sqlite(&mut *t),
            TxInner::Postgres(t) => Ex::Postgres(&mut *t),
        }
    }

    /// Records that this transaction wrote outbox rows: once it commits, this process's
    /// dispatcher is woken; a process running no dispatcher (the CLI) tells the others
    /// on PostgreSQL (`NOTIFY openspot_outbox`, delivered at commit) instead.
    pub fn note_outbox_write(&mut self) {
        self.outbox_written = true;
    }

    /// Whether [`Tx::note_outbox_write`] was called.
    pub fn wrote_outbox(&self) -> bool {
        self.outbox_written
    }

    /// The member acting in this transaction (a Kaizala caller), for event emission.
    pub fn set_actor(&mut self, member: MemberId) {
        self.actor = Some(member);
    }

    pub fn actor(&self) -> Option<MemberId> {
        self.actor
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let woke = self.outbox_written;
        if woke && !outbox::dispatcher_running() {
            outbox::notify_outbox(self.ex()).await?;
        }
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        if woke {
            outbox::wake();
        }
        Ok(())
    }
}

impl Conn {
    pub fn ex(&mut self) -> Ex<'_> {
        match self {
            Conn::Sqlite(c) => Ex::Sqlite(&mut *c),
            Conn::Postgres(c) => Ex::Postgres(&mut *c),
        }
    }
}

/// Which backend a database URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!(
                "unsupported database URL '{}': use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )
        }
    }
}

/// Hides the password of a database URL for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:****{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How much of a SQLite database file each reader reads through a memory map
/// (`PRAGMA mmap_size`): SQLite's own ceiling (`SQLITE_MAX_MMAP_SIZE`), so a database
/// of up to 2 GiB (a spot of several million members) is read through the map whole.
///
/// Each connection's page cache holds only the pages that connection has read: with a
/// million-member spot, whose pages do not fit in every reader's cache, a reader kept
/// copying pages from the kernel (`pread`) long after start-up, and the pool was slow
/// until each of its connections had read most of the file itself. Through the map,
/// every connection reads the one copy the kernel keeps: no copy, nothing to warm per
/// connection. Measured at 1,000,000 members (BENCHMARKS.md): a one-name
/// `firstname[in]` page 395 → 785–856 requests/s, a 100-name one 264 → 352–374. It
/// costs address space, not memory: the pages mapped are the kernel's file cache,
/// shared and reclaimable. The writer is not mapped ([`Db::connect_sqlite`] says why);
/// writes go through the write-ahead log, as without the map.
pub const SQLITE_MMAP_BYTES: i64 = 0x7fff_0000;

impl Db {
    /// Opens a pool for `url` (creating the SQLite file if missing) without migrating.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        match Backend::from_url(url)? {
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("invalid SQLite URL '{url}'"))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    // 64 MiB of page cache per connection: a million-member spot's
                    // indexes stay in memory instead of being re-read on every write.
                    .pragma("cache_size", "-65536")
                    .pragma("temp_store", "memory");
                // A handful of connections serve concurrent readers (WAL); writes take the
                // one writer.
                let readers = SqlitePoolOptions::new().max_connections(8).min_connections(1);
                Db::connect_sqlite(opts, readers, Duration::from_secs(30))
                    .await
                    .with_context(|| format!("cannot open SQLite database '{url}'"))
            }
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url)
                    .with_context(|| format!("invalid PostgreSQL URL '{}'", redact_url(url)))?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .with_context(|| format!("cannot connect to PostgreSQL at '{}'", redact_url(url)))?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// A SQLite database with `opts`: the readers' pool built by `readers`, and the
    /// [`SqliteWriter`] with the same connection options, for which a write transaction
    /// waits at most `write_wait` (give it the connections' busy timeout: the queue for
    /// the writer is the wait for the write lock that the busy timeout bounded).
    pub async fn connect_sqlite(
        opts: SqliteConnectOptions,
        readers: SqlitePoolOptions,
        write_wait: Duration,
    ) -> Result<Db, sqlx::Error> {
        let readers = with_current_statistics(readers).acquire_timeout(Duration::from_secs(30));
        let writer = with_current_statistics(SqlitePoolOptions::new())
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(write_wait);
        // The companion keeps the main file's options (an in-memory database gets an
        // in-memory companion) with a small cache; its one connection stays open. It is
        // writable even beside a database opened read-only (`?mode=ro`), so that reads
        // still pass the rate limiter; on a read-only mount it cannot be created, and
        // requests are refused with 503 (`SQLITE_CANTOPEN`).
        let limits_opts = opts
            .clone()
            .filename(limits_path(opts.get_filename()))
            .read_only(false)
            .immutable(false)
            .create_if_missing(true)
            .pragma("cache_size", "-2048");
        let limits = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(write_wait)
            .after_connect(|c, _| Box::pin(async move { rate_limits::create_companion_schema(c).await }));
        // Only the readers read through the map ([`SQLITE_MMAP_BYTES`]). Not the writer:
        // SQLite fetches the pages a write transaction changes through the page cache,
        // never the map, and a page read through the map is not kept in that cache, so a
        // mapped writer re-read from the file what its cache would have held (a member
        // update took 805–836 µs instead of 508–621 µs at 1,000,000 members). Nor the
        // small, always-written companion.
        let pool = readers.connect_with(opts.clone().pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())).await?;
        let writer = writer.connect_lazy_with(opts);
        let limits = limits.connect_lazy_with(limits_opts);
        Ok(Db::Sqlite(pool, SqliteWriter(writer), SqliteLimits(limits)))
    }

    /// Opens the pool and applies every pending migration.
    pub async fn connect_and_migrate(url: &str) -> anyhow::Result<Db> {
        let db = Db::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(p, _, SqliteLimits(limits)) => {
                // Migration 0017 drops the windows from the main file: the current ones
                // move to the companion first.
                rate_limits::carry_over_to_companion(p, limits).await?;
                sqlx::migrate!("./migrations/sqlite").run(p).await?
            }
            Db::Postgres(p) => {
                sqlx::migrate!("./migrations/postgres").run(p).await?;
                // On a Citus coordinator: reference and distributed tables (once).
                citus::distribute(p).await?;
            }
        }
        self.optimize().await
    }

    /// Refreshes the query planner's statistics. SQLite has none until asked, and
    /// without them it may walk a spot's members in id order to satisfy `ORDER BY id`
    /// instead of using a selective filter index; a bounded `PRAGMA optimize` (sampled
    /// with `analysis_limit`) fixes that cheaply. PostgreSQL's autovacuum does this itself.
    ///
    /// SQLite reads the statistics when a connection opens, and keeps them: the pool's
    /// other connections would plan with the old ones (those of an empty table after
    /// the start-up migration, say) until they are closed, up to the pool's connection
    /// lifetime. Measured: a filtered page on 100,000 members ran at 0.4× the rate of a
    /// fresh connection, and at a million members a console search on such a
    /// connection walked every member (0.7–5 s, one request in four). A schema change
    /// does not make them reload (tried: a table created and dropped), nor does a
    /// statement re-prepared after it. So the pool lends out no connection opened
    /// before the statistics were last rewritten ([`statistics`]): it closes it and
    /// opens a fresh one.
    pub async fn optimize(&self) -> anyhow::Result<()> {
        if let Db::Sqlite(p, ..) = self {
            let mut c = p.acquire().await?;
            sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *c).await?;
            sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *c).await?;
            drop(c);
            statistics::rewritten();
        }
        Ok(())
    }

    /// Refreshes the planner's statistics after a bulk write (an import of thousands of
    /// rows). Without it PostgreSQL plans the next lookups on a 1,000,000-member spot
    /// with the statistics of an empty table: a re-run of 100,000 rows took 108 s
    /// instead of 3 s, a property filter's first page 283 ms instead of 13 ms.
    pub async fn analyze_after_bulk_write(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(..) => self.optimize().await,
            Db::Postgres(p) => {
                // VACUUM also marks the new pages all-visible, so filters read the value
                // index alone (index-only scans) rather than every matching heap row.
                sqlx::raw_sql("VACUUM (ANALYZE) members, member_property_values, group_members").execute(p).await?;
                Ok(())
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Sqlite(..) => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(Tx::new(match self {
            Db::Sqlite(_, SqliteWriter(w), _) => TxInner::Sqlite(waited(w.begin_with("BEGIN IMMEDIATE")).await?),
            Db::Postgres(p) => TxInner::Postgres(waited(p.begin()).await?),
        }))
    }

    /// Starts a read-only transaction: one consistent snapshot for reads spread over
    /// several queries, without the write lock. On SQLite a deferred `BEGIN` only
    /// takes a WAL read snapshot, so it neither waits for the writer nor blocks it (a
    /// `BEGIN IMMEDIATE` here would queue every reader of every spot behind the one
    /// writer); on PostgreSQL `REPEATABLE READ, READ ONLY` gives the same snapshot and
    /// refuses writes. Commit or drop it when done.
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(Tx::new(match self {
            Db::Sqlite(p, ..) => TxInner::Sqlite(waited(p.begin_with("BEGIN DEFERRED")).await?),
            Db::Postgres(p) => {
                TxInner::Postgres(waited(p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")).await?)
            }
        }))
    }

    /// Takes a connection for reads.
    pub async fn conn(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(p, ..) => Conn::Sqlite(waited(p.acquire()).await?),
            Db::Postgres(p) => Conn::Postgres(waited(p.acquire()).await?),
        })
    }

    /// Takes a connection for writes made outside a transaction: single statements that
    /// commit on their own (the console's session, selection and job rows, housekeeping's
    /// purges; the rate limiter's leases have [`Db::limits_conn`]). On SQLite it is the
    /// writer ([`SqliteWriter`]), so such a write queues in turn with the write
    /// transactions. Through a reader it would poll for
    /// the lock on the busy handler while the writer hands the lock straight from one
    /// transaction to the next (under a steady stream of writes it could wait out the
    /// busy timeout), and its commit would drop the writer's page cache. Never call it
    /// while this task holds a [`Tx`] of [`Db::begin`]: there is one writer.
    pub async fn write_conn(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(_, SqliteWriter(w), _) => Conn::Sqlite(waited(w.acquire()).await?),
            Db::Postgres(p) => Conn::Postgres(waited(p.acquire()).await?),
        })
    }

    /// Takes the connection of the rate limiter's windows (`store::rate_limits`): on
    /// SQLite the companion database's ([`SqliteLimits`]), whose commits leave the
    /// readers' page caches alone; on PostgreSQL one of the pool. Never call it while
    /// this task holds another of its connections: there is one.
    pub async fn limits_conn(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(_, _, SqliteLimits(l)) => Conn::Sqlite(waited(l.acquire()).await?),
            Db::Postgres(p) => Conn::Postgres(waited(p.acquire()).await?),
        })
    }

    /// The pool's open connections and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Db::Sqlite(p, SqliteWriter(w), SqliteLimits(l)) => {
                (p.size() + w.size() + l.size(), p.num_idle() + w.num_idle() + l.num_idle())
            }
            Db::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    /// `SELECT 1`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(p, ..) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p, SqliteWriter(w), SqliteLimits(l)) => {
                l.close().await;
                w.close().await;
                p.close().await
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// `options` that lend out no connection opened before SQLite's planner statistics
/// were last rewritten (see [`Db::optimize`]): such a connection is closed instead and
/// the pool opens a fresh one.
fn with_current_statistics(options: SqlitePoolOptions) -> SqlitePoolOptions {
    options.before_acquire(|_, meta| Box::pin(async move { Ok(statistics::loaded_current(meta.age)) }))
}

/// Awaits one of the pool's entry points ([`Db::begin`], [`Db::begin_read`],
/// [`Db::conn`]: every request's and job's way to a connection) and records how long it
/// took in `db_client_connection_wait_time_seconds`. sqlx hands a transaction out with
/// its `BEGIN` already run, so a write transaction's time includes the `BEGIN`, and on
/// SQLite `BEGIN IMMEDIATE` waits for the one write lock: that wait is counted too, as
/// it is the wait a writer sees. The cost is two clock reads and one histogram update
/// (a few atomic adds), next to a database round trip.
async fn waited<T>(acquire: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    let began = std::time::Instant::now();
    let out = acquire.await;
    crate::metrics::global().db_connection_wait_seconds.observe(began.elapsed().as_secs_f64());
    out
}

/// When this process last rewrote SQLite's planner statistics, so that the pool can
/// tell a connection that loaded older ones by its age (`Db::optimize`). Process-wide:
/// a rewrite in one database recycles the connections of another too (tests open
/// many), which costs a reconnection, never a stale plan.
pub mod statistics {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Nanoseconds from [`clock`]'s origin to the last rewrite; 0: none yet.
    static REWRITTEN_AT: AtomicU64 = AtomicU64::new(0);

    fn clock() -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that the statistics on disk were just rewritten.
    pub fn rewritten() {
        // At least 1: 0 means "never".
        REWRITTEN_AT.store(nanos(clock()).max(1), Ordering::Release);
    }

    /// Whether a connection opened `age` ago loaded the current statistics (it opened
    /// after their last rewrite, or there was none).
    pub fn loaded_current(age: Duration) -> bool {
        let rewritten = REWRITTEN_AT.load(Ordering::Acquire);
        rewritten == 0 || nanos(clock().saturating_sub(age)) >= rewritten
    }
}

/// How long one transaction of a long operation (inviting a big group to a course,
/// computing a smart group) keeps going before it commits and the next one starts.
/// SQLite has one writer: every other spot's writes wait for whichever transaction
/// holds the lock, so none may hold it for long. A slice ends after its current batch,
/// so a hold is this plus one batch (measured: under 100 ms).
pub const WRITE_SLICE: Duration = Duration::from_millis(50);

/// How long a long operation works on SQLite's write lock, slice after slice, before
/// [`WritePacer`] pauses it.
pub const WORK_BETWEEN_PAUSES: Duration = Duration::from_millis(500);

/// The shortest pause of [`WritePacer`]: SQLite's busy handler sleeps 100 ms at most
/// between two tries, so a connection polling for the lock tries at least once in it.
pub const PAUSE_MIN: Duration = Duration::from_millis(100);

/// Paces a long operation's slices (a smart-group computation, a course-link job, a
/// console bulk action, the outbox purge) on SQLite's one write lock.
///
/// This process's writers need no pause: they queue for the one writer connection in
/// a fair pool ([`SqliteWriter`]), so each takes the lock right after the slice it
/// waited behind. Another process's connection (an `openspot` command run beside the
/// server) waits in SQLite's busy handler instead, which polls, every 100 ms at most,
/// and never sees the lock free if the next slice takes it microseconds after a
/// commit: so after [`WORK_BETWEEN_PAUSES`] of slices the operation stays off the lock
/// for 100–150 ms, longer than a poll's sleep. Pausing 25–75 ms after every slice, as
/// before, left a one-million-member smart group idle for a third of its time.
/// PostgreSQL locks rows and queues waiters: no pause there.
pub struct WritePacer {
    sqlite: bool,
    working_since: tokio::time::Instant,
}

impl Db {
    /// A pacer for a long operation starting now.
    pub fn write_pacer(&self) -> WritePacer {
        WritePacer::new(matches!(self, Db::Sqlite(..)))
    }
}

impl WritePacer {
    fn new(sqlite: bool) -> Self {
        WritePacer { sqlite, working_since: tokio::time::Instant::now() }
    }

    /// Between two slices: pauses (SQLite) once [`WORK_BETWEEN_PAUSES`] have gone by
    /// since the last pause; otherwise lets other tasks run and goes on.
    pub async fn between_slices(&mut self) {
        match self.pause_due(tokio::time::Instant::now()) {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                self.working_since = tokio::time::Instant::now();
            }
            None => tokio::task::yield_now().await,
        }
    }

    /// The pause to take at `now`, if one is due: 100–150 ms, jittered so that
    /// pauses do not fall in step with another connection's polls.
    fn pause_due(&self, now: tokio::time::Instant) -> Option<Duration> {
        if !self.sqlite || now.saturating_duration_since(self.working_since) < WORK_BETWEEN_PAUSES {
            return None;
        }
        let min = PAUSE_MIN.as_millis() as u64;
        Some(Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), min..=min * 3 / 2)))
    }
}

/// How many times [`retry_transient`] runs an operation at most.
pub const TRANSIENT_ATTEMPTS: u32 = 5;

/// Runs a whole domain operation (its transaction included) again when it failed on a
/// transient conflict ([`crate::error::Error::is_transient`]: a PostgreSQL deadlock or serialization
/// failure, a SQLite stale snapshot), at most [`TRANSIENT_ATTEMPTS`] times with a
/// jittered exponential back-off (about 10, 20, 40, 80 ms), so that transactions that
/// collided do not collide again in lock step. The transaction that failed has rolled
/// back when its `Tx` was dropped, so a re-run starts from a clean state. The last
/// error is returned as is (a 503 with `Retry-After`).
pub async fn retry_transient<T, F, Fut>(mut op: F) -> crate::error::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS => {
                let base_ms = 10u64 << (attempt - 1);
                let wait_ms = rand::Rng::gen_range(&mut rand::thread_rng(), base_ms / 2..=base_ms * 3 / 2);
                tracing::debug!(attempt, wait_ms, "re-running an operation after a transient conflict");
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The outcome of a write on either backend, as far as the store reads it (sqlx gives
/// the two backends' query results no common trait).
pub trait WriteOutcome {
    fn rows_affected(&self) -> u64;
}

impl WriteOutcome for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl WriteOutcome for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

/// Whether a write on one keyed row touched it: true when exactly one row was affected
/// (the row existed, or was inserted rather than skipped by `ON CONFLICT DO NOTHING`).
pub fn one_row<R: WriteOutcome>(outcome: Result<R, sqlx::Error>) -> Result<bool, sqlx::Error> {
    outcome.map(|r| r.rows_affected() == 1)
}

/// True when `err` is a unique-constraint violation (both backends).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => e.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A long operation on SQLite works [`WORK_BETWEEN_PAUSES`] without a pause, then
    /// stays off the write lock longer than the busy handler's longest sleep (100 ms),
    /// so another process's connection polling for the lock gets it; on PostgreSQL it
    /// never pauses.
    #[test]
    fn long_work_pauses_on_sqlite_only_after_its_stretch() {
        let sqlite = WritePacer::new(true);
        let start = sqlite.working_since;
        assert_eq!(sqlite.pause_due(start), None);
        assert_eq!(sqlite.pause_due(start + WORK_BETWEEN_PAUSES - Duration::from_millis(1)), None);
        for _ in 0..100 {
            let pause = sqlite.pause_due(start + WORK_BETWEEN_PAUSES).unwrap();
            assert!((PAUSE_MIN..=PAUSE_MIN * 3 / 2).contains(&pause), "{pause:?}");
        }
        let postgres = WritePacer::new(false);
        assert_eq!(postgres.pause_due(postgres.working_since + Duration::from_secs(60)), None);
    }

    /// Every write transaction, and every write outside one (`Db::write_conn`), runs on
    /// SQLite's one writer connection (its page cache stays warm), never on a reader: a
    /// TEMP table, which only its own connection sees, made in one write transaction is
    /// there in every later one, and not on the readers. With writes spread over the readers' pool (several connections open
    /// at once here, lent out in turn) later transactions missed it.
    #[tokio::test]
    async fn write_transactions_share_the_one_sqlite_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let db = Db::connect_and_migrate(&url).await.unwrap();
        // Open several reader connections at once, so the pool has them to lend.
        let held = futures_util::future::join_all((0..4).map(|_| db.conn())).await;
        drop(held);
        let mut tx = db.begin().await.unwrap();
        run!(tx.ex(), |c| sqlx::query("CREATE TEMP TABLE marker (x)").execute(c).await.map(|_| ())).unwrap();
        tx.commit().await.unwrap();
        let probe = "SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'marker'";
        for _ in 0..8 {
            let mut tx = db.begin().await.unwrap();
            let seen: i64 = run!(tx.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
            tx.commit().await.unwrap();
            assert_eq!(seen, 1, "a write transaction ran on another connection");
            let mut c = db.conn().await.unwrap();
            let seen: i64 = run!(c.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
            assert_eq!(seen, 0, "a reader is the writer");
            drop(c);
            // Writes outside a transaction (the console's, housekeeping's) take the
            // writer too.
            let mut w = db.write_conn().await.unwrap();
            let seen: i64 = run!(w.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
            assert_eq!(seen, 1, "write_conn lent a reader");
        }
    }

    /// The readers read the main file through the memory map ([`SQLITE_MMAP_BYTES`];
    /// SQLite would cap a larger value silently, and a build without mmap support would
    /// answer 0); the writer does not (its page cache holds what its transactions
    /// change), nor does the rate limiter's small companion.
    #[tokio::test]
    async fn sqlite_connections_map_the_main_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("mapped.db").display());
        let db = Db::connect_and_migrate(&url).await.unwrap();
        let probe = "PRAGMA mmap_size";
        let mut c = db.conn().await.unwrap();
        let reader: i64 = run!(c.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
        drop(c);
        let mut w = db.write_conn().await.unwrap();
        let writer: i64 = run!(w.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
        drop(w);
        let mut l = db.limits_conn().await.unwrap();
        let companion: i64 = run!(l.ex(), |c| sqlx::query_scalar(probe).fetch_one(c).await).unwrap();
        assert_eq!((reader, writer, companion), (SQLITE_MMAP_BYTES, 0, 0));
    }

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://u@h/db").ok(), Some(Backend::Postgres));
        let err = Backend::from_url("mysql://u:secret@h/db").err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("mysql://u:****@h/db")));
    }

    /// Every connection of the pool plans with the statistics the last optimize wrote,
    /// not with those it loaded when it opened (none, here): a text search is then
    /// the four index ranges it is written for, not a walk of the invitation-date
    /// index (at a million members: under 1 ms against 0.5–1.5 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_pooled_connection_plans_with_the_statistics_of_the_last_optimize() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plans.db").display());
        let db = Db::connect_and_migrate(&url).await.unwrap();
        let Db::Sqlite(p, ..) = &db else { unreachable!() };
        let spot = crate::domain::ids::SpotId::generate();
        sqlx::query("INSERT INTO spots (id, name, api_key_hash, created_at) VALUES (?, 's', randomblob(32), 0)")
            .bind(spot)
            .execute(p)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999) \
             INSERT INTO members (spot_id, id, email, email_norm, firstname, lastname, invited_at, updated_at) \
             SELECT ?, randomblob(16), 'm' || i || '@x.io', 'm' || i || '@x.io', 'first' || (i % 1000), \
             'last' || (i % 1000), i, i FROM n",
        )
        .bind(spot)
        .execute(p)
        .await
        .unwrap();
        let plan_sql = "EXPLAIN QUERY PLAN SELECT id FROM members WHERE spot_id = ? AND \
            ((email_norm >= 'm123@' AND email_norm < 'm123@~') OR (lower(firstname) >= 'm123@' AND lower(firstname) < 'm123@~') \
            OR (lower(lastname) >= 'm123@' AND lower(lastname) < 'm123@~')) ORDER BY invited_at DESC, id DESC LIMIT 51";
        let plans = |label: &'static str| {
            let p = p.clone();
            async move {
                // Every connection at once, so that each of the pool's is asked.
                let mut conns = Vec::new();
                for _ in 0..8 {
                    conns.push(p.acquire().await.unwrap());
                }
                let mut out = Vec::new();
                for c in &mut conns {
                    let rows: Vec<(i64, i64, i64, String)> =
                        sqlx::query_as(plan_sql).bind(spot).fetch_all(&mut **c).await.unwrap();
                    out.push(rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; "));
                }
                eprintln!("{label}: {out:?}");
                out
            }
        };
        // Without statistics SQLite walks the invitation-date index.
        assert!(plans("before").await.iter().all(|p| !p.contains("MULTI-INDEX OR")));
        db.analyze_after_bulk_write().await.unwrap();
        for plan in plans("after").await {
            assert!(plan.contains("MULTI-INDEX OR"), "a connection plans without the new statistics: {plan}");
        }
    }

    #[test]
    fn migrations_have_the_same_versions_on_both_backends() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let sqlite = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"));
        let pg = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, pg);
    }

    #[tokio::test]
    async fn one_row_tells_whether_exactly_one_row_was_written() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO t (id, k) VALUES (1, 7), (2, 7), (3, 8)").execute(&pool).await.unwrap();
        let write = |sql: &'static str| {
            let pool = pool.clone();
            async move { one_row(sqlx::query(sql).execute(&pool).await) }
        };
        assert!(write("DELETE FROM t WHERE id = 3").await.unwrap());
        assert!(!write("DELETE FROM t WHERE id = 3").await.unwrap());
        assert!(!write("UPDATE t SET k = 9 WHERE k = 7").await.unwrap());
        assert!(write("INSERT INTO t (id, k) VALUES (3, 8) ON CONFLICT DO NOTHING").await.unwrap());
        assert!(!write("INSERT INTO t (id, k) VALUES (3, 8) ON CONFLICT DO NOTHING").await.unwrap());
        assert!(write("SELECT nothing FROM t").await.is_err());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let mut runs = 0;
        let out: crate::error::Result<u32> = retry_transient(|| {
            runs += 1;
            let n = runs;
            async move {
                if n < 3 {
                    Err(Error::Transient("deadlock".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.ok(), Some(3));

        let mut runs = 0;
        let out: crate::error::Result<()> = retry_transient(|| {
            runs += 1;
            async { Err(Error::Transient("deadlock".into())) }
        })
        .await;
        assert!(matches!(out, Err(Error::Transient(_))));
        assert_eq!(runs, TRANSIENT_ATTEMPTS);

        // Anything else is not retried.
        let mut runs = 0;
        let out: crate::error::Result<()> = retry_transient(|| {
            runs += 1;
            async { Err(Error::Unavailable("busy".into())) }
        })
        .await;
        assert!(matches!(out, Err(Error::Unavailable(_))));
        assert_eq!(runs, 1);
    }
}
