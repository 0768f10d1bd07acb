//! The broker's own ceiling on this machine: the services' producer (the platform's, so the
//! same settings: idempotent, acks=all, linger 2 ms) and consumer (librdkafka's fetch wait)
//! move records shaped like the system's (a ~600-byte JSON envelope keyed by a fresh order
//! id) through a scratch topic shaped like the system's topics, as fast as they can.
//! Nothing else in the system does work meanwhile, so this is what Kafka alone allows.
//! First, one record at a time, it times the floor of a hop: send to receive, nothing else.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use uuid::Uuid;

use crate::latency::{Latencies, Summary};

/// Records the producer may have unacknowledged at once.
const MAX_IN_FLIGHT: usize = 20_000;
/// Run this long before counting: connections, metadata, the first batches.
const RAMP_UP: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceiling {
    pub seconds: f64,
    pub partitions: i32,
    pub replication_factor: i32,
    pub record_bytes: usize,
    /// Records the brokers acknowledged per second.
    pub produced_per_second: f64,
    /// Records the consumer received per second.
    pub consumed_per_second: f64,
    /// The lower of the two: records moved through the broker per second.
    pub records_per_second: f64,
    /// One record at a time on the idle broker, from the send to the consumer receiving it:
    /// the least any event hop can take with these client settings.
    pub hop_floor: Option<Summary>,
}

pub async fn measure(brokers: &str, seconds: Duration, partitions: i32, replication: i32) -> anyhow::Result<Ceiling> {
    let topic = format!("shop-bench-ceiling-{}", Uuid::new_v4().simple());
    shop_platform::kafka::create_topics(brokers, std::slice::from_ref(&topic), partitions, replication).await?;
    wait_for_topic(brokers, &topic, partitions).await?;
    let floor = hop_floor(brokers, &topic, partitions).await;
    let outcome = run(brokers, &topic, seconds, partitions).await;
    delete_topic(brokers, &topic).await;
    let (produced, consumed) = outcome?;
    let hop_floor = match floor {
        Ok(latencies) => latencies.summary(FLOOR),
        Err(error) => {
            tracing::warn!(%error, "Cannot measure the broker's hop floor");
            None
        }
    };
    let per_second = |n: u64| n as f64 / seconds.as_secs_f64();
    Ok(Ceiling {
        seconds: seconds.as_secs_f64(),
        partitions,
        replication_factor: replication,
        record_bytes: record(Uuid::new_v4()).len(),
        produced_per_second: per_second(produced),
        consumed_per_second: per_second(consumed),
        records_per_second: per_second(produced.min(consumed)),
        hop_floor,
    })
}

const FLOOR: &str = "send → received";
/// Round trips timed for the floor, after a few untimed ones.
const FLOOR_SAMPLES: usize = 200;
const FLOOR_WARMUP: usize = 10;

/// Sends one record at a time into the empty topic and times each until the consumer has it.
async fn hop_floor(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Latencies> {
    let consumer =
        shop_platform::kafka::consumer(brokers, "shop-bench-floor", &format!("shop-bench-floor-{}", Uuid::new_v4()))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let producer = shop_platform::kafka::producer(brokers, "shop-bench-floor")?;
    let mut latencies = Latencies::default();
    for round in 0..FLOOR_WARMUP + FLOOR_SAMPLES {
        let key = Uuid::new_v4();
        let payload = record(key);
        let sent = Instant::now();
        let key = key.to_string();
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
            .map_err(|(error, _)| anyhow::anyhow!("the floor producer failed: {error}"))?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                .await
                .map_err(|_| anyhow::anyhow!("a floor record did not arrive within 10 s"))??;
            if message.key() == Some(key.as_bytes()) {
                break;
            }
        }
        if round >= FLOOR_WARMUP {
            latencies.record(FLOOR, sent.elapsed());
        }
        delivery.await.map_err(|_| anyhow::anyhow!("floor producer went away"))?.map_err(|(e, _)| e)?;
    }
    Ok(latencies)
}

/// Produces for `RAMP_UP + seconds` while consuming; returns what was acknowledged and what
/// was received within the last `seconds`.
async fn run(brokers: &str, topic: &str, seconds: Duration, partitions: i32) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let (window_start, window_end) = (started + RAMP_UP, started + RAMP_UP + seconds);
    let in_window = move |t: Instant| t >= window_start && t < window_end;

    let consumer = shop_platform::kafka::consumer(
        brokers,
        "shop-bench-ceiling",
        &format!("shop-bench-ceiling-{}", Uuid::new_v4()),
    )?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consuming = tokio::spawn({
        let (consumed, stop) = (consumed.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
                    Ok(Ok(_)) if in_window(Instant::now()) => {
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "Ceiling consumer error"),
                    _ => {}
                }
            }
        }
    });

    let producer = shop_platform::kafka::producer(brokers, "shop-bench-ceiling")?;
    let mut in_flight = FuturesUnordered::new();
    let mut produced = 0_u64;
    while Instant::now() < window_end {
        while in_flight.len() < MAX_IN_FLIGHT {
            let key = Uuid::new_v4().to_string();
            let payload = record(Uuid::parse_str(&key)?);
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(delivery) => in_flight.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((error, _)) => anyhow::bail!("the ceiling producer failed: {error}"),
            }
        }
        match in_flight.next().await {
            Some(Ok(Ok(_))) if in_window(Instant::now()) => produced += 1,
            Some(Ok(Err((error, _)))) => anyhow::bail!("the broker refused a ceiling record: {error}"),
            _ => {}
        }
    }
    while in_flight.next().await.is_some() {}
    stop.store(true, Ordering::Relaxed);
    consuming.await?;
    Ok((produced, consumed.load(Ordering::Relaxed)))
}

/// A record like the system's `orders-ready-to-ship`: the envelope, a customer, two items.
pub fn record(order_id: Uuid) -> String {
    serde_json::json!({
        "id": Uuid::now_v7(),
        "type": "OrderReadyToShip",
        "version": 1,
        "occurredAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "orderId": order_id,
        "source": "order",
        "payload": {
            "customer": {"name": "Grace Hopper", "email": "grace.hopper@example.com", "phone": "+1 555 0100"},
            "items": [
                {"sku": "BOOK-7", "name": "A book", "quantity": 1, "unitPrice": 20.0},
                {"sku": "TEA-01", "name": "Tea", "quantity": 2, "unitPrice": 12.5}
            ],
            "total": 45.0,
            "paymentId": Uuid::new_v4(),
            "paymentUrl": format!("http://localhost:8082/pay/{}", Uuid::new_v4()),
            "deliveryId": "DLV-0000000000AB",
            "note": "padding to the size of the system's records"
        }
    })
    .to_string()
}

async fn wait_for_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let known = shop_platform::kafka::describe_topics(brokers, Duration::from_secs(5)).await.unwrap_or_default();
        if known.iter().any(|(name, n)| name == topic && *n == partitions as usize) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the scratch topic {topic} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_topic(brokers: &str, topic: &str) {
    let Ok(admin) = shop_platform::kafka::admin(brokers) else { return };
    let options = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    if let Err(error) = admin.delete_topics(&[topic], &options).await {
        tracing::debug!(%error, topic, "Scratch topic not deleted");
    }
}
