//! The inbox: which events a consumer has applied. Recording the event id in the same
//! transaction as the effect turns at-least-once delivery into exactly-once effects.

use uuid::Uuid;

use crate::db::{now_millis, Pool};

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

/// Has `consumer` applied `event_id` already? For effects outside the database (a push, a
/// mail), which are recorded with `first_delivery` only after they happened.
pub async fn already_applied(pool: &Pool, consumer: &str, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2")
        .bind(consumer)
        .bind(event_id.to_string())
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}
