//! Two writers on one SQLite file (the two replicas of a service on a laptop): the second waits
//! for the first's write to end and then writes, rather than failing, and gives up with
//! SQLite's "database is locked" only once its busy timeout is over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_platform::db;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

/// How long the first writer holds the lock.
const HELD: Duration = Duration::from_millis(300);

async fn two_replicas(folder: &tempfile::TempDir) -> (db::Pool, db::Pool, String) {
    let url = format!("sqlite://{}?mode=rwc", folder.path().join("shared.db").display());
    let first = db::open(&url, sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, writer TEXT NOT NULL)").execute(&first).await.unwrap();
    let second = db::open(&url, sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    (first, second, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_for_the_first_and_then_writes() {
    let folder = tempfile::tempdir().unwrap();
    let (first, second, _) = two_replicas(&folder).await;

    let mut holding = first.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (writer) VALUES ('first')").execute(&mut *holding).await.unwrap();
    let committed = Arc::new(AtomicBool::new(false));
    let release = {
        let committed = committed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HELD).await;
            holding.commit().await.unwrap();
            committed.store(true, Ordering::SeqCst);
        })
    };

    // The first holds the write lock: the second's write waits in the busy handler until the
    // commit, then goes through.
    sqlx::query("INSERT INTO notes (writer) VALUES ('second')").execute(&second).await.unwrap();
    assert!(committed.load(Ordering::SeqCst), "the second wrote only after the first committed");
    release.await.unwrap();
    let writers: Vec<String> =
        sqlx::query_scalar("SELECT writer FROM notes ORDER BY id").fetch_all(&second).await.unwrap();
    assert_eq!(writers, ["first", "second"]);
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_reported_as_locked() {
    let folder = tempfile::tempdir().unwrap();
    let (first, _, url) = two_replicas(&folder).await;
    let mut holding = first.begin().await.unwrap();
    sqlx::query("INSERT INTO notes (writer) VALUES ('first')").execute(&mut *holding).await.unwrap();

    let timeout = Duration::from_millis(200);
    let mut second = url
        .parse::<SqliteConnectOptions>()
        .unwrap()
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(timeout)
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let refused = sqlx::query("INSERT INTO notes (writer) VALUES ('second')").execute(&mut second).await.unwrap_err();
    let waited = started.elapsed();
    let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("5"), "SQLITE_BUSY: {refused}");
    // The handler's sleeps add up to the timeout less at most one sleep (a millisecond).
    assert!(waited >= timeout - Duration::from_millis(2), "gave up after {waited:?}, before its {timeout:?}");

    holding.rollback().await.unwrap();
    second.close().await.unwrap();
    first.close().await;
}
