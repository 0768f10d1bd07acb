//! Latency distributions by name, in microseconds, on HdrHistogram: each customer keeps its
//! own set and the sets are merged at the end, so recording never contends on a lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Named histograms of microseconds.
#[derive(Default)]
pub struct Latencies {
    by_name: BTreeMap<String, Histogram<u64>>,
}

impl Latencies {
    pub fn record(&mut self, name: &str, latency: Duration) {
        self.record_micros(name, u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_micros(&mut self, name: &str, micros: u64) {
        // Looked up by `&str` first: `entry` would allocate the name on every sample.
        if !self.by_name.contains_key(name) {
            let histogram = Histogram::new(3).expect("3 significant figures is a valid precision");
            self.by_name.insert(name.to_owned(), histogram);
        }
        let histogram = self.by_name.get_mut(name).expect("inserted above");
        // Grows to fit; clamping (saturating_record) would not grow an auto-resizing histogram.
        if histogram.record(micros).is_err() {
            histogram.saturating_record(micros);
        }
    }

    pub fn merge(&mut self, other: Latencies) {
        for (name, histogram) in other.by_name {
            match self.by_name.get_mut(&name) {
                Some(mine) => mine.add(&histogram).expect("auto-resizing histograms always add"),
                None => {
                    self.by_name.insert(name, histogram);
                }
            }
        }
    }

    pub fn summary(&self, name: &str) -> Option<Summary> {
        self.by_name.get(name).filter(|h| !h.is_empty()).map(Summary::of)
    }
}

/// The figures the report shows of one distribution, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    fn of(histogram: &Histogram<u64>) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_customer_merged() {
        let mut first = Latencies::default();
        let mut second = Latencies::default();
        for ms in 1..=50 {
            first.record("pay", Duration::from_millis(ms));
        }
        for ms in 51..=100 {
            second.record("pay", Duration::from_millis(ms));
        }
        first.merge(second);
        let summary = first.summary("pay").unwrap();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        assert_eq!(first.summary("unknown"), None);
    }
}
