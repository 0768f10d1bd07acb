//! `shop topics create|list`.

use std::time::Duration;

use shop_events::Topic;

use crate::cli::TopicArgs;

pub async fn create(args: TopicArgs) -> anyhow::Result<()> {
    let created = ensure(&args.kafka_brokers, args.partitions, args.replication_factor).await?;
    println!(
        "{} topic(s) created, {} already there ({} partitions, replication factor {})",
        created.len(),
        Topic::ALL.len() - created.len(),
        args.partitions,
        args.replication_factor
    );
    Ok(())
}

pub async fn list(args: TopicArgs) -> anyhow::Result<()> {
    let mut topics = shop_platform::kafka::describe_topics(&args.kafka_brokers, Duration::from_secs(10)).await?;
    topics.sort();
    for (name, partitions) in topics {
        println!("{name}\t{partitions} partition(s)");
    }
    Ok(())
}

/// Creates the 11 topics if missing and waits until the cluster shows them all.
pub async fn ensure(brokers: &str, partitions: i32, replication_factor: i32) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = Topic::ALL.iter().map(|t| t.name().to_owned()).collect();
    let created = shop_platform::kafka::create_topics(brokers, &names, partitions, replication_factor)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the topics on {brokers}: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let known = shop_platform::kafka::describe_topics(brokers, Duration::from_secs(5)).await.unwrap_or_default();
        let missing: Vec<&String> = names.iter().filter(|n| !known.iter().any(|(k, p)| k == *n && *p > 0)).collect();
        if missing.is_empty() {
            return Ok(created);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the cluster at {brokers} still lacks topics {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
