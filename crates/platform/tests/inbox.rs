//! The inbox on a real SQLite database: recording many events at once is the same as
//! recording each, asking about many answers for each, and pruning forgets only the old.

use shop_platform::{db, inbox};
use uuid::Uuid;

#[tokio::test]
async fn events_recorded_together_read_back_one_by_one_and_together() {
    let file = std::env::temp_dir().join(format!("shop-inbox-{}.db", Uuid::new_v4().simple()));
    let pool =
        db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate::Migrator::DEFAULT).await.unwrap();
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
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
