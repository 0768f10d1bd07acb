//! What wakes an order's live streams (`GET /orders/{id}/events`): the order's own stage
//! events. Either replica may move an order on (its partition decides which), and a customer's
//! stream may be open on the other one; so each replica reads the ends of the order topics it
//! publishes the stages to, and wakes the streams of the order a record is about. A change
//! this replica commits wakes them at once, before its record is even published, and hands
//! them the stages it stored, so that they need not read them back; a record of a stage they
//! were told already wakes nobody.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use shop_events::{OrderId, Stage, Topic};
use shop_platform::kafka;
use shop_platform::Shutdown;
use tokio::sync::watch;

/// The topics whose records say an order reached a stage after it was created.
const STAGE_TOPICS: [Topic; 4] =
    [Topic::OrdersReadyToShip, Topic::OrdersShipping, Topic::OrdersShipped, Topic::OrdersDelivered];

/// How long to wait before trying again when the broker cannot be read.
const RETRY: Duration = Duration::from_secs(1);

/// The live streams open on this replica, by order. Each order has one channel holding what
/// this replica knows of it; its streams hold receivers.
#[derive(Clone, Default)]
pub struct Followers {
    orders: Arc<Mutex<HashMap<OrderId, watch::Sender<News>>>>,
}

/// What a replica knows of an order since its streams began to follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct News {
    /// The furthest stage the order is known to have reached.
    furthest: Option<Stage>,
    /// The stages this replica's last commit for the order stored, and their time, if that
    /// commit is the latest news.
    written: Option<(&'static [Stage], i64)>,
    /// Anything may have changed unheard: streams read the stored history.
    unknown: bool,
}

/// What a stream that has sent some stages does with the news.
#[derive(Debug, PartialEq)]
pub struct Update {
    /// The next stages, as this replica stored them.
    pub stages: Vec<(Stage, i64)>,
    /// Whether more may be stored than that: the stream reads the history.
    pub look: bool,
}

impl News {
    /// What a stream that has sent the first `sent` stages of the journey does with it.
    pub fn for_stream(self, sent: usize) -> Update {
        let index = |stage: Stage| usize::from(stage.number()) - 1;
        let mut stages = Vec::new();
        if let Some((written, at)) = self.written {
            if let (Some(first), Some(last)) = (written.first(), written.last()) {
                if index(*first) <= sent && sent <= index(*last) {
                    stages.extend(written[sent - index(*first)..].iter().map(|stage| (*stage, at)));
                }
            }
        }
        let next = sent + stages.len();
        let look = self.unknown || self.furthest.is_some_and(|furthest| index(furthest) >= next);
        Update { stages, look }
    }
}

/// One stream's hold on its order's channel; let go when the stream ends.
pub struct Follow {
    followers: Followers,
    id: OrderId,
    changes: Option<watch::Receiver<News>>,
}

impl Followers {
    /// Follows `id`: news announced from now on is seen by `Follow::changed`.
    pub fn follow(&self, id: OrderId) -> Follow {
        let mut orders = self.orders.lock().expect("followers lock");
        let changes = orders.entry(id).or_insert_with(|| watch::channel(News::default()).0).subscribe();
        Follow { followers: self.clone(), id, changes: Some(changes) }
    }

    /// This replica committed `stages` of `id`, stored at `at`: its streams take them as told.
    pub fn committed(&self, id: OrderId, stages: &'static [Stage], at: i64) {
        self.announce(id, |news| {
            news.furthest = news.furthest.max(stages.last().copied());
            news.written = Some((stages, at));
            true
        });
    }

    /// A record says `id` reached `stage`: its streams look, unless they were told already.
    fn heard(&self, id: OrderId, stage: Stage) {
        self.announce(id, |news| {
            if news.furthest.is_some_and(|furthest| furthest >= stage) {
                return false;
            }
            news.furthest = Some(stage);
            news.written = None;
            true
        });
    }

    fn announce(&self, id: OrderId, modify: impl FnOnce(&mut News) -> bool) {
        if let Some(sender) = self.orders.lock().expect("followers lock").get(&id) {
            sender.send_if_modified(modify);
        }
    }

