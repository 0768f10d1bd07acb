//! SQLite's log (WAL) under writes that never pause, as at full load: it starts over from its
//! beginning again and again instead of growing without end; and once the writes stop, it is
//! truncated rather than kept on disk at its longest.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shop_platform::db;
use uuid::Uuid;

/// The log's salt-1 (bytes 16..20 of its header), which SQLite changes each time it starts
/// the log over, and the log's length; None before the log has a header.
fn log_header(path: &str) -> Option<(u32, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0_u8; 20];
    file.read_exact(&mut header).ok()?;
    let salt = u32::from_be_bytes(header[16..20].try_into().ok()?);
    Some((salt, file.metadata().ok()?.len()))
}

/// A database in `folder` with a table of notes, and the path of its log.
async fn notes(folder: &tempfile::TempDir) -> (db::Pool, String) {
    let file = folder.path().join("notes.db");
    let pool =
        db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    sqlx::query("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)").execute(&pool).await.unwrap();
    (pool, format!("{}-wal", file.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_writes_that_never_pause_the_log_starts_over() {
    // Removed with what the log grew to, even when the test fails.
    let folder = tempfile::tempdir().unwrap();
    let (pool, wal) = notes(&folder).await;

    // One writer committing a row at a time, each under a random key (so on a random page), as
    // fast as it can: the background checkpoint always finds commits arriving while it copies.
    let writing = pool.clone();
    let writer = tokio::spawn(async move {
        let body = "x".repeat(1000);
        let mut rows = 0_u64;
        loop {
            sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
                .bind(Uuid::new_v4().to_string())
                .bind(&body)
                .execute(&writing)
                .await
                .unwrap();
            rows += 1;
            if rows.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
    });

    // Three different salts: the log started over at least twice while the writer kept on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut salts = HashSet::new();
    let mut longest = 0;
    while salts.len() < 3 {
        if let Some((salt, length)) = log_header(&wal) {
            salts.insert(salt);
            longest = longest.max(length);
        }
        assert!(
            Instant::now() < deadline,
            "the log never started over ({} salts seen); it grew to {} MiB",
            salts.len(),
            longest >> 20
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
    let _ = writer.await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_stop_the_log_is_truncated() {
    let folder = tempfile::tempdir().unwrap();
    let (pool, wal) = notes(&folder).await;
    let body = "x".repeat(1000);
    for _ in 0..2000 {
        sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
            .bind(Uuid::new_v4().to_string())
            .bind(&body)
            .execute(&pool)
            .await
            .unwrap();
    }
    let written = std::fs::metadata(&wal).unwrap().len();
    assert!(written > 1 << 20, "the writes made a log of {written} bytes");

    // Nothing more is written: the background checkpoint copies the log back, finds it so a
    // round later and truncates it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let length = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if length == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the quiet log still holds {length} bytes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 2000, "every row is in the database");
    pool.close().await;
}
