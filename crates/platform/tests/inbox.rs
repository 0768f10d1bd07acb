//! The inbox on a real SQLite database: recording many events at once is the same as
//! recording each, asking about many answers for each, and pruning forgets only the old.

use shop_platform::{db, inbox};
use uuid::Uuid;

/// An SQLite database with the platform's tables in `folder` (removed with it).
async fn sqlite(folder: &tempfile::TempDir) -> db::Pool {
    let file = folder.path().join("inbox.db");
    db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate::Migrator::DEFAULT).await.unwrap()
}

#[tokio::test]
async fn events_recorded_together_read_back_one_by_one_and_together() {
    let folder = tempfile::tempdir().unwrap();
    let pool = sqlite(&folder).await;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();

    inbox::record_applied(&pool, "channel-a", &ids[..3]).await.unwrap();
    inbox::record_applied(&pool, "channel-a", &ids[2..4]).await.unwrap(); // one again: no error

    let applied = inbox::applied_among(&pool, "channel-a", &ids).await.unwrap();
    assert_eq!(applied, ids[..4].iter().copied().collect());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(applied.contains(id), i < 4, "event {i}");
    }
    assert!(!inbox::first_delivery(&pool, "channel-a", ids[0]).await.unwrap(), "recorded before");
    assert!(inbox::first_delivery(&pool, "channel-a", ids[4]).await.unwrap(), "not recorded before");
    assert!(inbox::applied_among(&pool, "channel-b", &ids).await.unwrap().is_empty(), "another consumer's inbox");

    // Pruning forgets what was applied before the cut-off, and only that.
    let future = shop_platform::db::now_millis() + 1;
    assert_eq!(inbox::forget_applied_before(&pool, 0).await.unwrap(), 0, "nothing is that old");
    assert_eq!(inbox::forget_applied_before(&pool, future).await.unwrap(), 5);
    assert!(inbox::applied_among(&pool, "channel-a", &ids).await.unwrap().is_empty());

    pool.close().await;
}

/// Entries as an inbox holds them after days: `(consumer, event id, processed at)`.
async fn insert(pool: &db::Pool, entries: &[(&str, Uuid, i64)]) {
    for chunk in entries.chunks(100) {
        let rows: Vec<String> =
            (0..chunk.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
        let sql = format!("INSERT INTO processed_events (consumer, event_id, processed_at) VALUES {}", rows.join(", "));
        let mut query = sqlx::query(&sql);
        for (consumer, id, at) in chunk {
            query = query.bind(*consumer).bind(id.to_string()).bind(*at);
        }
        query.execute(pool).await.unwrap();
    }
}

/// Many old entries of one consumer (more than two batches), a few of another, and what must be
/// kept: pruning forgets exactly the old.
async fn prune_a_weeks_old_inbox(pool: &db::Pool) {
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let now = db::now_millis();
    let cut = now - 8 * DAY;
    // An event of `days` ago, `n` ms apart from the others of that day.
    let event = |days: i64, n: i64| {
        let at = u64::try_from(now - days * DAY + n).unwrap();
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at / 1000, (at % 1000) as u32 * 1_000_000))
    };
    let mut entries: Vec<(&str, Uuid, i64)> =
        (0..1_234).map(|n| ("order-service", event(10, n), now - 10 * DAY + n)).collect();
    entries.extend((0..3).map(|n| ("notification-email", event(9, n), now - 9 * DAY)));
    // Kept: an old event applied only lately; an event newer than the cut-off, however its
    // entry is dated; and entries of this week.
    let late = ("order-service", event(10, 5_000), now - DAY);
    let newer = ("notification-email", event(7, 0), now - 9 * DAY);
    let recent = [("order-service", event(1, 0), now - DAY), ("notification-email", event(0, 0), now)];
    entries.extend([late, newer]);
    entries.extend(recent);
    insert(pool, &entries).await;

    assert_eq!(inbox::forget_applied_before(pool, cut).await.unwrap(), 1_237);
    let mut left: Vec<(String, String)> =
        sqlx::query_as("SELECT consumer, event_id FROM processed_events").fetch_all(pool).await.unwrap();
    left.sort();
    let mut kept: Vec<(String, String)> =
        [late, newer].iter().chain(&recent).map(|(c, id, _)| (c.to_string(), id.to_string())).collect();
    kept.sort();
    assert_eq!(left, kept);
    assert_eq!(inbox::forget_applied_before(pool, cut).await.unwrap(), 0, "nothing more is old");
}

#[tokio::test]
async fn pruning_forgets_every_consumers_old_entries_in_batches_and_nothing_newer() {
    let folder = tempfile::tempdir().unwrap();
    let pool = sqlite(&folder).await;
    prune_a_weeks_old_inbox(&pool).await;
    pool.close().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: SHOP_TEST_DATABASE_URL (.ci/real-engine)"]
async fn pruning_on_postgresql_forgets_the_same() {
    let server = std::env::var("SHOP_TEST_DATABASE_URL").expect("SHOP_TEST_DATABASE_URL names a PostgreSQL server");
    let url = format!("{}/tinbox{}", server.trim_end_matches('/'), Uuid::new_v4().simple());
    let pool = db::open(&url, sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    prune_a_weeks_old_inbox(&pool).await;
    pool.close().await;
}
