//! The dead letters: what each consumer group set aside on `<topic>.dlq` (the consumer loop
//! copies the record there with why and whence in `dlq-*` headers), counted per topic and
//! listed, latest first; and the replay of one of them to its topic once its cause is fixed,
//! by the operator, once, recorded in the audit trail. Read from Kafka without joining a group.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use shop_events::{OrderId, Topic};
use shop_platform::auth::Operator;
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::ApiError;
use shop_platform::http::ApiPath;
use sqlx::Row;
use uuid::Uuid;

use crate::{AppState, LogRecord};

/// How long one question to Kafka may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The latest records listed per topic.
const LISTED: i64 = 20;
/// How much of a payload is shown.
const PREVIEW: usize = 2048;
/// The header a replayed record carries: where it was set aside (`topic/partition/offset`).
pub const REPLAYED_FROM: &str = "dlq-replayed-from";

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterReport {
    pub measured_at: String,
    /// Every topic's dead-letter topic, with what it holds.
    pub topics: Vec<DeadLetterTopic>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterTopic {
    pub topic: String,
    /// The topic its records were set aside from.
    pub source: &'static str,
    /// Records it holds.
    pub count: i64,
    /// The latest (at most 20), newest first.
    pub records: Vec<DeadLetter>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub set_aside_at: Option<String>,
    /// Why it was set aside (`dlq-error`).
    pub error: Option<String>,
    /// Who set it aside, and from where.
    pub group: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub event_id: Option<String>,
    /// The record's value as text (its first 2 KiB; invalid UTF-8 replaced).
    pub payload: Option<String>,
    /// When it was replayed, if it was.
    pub replayed: Option<Replayed>,
    /// The dead letter this record is a replay of (`topic/partition/offset`), set aside again.
    pub replay_of: Option<String>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    pub at: String,
    pub by: String,
    /// Where the copy went.
    pub to_topic: String,
    pub to_partition: Option<i32>,
    pub to_offset: Option<i64>,
}

fn reader(brokers: &str) -> KafkaResult<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "logging-dead-letters")
        // Needed by librdkafka for a consumer; this one only reads assigned partitions and
        // never joins the group nor commits.
        .set("group.id", "logging-dead-letters")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// The partitions of `topic` with their low and high watermarks; none when it does not exist
/// (a dead-letter topic is made by the first consumer that may need it).
fn partitions(consumer: &BaseConsumer, topic: &str) -> KafkaResult<Vec<(i32, i64, i64)>> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(Vec::new()) };
    if found.error().is_some() {
        return Ok(Vec::new());
    }
    found
        .partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), TIMEOUT).map(|(low, high)| (p.id(), low, high)))
        .collect()
}

/// The records of `topic`/`partition` from `from` up to `until` (exclusive).
fn read(consumer: &BaseConsumer, topic: &str, partition: i32, from: i64, until: i64) -> KafkaResult<Vec<OwnedMessage>> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while records.len() < (until - from).max(0) as usize && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() < until => records.push(message.detach()),
            Some(Ok(_)) => break,
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    consumer.unassign()?;
    Ok(records)
}

fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn dead_letter(message: &OwnedMessage, replayed: Option<Replayed>) -> DeadLetter {
    let payload = message.payload().map(|bytes| {
        let shown = &bytes[..bytes.len().min(PREVIEW)];
        String::from_utf8_lossy(shown).into_owned()
    });
    DeadLetter {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        set_aside_at: message.timestamp().to_millis().map(rfc3339),
        error: header(message, "dlq-error"),
        group: header(message, "dlq-consumer-group"),
        source_partition: header(message, "dlq-source-partition").and_then(|p| p.parse().ok()),
        source_offset: header(message, "dlq-source-offset").and_then(|o| o.parse().ok()),
        event_id: header(message, "event-id"),
        payload,
        replayed,
        replay_of: header(message, REPLAYED_FROM),
    }
}

/// The source topic of a dead-letter topic of this system, by name.
fn source_of(dead_letter_topic: &str) -> Option<Topic> {
    Topic::ALL.into_iter().find(|t| t.dead_letter_name() == dead_letter_topic)
}

/// Every dead-letter topic: its count and latest records. Blocking: call it from `spawn_blocking`.
fn measure(brokers: &str) -> KafkaResult<Vec<(Topic, i64, Vec<OwnedMessage>)>> {
    let consumer = reader(brokers)?;
    let mut topics = Vec::new();
    for source in Topic::ALL {
        let topic = source.dead_letter_name();
        let mut count = 0;
        let mut records = Vec::new();
        for (partition, low, high) in partitions(&consumer, &topic)? {
            count += high - low;
            records.extend(read(&consumer, &topic, partition, (high - LISTED).max(low), high)?);
        }
        records.sort_by_key(|m| std::cmp::Reverse((m.timestamp().to_millis(), m.offset())));
        records.truncate(LISTED as usize);
        topics.push((source, count, records));
    }
    Ok(topics)
}

