//! Storage: one sqlx `AnyPool` per service, SQLite (embedded, the default) or PostgreSQL
//! (`postgres://`), the same portable SQL and migrations for both. Queries use `$1`
//! placeholders, which both drivers accept; ids are TEXT and times BIGINT milliseconds.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub type Pool = AnyPool;
pub type Transaction<'a> = sqlx::Transaction<'a, sqlx::Any>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot prepare the data folder {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens the database at `url` and brings its schema up to date: the platform's tables
/// (outbox, lease, processed events) and then the service's own `migrations`.
pub async fn open(url: &str, migrations: Migrator) -> Result<Pool, DbError> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        create_parent_dir(url)?;
    }
    let options: AnyConnectOptions = url
        .parse::<AnyConnectOptions>()
        .map_err(|source| DbError::Connect { url: redact(url), source })?
        .log_statements(tracing::log::LevelFilter::Trace);
    if url.starts_with("postgres") {
        reach_postgres(url).await?;
    }
    // SQLite takes one writer at a time. With several connections in one process, a second
    // writer waits in SQLite's busy handler, which sleeps and re-polls (1, 2, 5, 10... ms);
    // with one, the pool queues work in arrival order and wakes the next at once, and there
    // is one driver thread to hand statements to instead of eight. Measured with `shop bench`
    // (docs/performance.md), with consumers working partitions concurrently: service hops' p99
    // from 360-540 ms to about 120 ms at full load, 62 to 90 journeys/s.
    // The checkpoints' own connection (`checkpoint_in_background`), quiet in the log.
    let checkpoint_options = options.clone().disable_statement_logging();
    let pool = AnyPoolOptions::new()
        .max_connections(if is_sqlite { 1 } else { 10 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    // WAL lets readers and the (single) writer proceed together; NORMAL
                    // synchronous is durable across process crashes in WAL mode. A second
                    // replica waits for the write lock (up to sqlx's busy timeout, 5 s), not
                    // fails, in the busy handler of vendor/sqlx-sqlite, which tries again
                    // every quarter millisecond: no `PRAGMA busy_timeout` here, which would put
                    // SQLite's own handler back (it sleeps 1, 2, 5, 10, 15... ms between tries).
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints happen on a thread of their own (`checkpoint_in_background`).
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    // A log restarted longer than this (a long reader held it) is cut back to
                    // it; shorter, its pages are written over again (`RESTART_OVER_FRAMES`).
                    conn.execute(format!("PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}").as_str()).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { url: redact(url), source })?;
    migrate(&pool, sqlx::migrate!("./migrations")).await?;
    migrate(&pool, migrations).await?;
    if is_sqlite {
        checkpoint_in_background(url, checkpoint_options, pool.clone());
    }
    Ok(pool)
}

/// How often the WAL is copied back into an SQLite database (`checkpoint_in_background`).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A log longer than this (in pages of 4 KiB: 256 MiB) after a passive checkpoint is restarted.
/// Each RESTART holds the writers off while it copies and syncs (up to 35 ms in the mailbox at
/// half load, which delays every mail in flight); at 16 MiB it came every second in most
/// services at half load, at 64 MiB every two to four, at 256 MiB every ten or so
/// (docs/performance.md, "Fewer restarts", "Restarts rarer still"). The busiest logs grow to
/// about 300 MB each under load; once quiet they are truncated.
const RESTART_OVER_FRAMES: i64 = 65536;

/// The bytes a restarted log keeps (`PRAGMA journal_size_limit`): twice the restart threshold
/// in 4 KiB pages (512 MiB), so that a log restarted at its longest is written over, not cut
/// back and grown again on new pages.
const JOURNAL_SIZE_LIMIT: i64 = 2 * RESTART_OVER_FRAMES * 4096;

/// At most this many more passive checkpoints before a RESTART one.
const PASSIVE_CATCH_UPS: usize = 3;