    /// Anything may have changed (this replica started hearing the stage events only now).
    fn all_changed(&self) {
        for sender in self.orders.lock().expect("followers lock").values() {
            sender.send_modify(|news| news.unknown = true);
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
                        let id = record.key().and_then(|key| std::str::from_utf8(key).ok()).and_then(|key| key.parse().ok());
                        let stage = Stage::ALL.into_iter().find(|stage| stage.topic().name() == record.topic());
                        match (id, stage) {
                            (Some(id), Some(stage)) => self.heard(id, stage),
                            _ => tracing::debug!(topic = record.topic(), "A stage record without an order key"),
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
    /// Waits for news of the order since the last call (or since `follow`), and returns it.
    pub async fn changed(&mut self) -> News {
        let changes = self.changes.as_mut().expect("held until drop");
        if changes.changed().await.is_err() {
            // The sender is gone only if the map lost it, which `Drop` alone does.
            std::future::pending::<()>().await;
        }
        *changes.borrow_and_update()
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

    const PAID: &[Stage] = &[Stage::PaymentMade, Stage::ReadyToShip];

    #[tokio::test]
    async fn news_wakes_only_its_orders_streams_and_the_last_stream_lets_go() {
        let followers = Followers::default();
        let (a, b) = (OrderId::new(), OrderId::new());
        let mut first = followers.follow(a);
        let mut second = followers.follow(a);
        let mut other = followers.follow(b);
        followers.committed(a, PAID, 7);
        let told = News { furthest: Some(Stage::ReadyToShip), written: Some((PAID, 7)), unknown: false };
        assert_eq!(first.changed().await, told);
        assert_eq!(second.changed().await, told);
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
        followers.committed(a, PAID, 8);
        followers.heard(a, Stage::Shipping);
        assert!(followers.orders.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_record_of_a_stage_committed_here_wakes_nobody_and_a_later_one_does() {
        let followers = Followers::default();
        let a = OrderId::new();
        let mut stream = followers.follow(a);
        followers.committed(a, PAID, 7);
        stream.changed().await;
        followers.heard(a, Stage::PaymentMade);
        followers.heard(a, Stage::ReadyToShip);
        assert!(tokio::time::timeout(Duration::from_millis(20), stream.changed()).await.is_err(), "nothing new");
        followers.heard(a, Stage::Shipping);
        let news = stream.changed().await;
        assert_eq!(news, News { furthest: Some(Stage::Shipping), written: None, unknown: false });
        assert_eq!(news.for_stream(4), Update { stages: vec![], look: true }, "the other replica's stage is read");
    }

    #[test]
    fn a_stream_takes_what_this_replica_wrote_from_where_it_is() {
        let news = News { furthest: Some(Stage::ReadyToShip), written: Some((PAID, 7)), unknown: false };
        let both = vec![(Stage::PaymentMade, 7), (Stage::ReadyToShip, 7)];
        assert_eq!(news.for_stream(2), Update { stages: both, look: false });
        assert_eq!(news.for_stream(3), Update { stages: vec![(Stage::ReadyToShip, 7)], look: false });
        assert_eq!(news.for_stream(4), Update { stages: vec![], look: false }, "sent already");
        // A stream behind what was written (it missed a stage) reads the history.
        assert_eq!(news.for_stream(1), Update { stages: vec![], look: true });
    }

    #[test]
    fn a_stream_looks_when_more_is_known_than_was_written_here_or_anything_may_have_changed() {
        // The other replica's later stage was heard before this replica's commit was announced.
        let news = News { furthest: Some(Stage::Shipping), written: Some((PAID, 7)), unknown: false };
        let both = vec![(Stage::PaymentMade, 7), (Stage::ReadyToShip, 7)];
        assert_eq!(news.for_stream(2), Update { stages: both, look: true });
        let news = News { unknown: true, ..News::default() };
        assert_eq!(news.for_stream(2), Update { stages: vec![], look: true });
    }
}