/// Every topic's dead letters.
///
/// Each dead-letter topic, how many records it holds and the latest; 503 when Kafka does not
/// answer.
#[utoipa::path(get, path = "/api/dead-letters", security(("bearer" = ["operator"])), responses((status = 200, body = DeadLetterReport)))]
pub async fn report(State(state): State<AppState>, _: Operator) -> Result<Json<DeadLetterReport>, ApiError> {
    let brokers = state.brokers.clone();
    let measured = tokio::task::spawn_blocking(move || measure(&brokers))
        .await
        .map_err(|error| ApiError::internal(format!("reading the dead letters failed: {error}")))?
        .map_err(|error| ApiError::unavailable("Kafka does not answer").with_detail(error.to_string()))?;
    let replays = replays(&state.pool).await?;
    let topics = measured
        .into_iter()
        .map(|(source, count, records)| {
            let topic = source.dead_letter_name();
            let records = records
                .iter()
                .map(|m| {
                    let replayed = replays.iter().find(|(at, _)| *at == (topic.clone(), m.partition(), m.offset()));
                    dead_letter(m, replayed.map(|(_, r)| r.clone()))
                })
                .collect();
            DeadLetterTopic { topic, source: source.name(), count, records }
        })
        .collect();
    Ok(Json(DeadLetterReport { measured_at: rfc3339(now_millis()), topics }))
}

type ReplayRow = ((String, i32, i64), Replayed);

async fn replays(pool: &Pool) -> Result<Vec<ReplayRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT dlq_topic, dlq_partition, dlq_offset, replayed_at, replayed_by, to_topic, to_partition, to_offset \
         FROM dead_letter_replays",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let partition: i64 = row.try_get("dlq_partition")?;
            let to_partition: Option<i64> = row.try_get("to_partition")?;
            Ok((
                (row.try_get("dlq_topic")?, partition as i32, row.try_get("dlq_offset")?),
                Replayed {
                    at: rfc3339(row.try_get("replayed_at")?),
                    by: row.try_get("replayed_by")?,
                    to_topic: row.try_get("to_topic")?,
                    to_partition: to_partition.map(|p| p as i32),
                    to_offset: row.try_get("to_offset")?,
                },
            ))
        })
        .collect()
}

