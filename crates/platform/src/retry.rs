//! How long to wait before trying again what failed because of a dependency (the database
//! busy, the broker or a receiver unreachable): one policy for every retry loop (a consumer
//! handling a record, setting one aside, the outbox relay publishing), backon's exponential
//! backoff, doubling from `first` with random jitter, at most 5 s between tries, for ever (a
//! record is never skipped because its dependency was down; shutdown ends the wait).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The longest wait before the jitter, which adds up to as much again.
const MAX_DELAY: Duration = Duration::from_millis(2500);

/// The waits between tries, starting at `first` (and its jitter).
pub fn delays(first: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new().with_min_delay(first).with_max_delay(MAX_DELAY).with_jitter().without_max_times().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_from_the_first_to_at_most_five_seconds_and_never_end() {
        let waits: Vec<Duration> = delays(Duration::from_millis(100)).take(40).collect();
        assert_eq!(waits.len(), 40, "retries go on");
        assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200), "{:?}", waits[0]);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(5)), "{waits:?}");
        assert!(waits[39] >= MAX_DELAY, "they reach the longest wait: {waits:?}");
    }
}