/// In WAL mode, SQLite copies the log back into the database file (a checkpoint, which waits for
/// the disk) in whichever commit finds the log over 1,000 pages; statements run on the caller's
/// thread (vendor/README.md, sqlx-sqlite), so that commit's async thread and every task on it
/// would wait too (3.6 ms on average, up to 9, several times a second in mobile at full load).
/// Instead the pool's connection never checkpoints, and a connection of its own checkpoints
/// every second on tokio's blocking threads, PASSIVE: it never waits for a reader or writer nor
/// makes one wait. It stops when the pool is closed; SQLite checkpoints once more as the last
/// connection to the file closes.
///
/// A passive checkpoint alone never lets the log start over under steady writes: a writer
/// goes back to the log's beginning only when it finds every frame copied back, and with
/// commits arriving while the checkpoint copies, it never does. The log then grows without
/// end (1.3 GB in 35 s at full load in the mailbox), and every page it grows by is a new page
/// the kernel zeroes first: 12 % of the machine's CPU at full load. So once the log is longer
/// than [`RESTART_OVER_FRAMES`], the passive checkpoint (which has copied nearly everything,
/// without holding anyone up) is followed by a RESTART one: it copies what was committed in
/// between, holding writers for that long, and waits for readers to leave the log, so that
/// the next writer starts it over and writes again over pages the kernel already holds. A log
/// that had nothing new for a round and was all copied back is truncated: a quiet database
/// does not keep a log of tens of megabytes on disk.
fn checkpoint_in_background(url: &str, options: AnyConnectOptions, pool: Pool) {
    let url = redact(url);
    tokio::spawn(async move {
        use sqlx::Connection;
        let mut connection = match sqlx::AnyConnection::connect_with(&options).await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, url, "No connection for checkpoints; commits checkpoint instead");
                let _ = sqlx::query("PRAGMA wal_autocheckpoint = 1000").execute(&pool).await;
                return;
            }
        };
        // A RESTART checkpoint holds writers off while it waits for the writer in progress and
        // for readers to leave the log: a tenth of a second at most, then it gives up until
        // the next round (the log grows a little longer meanwhile).
        if let Err(error) = connection.execute("PRAGMA busy_timeout = 100").await {
            tracing::warn!(%error, url, "Cannot bound the checkpoints' waits");
        }
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The log's length found by the last round (0 once truncated).
        let mut last_log = 0;
        while !pool.is_closed() {
            every.tick().await;
            let handle = tokio::runtime::Handle::current();
            let checkpointed = tokio::task::spawn_blocking(move || {
                let result = handle.block_on(async {
                    // busy (1 when a reader or writer kept it from finishing), frames in the
                    // log, frames copied back.
                    let passive = "PRAGMA wal_checkpoint(PASSIVE)";
                    let (_, log, mut copied): (i64, i64, i64) =
                        sqlx::query_as(passive).fetch_one(&mut connection).await?;
                    if log > 0 && copied == log && log == last_log {
                        // Nothing committed for a round, everything copied back: quiet.
                        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
                        return Ok(0);
                    }
                    if log > RESTART_OVER_FRAMES {
                        // Passive again while commits came in during the last one (each copies
                        // only those), so that the RESTART, which holds writers off, finds
                        // little or nothing left to copy and sync.
                        for _ in 0..PASSIVE_CATCH_UPS {
                            let (_, log, now): (i64, i64, i64) =
                                sqlx::query_as(passive).fetch_one(&mut connection).await?;
                            if now >= log || now == copied {
                                break;
                            }
                            copied = now;
                        }
                        // Busy (1) when it gave up waiting: tried again in a second.
                        connection.execute("PRAGMA wal_checkpoint(RESTART)").await?;
                    }
                    Ok::<_, sqlx::Error>(log)
                });
                (connection, result)
            })
            .await;
            match checkpointed {
                Ok((back, result)) => {
                    connection = back;
                    match result {
                        Ok(log) => last_log = log,
                        Err(error) => tracing::debug!(%error, url, "Checkpoint not done; trying again"),
                    }
                }
                Err(_) => return, // the runtime is shutting down
            }
        }
        let _ = connection.close().await;
    });
}

/// Runs one set of migrations beside the other set sharing the database. Two replicas
/// starting together on one SQLite file may race to apply the same migration; the loser
/// sees it applied on its next try.
async fn migrate(pool: &Pool, mut migrator: Migrator) -> Result<(), DbError> {
    use backon::Retryable;
    migrator.set_ignore_missing(true);
    let tries =
        backon::ExponentialBuilder::new().with_min_delay(Duration::from_millis(200)).with_jitter().with_max_times(5);
    (|| migrator.run(pool))
        .retry(tries)
        .sleep(tokio::time::sleep)
        .notify(|error, wait| tracing::debug!(%error, retry_in = ?wait, "Migration raced another replica, retrying"))
        .await
        .map_err(DbError::from)
}