/// Replays a dead letter to the topic it was set aside from.
///
/// `POST /api/dead-letters/{topic}/{partition}/{offset}/replay`: copies that dead letter back
/// to the topic it was set aside from, with its key, value and headers (not the `dlq-*` ones;
/// `dlq-replayed-from` added), so every group consuming the topic sees it again; those that
/// handled it before skip it by its event id. Each dead letter is replayed once (409 after);
/// the replay is recorded in the audit trail (`deadLetter.replayed`) before the copy is sent,
/// and the record is taken back if the send fails (503).
#[utoipa::path(post, path = "/api/dead-letters/{topic}/{partition}/{offset}/replay", security(("bearer" = ["operator"])),
    params(
        ("topic" = String, Path, description = "A dead-letter topic (`<topic>.dlq`)"),
        ("partition" = i32, Path, description = "Its partition"),
        ("offset" = i64, Path, description = "The record's offset"),
    ),
    responses(
        (status = 200, description = "Replayed: where the copy went.", body = Replayed),
        (status = 404, description = "Not a dead-letter topic of this system, or no record there.", body = shop_platform::http::ErrorDoc),
        (status = 409, description = "Replayed before.", body = shop_platform::http::ErrorDoc),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    _: Operator,
    ApiPath((topic, partition, offset)): ApiPath<(String, i32, i64)>,
) -> Result<Json<Replayed>, ApiError> {
    let Some(source) = source_of(&topic) else {
        return Err(ApiError::not_found(format!("{topic} is not a dead-letter topic of this system")));
    };
    let brokers = state.brokers.clone();
    let wanted = topic.clone();
    let found = tokio::task::spawn_blocking(move || -> KafkaResult<Option<OwnedMessage>> {
        let consumer = reader(&brokers)?;
        let Some(&(_, low, high)) = partitions(&consumer, &wanted)?.iter().find(|(p, _, _)| *p == partition) else {
            return Ok(None);
        };
        if !(low..high).contains(&offset) {
            return Ok(None);
        }
        Ok(read(&consumer, &wanted, partition, offset, offset + 1)?.pop())
    })
    .await
    .map_err(|error| ApiError::internal(format!("reading the dead letter failed: {error}")))?
    .map_err(|error| ApiError::unavailable("Kafka does not answer").with_detail(error.to_string()))?;
    let Some(message) = found else {
        return Err(ApiError::not_found(format!("{topic} holds no record {offset} on partition {partition}")));
    };

    // Claim the replay and write its audit record first: a second replay finds the claim, and
    // no replay goes unrecorded.
    let at = now_millis();
    let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let order_id = key.as_deref().and_then(|k| Uuid::parse_str(k).ok()).unwrap_or(Uuid::nil());
    let why = header(&message, "dlq-error").unwrap_or_else(|| "no reason recorded".into());
    let by_group = header(&message, "dlq-consumer-group").unwrap_or_else(|| "an unknown group".into());
    let record = LogRecord {
        event_id: Uuid::now_v7(),
        order_id: OrderId(order_id),
        source: crate::SERVICE.to_owned(),
        instance: state.instance.clone(),
        action: "deadLetter.replayed".to_owned(),
        message: format!(
            "operator replayed {topic}/{partition}/{offset} to {} (set aside by {by_group}: {why})",
            source.name()
        ),
        occurred_at: rfc3339(at),
        trace_id: shop_platform::trace::trace_id(&tracing::Span::current()),
    };
    let mut tx = state.pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO dead_letter_replays (dlq_topic, dlq_partition, dlq_offset, replayed_at, replayed_by, to_topic, audit_event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&topic)
    .bind(i64::from(partition))
    .bind(offset)
    .bind(at)
    .bind("operator")
    .bind(source.name())
    .bind(record.event_id.to_string())
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        // The pool may hold one connection (SQLite): give it back before reading.
        tx.rollback().await?;
        let done = replays(&state.pool).await?;
        let when = done.iter().find(|(k, _)| *k == (topic.clone(), partition, offset)).map(|(_, r)| r.at.clone());
        return Err(ApiError::conflict(format!(
            "{topic}/{partition}/{offset} was replayed already{}",
            when.map(|at| format!(" at {at}")).unwrap_or_default()
        )));
    }
    crate::audit::insert(&mut tx, &record, at).await?;
    tx.commit().await?;

    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
            headers = headers.insert(Header { key: h.key, value: h.value });
        }
    }
    let from = format!("{topic}/{partition}/{offset}");
    headers = headers.insert(Header { key: REPLAYED_FROM, value: Some(&from) });
    let mut copy = FutureRecord::to(source.name()).headers(headers);
    if let Some(key) = message.key() {
        copy = copy.key(key);
    }
    if let Some(payload) = message.payload() {
        copy = copy.payload(payload);
    }
    match state.producer.send(copy, TIMEOUT).await {
        Ok(delivered) => {
            sqlx::query(
                "UPDATE dead_letter_replays SET to_partition = $1, to_offset = $2 \
                 WHERE dlq_topic = $3 AND dlq_partition = $4 AND dlq_offset = $5",
            )
            .bind(i64::from(delivered.partition))
            .bind(delivered.offset)
            .bind(&topic)
            .bind(i64::from(partition))
            .bind(offset)
            .execute(&state.pool)
            .await?;
            tracing::info!(dead_letter = %from, to = source.name(), "Dead letter replayed");
            // No open stream is no error: the record is stored and listed all the same.
            let _ = state.arrivals.send(record);
            Ok(Json(Replayed {
                at: rfc3339(at),
                by: "operator".to_owned(),
                to_topic: source.name().to_owned(),
                to_partition: Some(delivered.partition),
                to_offset: Some(delivered.offset),
            }))
        }
        Err((error, _)) => {
            let mut tx = state.pool.begin().await?;
            sqlx::query(
                "DELETE FROM dead_letter_replays WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3",
            )
            .bind(&topic)
            .bind(i64::from(partition))
            .bind(offset)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM audit_log WHERE event_id = $1")
                .bind(record.event_id.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::warn!(%error, dead_letter = %from, "Dead letter not replayed");
            Err(ApiError::unavailable("the brokers did not take the copy; nothing was replayed")
                .with_detail(error.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_systems_dead_letter_topics_are_known() {
        assert_eq!(source_of("orders-created.dlq"), Some(Topic::OrdersCreated));
        assert_eq!(source_of("orders-created"), None);
        assert_eq!(source_of("elsewhere.dlq"), None);
    }
}
