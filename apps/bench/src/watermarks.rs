//! Records through the system: the sum over the 11 topics of the high watermark of every
//! partition. Its growth over the window is how many records the services produced,
//! read from the broker itself rather than counted by anyone who might miss one.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use shop_events::Topic;

const TIMEOUT: Duration = Duration::from_secs(10);

/// High watermark sums by topic.
pub type Watermarks = BTreeMap<String, i64>;

/// Reads the 11 topics' high watermarks (a blocking call: run it off the async threads).
pub fn read(brokers: &str) -> anyhow::Result<Watermarks> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("client.id", "shop-bench-watermarks").create()?;
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut sums = Watermarks::new();
    for topic in Topic::ALL {
        let name = topic.name();
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            .ok_or_else(|| anyhow::anyhow!("the cluster at {brokers} has no topic {name}"))?;
        let mut sum = 0;
        for partition in partitions {
            let (_, high) = consumer.fetch_watermarks(name, partition, TIMEOUT)?;
            sum += high;
        }
        sums.insert(name.to_owned(), sum);
    }
    Ok(sums)
}

pub async fn read_async(brokers: &str) -> anyhow::Result<Watermarks> {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || read(&brokers)).await?
}

/// Records added to each topic between two readings.
pub fn growth(start: &Watermarks, end: &Watermarks) -> Watermarks {
    end.iter().map(|(topic, high)| (topic.clone(), high - start.get(topic).copied().unwrap_or(0))).collect()
}

/// The partitions and replication factor of the system's topics, for a scratch topic shaped
/// the same.
pub fn topic_shape(brokers: &str) -> anyhow::Result<(i32, i32)> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    // A busy broker may drop the first connection; ask again before giving up.
    let mut attempts = 0;
    let metadata = loop {
        match consumer.fetch_metadata(Some(Topic::OrdersCreated.name()), TIMEOUT) {
            Ok(metadata) => break metadata,
            Err(error) if attempts >= 3 => return Err(error.into()),
            Err(_) => attempts += 1,
        }
    };
    let topic = metadata.topics().first().ok_or_else(|| anyhow::anyhow!("no metadata for orders-created"))?;
    let partitions = topic.partitions().len() as i32;
    let replicas = topic.partitions().first().map_or(1, |p| p.replicas().len().max(1)) as i32;
    anyhow::ensure!(partitions > 0, "orders-created has no partitions");
    Ok((partitions, replicas))
}