/// Is the database answering?
pub async fn ping(pool: &Pool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// How long a starting service waits for a PostgreSQL that cannot be reached (restarting, or
/// not up yet) before it gives up: a process supervisor restarting a service that exits at once
/// gives up sooner (`shop up` after five quick exits).
const REACH_WITHIN: Duration = Duration::from_secs(60);

/// Makes the service's database if it is missing, waiting up to [`REACH_WITHIN`] while the
/// server cannot be reached or refuses connections for now (starting up, shutting down).
async fn reach_postgres(url: &str) -> Result<(), DbError> {
    let deadline = std::time::Instant::now() + REACH_WITHIN;
    let mut delays = crate::retry::delays(Duration::from_millis(200));
    loop {
        match create_postgres_database(url).await {
            Err(DbError::Connect { source, .. }) if is_transient(&source) && std::time::Instant::now() < deadline => {
                let wait = delays.next().expect("retries never run out");
                tracing::warn!(error = %source, retry_in = ?wait, "The database cannot be reached yet; waiting for it");
                tokio::time::sleep(wait).await;
            }
            reached => return reached,
        }
    }
}

/// Creates the service's PostgreSQL database if it does not exist yet (the role needs
/// CREATEDB), so a fresh server needs nothing but a role.
async fn create_postgres_database(url: &str) -> Result<(), DbError> {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::Connection;
    let fail = |source| DbError::Connect { url: redact(url), source };
    let options: PgConnectOptions = url.parse().map_err(fail)?;
    let Some(name) = options.get_database().map(str::to_owned) else { return Ok(()) };
    match sqlx::PgConnection::connect_with(&options).await {
        Ok(connection) => return connection.close().await.map_err(fail),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(error) => return Err(fail(error)),
    }
    let mut maintenance =
        sqlx::PgConnection::connect_with(&options.clone().database("postgres")).await.map_err(fail)?;
    let created = maintenance.execute(format!("CREATE DATABASE \"{}\"", name.replace('"', "")).as_str()).await;
    match created {
        // Another replica created it first: 42P04, or 23505 when both raced in the catalog.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(error) => Err(fail(error)),
        Ok(_) => {
            tracing::info!(database = %name, "Created the PostgreSQL database");
            Ok(())
        }
    }
}

fn create_parent_dir(url: &str) -> Result<(), DbError> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| DbError::DataDir { path: parent.display().to_string(), source })?;
    }
    Ok(())
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `count` numbered placeholders from `$first` on (`$3, $4, $5`), for statements with one
/// row or one list item per value, which SQLite and PostgreSQL both read. sqlx's
/// `QueryBuilder` would be the crate's way, but over the `Any` driver it writes `?`, which
/// PostgreSQL refuses (launchbadge/sqlx#3000, open); only placeholders come from here, never
/// values, which are always bound.
pub fn placeholders(first: usize, count: usize) -> impl Iterator<Item = String> {
    (first..first + count).map(|i| format!("${i}"))
}

/// Milliseconds since the epoch, the unit of every stored time.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Is this error worth retrying (busy database, lost connection) rather than a bug?
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite BUSY/LOCKED (and their extended codes); PostgreSQL serialization
            // failure, deadlock, connection errors, and the server going down or coming up
            // (admin_shutdown, crash_shutdown, cannot_connect_now: a restart).
            matches!(code.as_ref(), "5" | "6" | "517" | "261" | "262" | "40001" | "40P01")
                || code.starts_with("08")
                || code.starts_with("57P")
        }
        _ => false,
    }
}

/// A stored time as the RFC 3339 text the APIs answer with.
pub fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The customer stored in a row's `customer_name`, `customer_email` and `customer_phone`
/// columns (orders, payments and deliveries keep them so), parsed as at the edge.
pub fn customer(row: &sqlx::any::AnyRow) -> Result<shop_events::Customer, sqlx::Error> {
    use sqlx::Row;
    let column = |name: &str| row.try_get::<String, _>(name);
    shop_events::Customer::parse(&column("customer_name")?, &column("customer_email")?, &column("customer_phone")?)
        .map_err(|e| sqlx::Error::Decode(format!("stored customer is not valid: {e}").into()))
}
