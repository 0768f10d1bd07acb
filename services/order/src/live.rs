//! What wakes an order's live streams (`GET /orders/{id}/events`): the order's own stage
//! events. Either replica may move an order on (its partition decides which), and a customer's
//! stream may be open on the other one; so each replica reads the ends of the order topics it
//! publishes the stages to, and wakes the streams of the order a record is about. A change
//! this replica commits wakes them at once, before its record is even published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use shop_events::{OrderId, Topic};
use shop_platform::kafka;
use shop_platform::Shutdown;
use tokio::sync::watch;

/// The topics whose records say an order reached a stage after it was created.
const STAGE_TOPICS: [Topic; 4] =
    [Topic::OrdersReadyToShip, Topic::OrdersShipping, Topic::OrdersShipped, Topic::OrdersDelivered];

/// How long to wait before trying again when the broker cannot be read.
const RETRY: Duration = Duration::from_secs(1);

/// The live streams open on this replica, by order. Each order has one channel, bumped when
/// the order may have changed; its streams hold receivers.
#[derive(Clone, Default)]
pub struct Followers {
    orders: Arc<Mutex<HashMap<OrderId, watch::Sender<u64>>>>,
}

/// One stream's hold on its order's channel; let go when the stream ends.
pub struct Follow {
    followers: Followers,
    id: OrderId,
    changes: Option<watch::Receiver<u64>>,
}

impl Followers {
    /// Follows `id`: a change announced from now on is seen by `Follow::changed`.
    pub fn follow(&self, id: OrderId) -> Follow {
        let mut orders = self.orders.lock().expect("followers lock");
        let changes = orders.entry(id).or_insert_with(|| watch::channel(0).0).subscribe();
        Follow { followers: self.clone(), id, changes: Some(changes) }
    }

    /// `id` may have changed: its streams look again.
    pub fn changed(&self, id: OrderId) {
        if let Some(sender) = self.orders.lock().expect("followers lock").get(&id) {
            sender.send_modify(|n| *n += 1);
        }
    }

    /// Anything may have changed (this replica started hearing the stage events only now).
    fn all_changed(&self) {
        for sender in self.orders.lock().expect("followers lock").values() {
            sender.send_modify(|n| *n += 1);
        }
    }

    /// Reads the stage topics' ends until shutdown, waking the streams of each record's order
    /// (the record key). A broker that cannot be read is tried again each second; meanwhile the
    /// streams still see what this replica changes.
    pub async fn hear_stages(self, brokers: String, client_id: String, shutdown: Shutdown) -> anyhow::Result<()> {
        let topics = STAGE_TOPICS.map(|topic| topic.name());
        let consumer = loop {
            match kafka::tail(&brokers, &client_id, &topics).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(%error, "Cannot read the order topics yet; live streams hear only this replica");
                    tokio::select! {
                        _ = shutdown.wait() => return Ok(()),
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        };
        // A change made elsewhere before the consumer's first fetch is not heard: let every
        // stream look once, now that any later one will be.
        self.all_changed();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                received = consumer.recv() => match received {
                    Ok(record) => {
                        match record.key().and_then(|key| std::str::from_utf8(key).ok()).and_then(|key| key.parse().ok()) {
                            Some(id) => self.changed(id),
                            None => tracing::debug!(topic = record.topic(), "A stage record without an order key"),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot read the order topics; trying again");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }
}

impl Follow {
    /// Waits until the order may have changed since the last call (or since `follow`).
    pub async fn changed(&mut self) {
        let changes = self.changes.as_mut().expect("held until drop");
        if changes.changed().await.is_err() {
            // The sender is gone only if the map lost it, which `Drop` alone does.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        drop(self.changes.take());
        let mut orders = self.followers.orders.lock().expect("followers lock");
        if orders.get(&self.id).is_some_and(|sender| sender.receiver_count() == 0) {
            orders.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_only_its_orders_streams_and_the_last_stream_lets_go() {
        let followers = Followers::default();
        let (a, b) = (OrderId::new(), OrderId::new());
        let mut first = followers.follow(a);
        let mut second = followers.follow(a);
        let mut other = followers.follow(b);
        followers.changed(a);
        first.changed().await;
        second.changed().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), other.changed()).await.is_err(),
            "another order's stream sleeps on"
        );
        drop(first);
        assert_eq!(followers.orders.lock().unwrap().len(), 2, "a stream still follows a");
        drop(second);
        drop(other);
        assert!(followers.orders.lock().unwrap().is_empty());
        // Unfollowed orders cost nothing to announce.
        followers.changed(a);
        assert!(followers.orders.lock().unwrap().is_empty());
    }
}
