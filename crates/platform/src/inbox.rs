//! The inbox: which events a consumer has applied. Recording the event id in the same
//! transaction as the effect turns at-least-once delivery into exactly-once effects.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;
use uuid::Uuid;

use crate::db::{now_millis, placeholders, Pool};
use crate::Shutdown;

/// How long an applied event is remembered: longer than a record stays in a topic (Kafka's
/// default retention, which the topics keep, is 7 days), so no redelivery can come after it.
pub const RETENTION: Duration = Duration::from_secs(8 * 24 * 60 * 60);
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Records that `consumer` applies `event_id`: within the effect's transaction (pass `&mut *tx`),
/// or on its own for an effect outside the database. Returns false when it was applied
/// before: the caller then does nothing (and commits nothing new).
pub async fn first_delivery<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(now_millis())
    .execute(executor)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Which of `event_ids` `consumer` has applied already, in one query. For effects outside the
/// database (a push, a mail), which are recorded with `record_applied` only after they happened.
pub async fn applied_among(pool: &Pool, consumer: &str, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let ids: Vec<String> = placeholders(2, event_ids.len()).collect();
    let select =
        format!("SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id IN ({})", ids.join(", "));
    let mut query = sqlx::query(&select).bind(consumer);
    for id in event_ids {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.iter().filter_map(|row| row.try_get::<String, _>("event_id").ok()?.parse().ok()).collect())
}

/// Records that `consumer` applied each of `event_ids` (effects outside the database, after
/// they happened): `first_delivery` for many, in one statement.
pub async fn record_applied(pool: &Pool, consumer: &str, event_ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = placeholders(3, event_ids.len()).map(|id| format!("($1, $2, {id})")).collect();
    let insert = format!(
        "INSERT INTO processed_events (consumer, processed_at, event_id) VALUES {} \
         ON CONFLICT (consumer, event_id) DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(&insert).bind(consumer).bind(now_millis());
    for id in event_ids {
        query = query.bind(id.to_string());
    }
    query.execute(pool).await?;
    Ok(())
}

/// How many entries one pruning statement forgets at most: each is a short write, so the
/// service's own writes go on between them.
const PRUNE_BATCH: u64 = 500;

/// Forgets the events applied before `before` (milliseconds since the epoch) that also
/// happened before it. Returns how many.
///
/// An event's id tells its time (a v7 UUID, as every envelope gets: `Envelope::wrap`), and the
/// primary key is (consumer, event id): so each consumer's old entries are the start of its
/// part of the key, forgotten in batches of `PRUNE_BATCH` without reading the rest of the
/// table. (The table has no index on `processed_at`; a `DELETE … WHERE processed_at < $1`
/// read every entry, in one statement that held the database's write lock throughout, every
/// hour.) An id that carries no time (not a v7 UUID; no envelope has one) sorts anywhere and
/// may never be forgotten: a few rows, never a redelivery applied twice.
pub async fn forget_applied_before(pool: &Pool, before: i64) -> Result<u64, sqlx::Error> {
    let Ok(millis) = u64::try_from(before) else { return Ok(0) };
    // The least v7 id of the millisecond `before`: every v7 id below it is older.
    let bound = uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid().to_string();
    let mut forgotten = 0;
    for consumer in consumers(pool).await? {
        loop {
            let done = sqlx::query(
                "DELETE FROM processed_events WHERE consumer = $1 AND event_id IN (\
                   SELECT event_id FROM processed_events WHERE consumer = $2 AND event_id < $3 AND processed_at < $4 \
                   ORDER BY event_id LIMIT $5)",
            )
            .bind(&consumer)
            .bind(&consumer)
            .bind(&bound)
            .bind(before)
            .bind(PRUNE_BATCH as i64)
            .execute(pool)
            .await?;
            forgotten += done.rows_affected();
            if done.rows_affected() < PRUNE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(forgotten)
}

/// The consumers with entries in the inbox, each found by one step down the primary key
/// (a handful, in a table of millions of entries).
async fn consumers(pool: &Pool) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH RECURSIVE found(consumer) AS (\
           SELECT MIN(consumer) FROM processed_events \
           UNION ALL \
           SELECT (SELECT MIN(consumer) FROM processed_events WHERE consumer > found.consumer) \
           FROM found WHERE found.consumer IS NOT NULL) \
         SELECT consumer FROM found WHERE consumer IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| row.try_get("consumer")).collect()
}

/// Keeps the inbox from growing without end: at start and every hour until `shutdown`,
/// forgets the events applied more than `RETENTION` ago. A failure is logged and retried then.
pub async fn prune(pool: Pool, shutdown: Shutdown) -> anyhow::Result<()> {
    loop {
        let before = now_millis() - RETENTION.as_millis() as i64;
        match forget_applied_before(&pool, before).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "Inbox pruned of events older than its retention"),
            Err(error) => tracing::warn!(%error, "Cannot prune the inbox; trying again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
}
