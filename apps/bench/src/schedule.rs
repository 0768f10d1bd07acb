//! When customers start journeys: freely during the warm-up, then during the measured window
//! (a fixed duration, or until a number of journeys), optionally paced to a fixed rate of
//! journey starts for all customers together, as an open-loop load would arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};

/// How long the measured window lasts.
#[derive(Clone, Copy, Debug)]
pub enum Length {
    Duration(Duration),
    Journeys(u64),
}

/// A journey a customer may start; measured when it started inside the window.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    pub measured: bool,
}

#[derive(Clone)]
pub struct Schedule {
    inner: Arc<Inner>,
}

struct Inner {
    warmup_end: Instant,
    length: Length,
    measured_started: AtomicU64,
    measured_finished: AtomicU64,
    /// The start time of the next journey, when paced.
    pace: Option<(Mutex<Instant>, Duration)>,
    closed: watch::Sender<bool>,
}

impl Schedule {
    pub fn new(warmup: Duration, length: Length, rate: Option<f64>) -> Schedule {
        let now = Instant::now();
        let pace = rate.filter(|r| *r > 0.0).map(|r| (Mutex::new(now), Duration::from_secs_f64(1.0 / r)));
        Schedule {
            inner: Arc::new(Inner {
                warmup_end: now + warmup,
                length,
                measured_started: AtomicU64::new(0),
                measured_finished: AtomicU64::new(0),
                pace,
                closed: watch::channel(false).0,
            }),
        }
    }

    pub fn warmup_end(&self) -> Instant {
        self.inner.warmup_end
    }

    /// Waits for this customer's turn to start a journey; None when no more should start.
    pub async fn next_journey(&self) -> Option<Ticket> {
        let inner = &self.inner;
        if *inner.closed.borrow() {
            return None;
        }
        if let Some((next, interval)) = &inner.pace {
            let slot = {
                let mut next = next.lock().await;
                let slot = (*next).max(Instant::now());
                *next = slot + *interval;
                slot
            };
            tokio::time::sleep_until(slot.into()).await;
        }
        let now = Instant::now();
        match inner.length {
            Length::Duration(window) => {
                if now >= inner.warmup_end + window {
                    inner.closed.send_replace(true);
                    return None;
                }
                Some(Ticket { measured: now >= inner.warmup_end })
            }
            Length::Journeys(count) => {
                if now < inner.warmup_end {
                    return Some(Ticket { measured: false });
                }
                (inner.measured_started.fetch_add(1, Ordering::SeqCst) < count).then_some(Ticket { measured: true })
            }
        }
    }

    /// A journey ended, completed or failed.
    pub fn finished(&self, ticket: Ticket) {
        let inner = &self.inner;
        if let (Length::Journeys(count), true) = (inner.length, ticket.measured) {
            if inner.measured_finished.fetch_add(1, Ordering::SeqCst) + 1 >= count {
                inner.closed.send_replace(true);
            }
        }
    }

    /// Resolves when the measured window is over.
    pub async fn window_closed(&self) {
        match self.inner.length {
            Length::Duration(window) => tokio::time::sleep_until((self.inner.warmup_end + window).into()).await,
            Length::Journeys(_) => {
                let mut closed = self.inner.closed.subscribe();
                let _ = closed.wait_for(|closed| *closed).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_count_of_journeys_closes_the_window_when_the_last_one_ends() {
        let schedule = Schedule::new(Duration::ZERO, Length::Journeys(2), None);
        let first = schedule.next_journey().await.unwrap();
        let second = schedule.next_journey().await.unwrap();
        assert!(first.measured && second.measured);
        assert!(schedule.next_journey().await.is_none(), "only two journeys are measured");
        schedule.finished(first);
        assert!(tokio::time::timeout(Duration::from_millis(50), schedule.window_closed()).await.is_err());
        schedule.finished(second);
        tokio::time::timeout(Duration::from_secs(1), schedule.window_closed()).await.expect("closed");
    }

    #[tokio::test]
    async fn journeys_started_during_the_warmup_are_not_measured() {
        let schedule = Schedule::new(Duration::from_secs(60), Length::Duration(Duration::from_secs(1)), None);
        assert!(!schedule.next_journey().await.unwrap().measured);
    }
}
