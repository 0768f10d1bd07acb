//! One customer slot, over and over, each journey a new customer with a token of their own:
//! create an order, follow it (its event stream, opened on the other order replica than the
//! one that took the order, as a load balancer may; or polling `GET /orders/{id}` every
//! `--poll-interval`, spreading calls over the replicas), pay, wait until it ships, act as the
//! courier (shipped, then delivered), wait for each stage. Every call is timed on the client;
//! the journey's orders are kept for the hop harvest.

use std::time::{Duration, Instant};

use eventsource_stream::{EventStream, Eventsource};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};
use shop_events::Stage;
use shop_order::OrderStatus;

use crate::args::Follow;
use crate::latency::Latencies;
use crate::schedule::Schedule;
use crate::system::Endpoints;

/// Names of the client-side latencies, in report order.
pub const CREATE: &str = "POST /orders";
pub const PAY: &str = "POST /payments/{id}/pay";
pub const SHIPPED: &str = "POST /deliveries/{id}/shipped";
pub const DELIVERED: &str = "POST /deliveries/{id}/delivered";
pub const POLL: &str = "GET /orders/{id}";
/// Until the stream's head is read: it is open.
pub const STREAM: &str = "GET /orders/{id}/events (opened)";
/// Until `OrderStatus::ReadyToShip` is seen (a test pins the name).
pub const PAY_TO_READY: &str = "pay sent → readyToShip seen";
/// Until `OrderStatus::Delivered` is seen (a test pins the name).
pub const JOURNEY: &str = "whole journey (create → delivered seen)";
pub const CLIENT_METRICS: [&str; 8] = [CREATE, STREAM, PAY, SHIPPED, DELIVERED, POLL, PAY_TO_READY, JOURNEY];

const FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// An order that went all the way, for the hop harvest.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub order_id: String,
    pub payment_id: String,
    /// The customer's `Authorization` value, to read what they were sent.
    pub customer: String,
}

/// What one customer did.
#[derive(Default)]
pub struct Outcome {
    pub latencies: Latencies,
    /// When each journey (measured or not) completed: for the throughput of the window.
    pub completions: Vec<Instant>,
    /// Journeys that started in the measured window and completed.
    pub measured: Vec<Delivered>,
    pub failures: Vec<String>,
    pub polls: u64,
    /// Event streams opened (one per journey when following streams).
    pub streams: u64,
}

pub struct Customer {
    pub number: usize,
    pub http: reqwest::Client,
    pub endpoints: Endpoints,
    pub follow: Follow,
    pub poll_interval: Duration,
    pub journey_timeout: Duration,
}

impl Customer {
    /// Runs journeys until the schedule says stop.
    pub async fn run(self, schedule: Schedule) -> Outcome {
        let mut outcome = Outcome::default();
        let mut turn = self.number;
        while let Some(ticket) = schedule.next_journey().await {
            turn += 1;
            let mut journey = Journey { customer: &self, turn, timings: Vec::new(), polls: 0, stream: None };
            let result = tokio::time::timeout(self.journey_timeout, journey.run()).await;
            outcome.polls += journey.polls;
            outcome.streams += u64::from(journey.stream.is_some());
            schedule.finished(ticket);
            let failed = !matches!(result, Ok(Ok(_)));
            match result {
                Ok(Ok(delivered)) => {
                    outcome.completions.push(Instant::now());
                    if ticket.measured {
                        for (metric, latency) in journey.timings {
                            outcome.latencies.record(metric, latency);
                        }
                        outcome.measured.push(delivered);
                    }
                }
                Ok(Err(error)) => outcome.failures.push(format!("customer {}: {error:#}", self.number)),
                Err(_) => outcome
                    .failures
                    .push(format!("customer {}: journey not done within {:?}", self.number, self.journey_timeout)),
            }
            if failed {
                // A broken system fails fast; do not hammer it for the rest of the window.
                tokio::time::sleep(FAILURE_PAUSE).await;
            }
        }
        outcome
    }
}

struct Journey<'a> {
    customer: &'a Customer,
    /// Which replica to call: customers and turns spread over them.
    turn: usize,
    /// Each call's time, recorded in the customer's histograms if the journey is measured:
    /// a journey's own histograms would cost an allocation and a merge each.
    timings: Vec<(&'static str, Duration)>,
    polls: u64,
    /// The order's event stream, when following it, and the furthest stage it told.
    stream: Option<(Stages, Option<Stage>)>,
}

type Stages = EventStream<BoxStream<'static, reqwest::Result<bytes::Bytes>>>;

impl Journey<'_> {
    async fn run(&mut self) -> anyhow::Result<Delivered> {
        let started = Instant::now();
        let endpoints = &self.customer.endpoints;
        let order_url = pick(&endpoints.order, self.turn);
        let email = format!("customer-{}-{}@bench.example.com", self.customer.number, self.turn);
        let token = endpoints.tokens.customer(&email)?;
        let body = json!({
            "customer": {"name": "Grace Hopper", "phone": "+1 555 0100"},
            "items": [{"sku": "TEA-01", "quantity": 1}]
        });
        let http = &self.customer.http;
        let create = http.post(format!("{order_url}/orders")).header("authorization", &token).json(&body);
        let created = self.call(CREATE, create, 201).await?;
        let order_id = text(&created, "orderId")?;
        let payment_id = text(&created, "paymentId")?;
        if self.customer.follow == Follow::Stream {
            let url = format!("{}/orders/{order_id}/events", pick(&endpoints.order, self.turn + 1));
            let sent = Instant::now();
            let response = http.get(url).header("authorization", &token).send().await?;
            anyhow::ensure!(response.status() == 200, "{STREAM} answered {}", response.status());
            self.timings.push((STREAM, sent.elapsed()));
            self.stream = Some((response.bytes_stream().boxed().eventsource(), None));
        }

        let pay_url = format!("{}/payments/{payment_id}/pay", pick(&endpoints.payment, self.turn));
        let pay_sent = Instant::now();
        self.call(PAY, http.post(pay_url).header("authorization", &token), 200).await?;
        self.wait_for(&order_id, OrderStatus::ReadyToShip, &token).await?;
        self.timings.push((PAY_TO_READY, pay_sent.elapsed()));
        self.wait_for(&order_id, OrderStatus::Shipping, &token).await?;

        // The courier's actions, delivery's `POST /deliveries/{id}/<action>`.
        for (action, metric, status) in
            [("shipped", SHIPPED, OrderStatus::Shipped), ("delivered", DELIVERED, OrderStatus::Delivered)]
        {
            let url = format!("{}/deliveries/{order_id}/{action}", endpoints.delivery);
            self.call(metric, http.post(url).header("authorization", endpoints.tokens.courier()), 202).await?;
            self.wait_for(&order_id, status, &token).await?;
        }
        self.timings.push((JOURNEY, started.elapsed()));
        Ok(Delivered { order_id, payment_id, customer: token })
    }

    /// Sends a request, times it, and insists on the `expected` status.
    async fn call(
        &mut self,
        metric: &'static str,
        request: reqwest::RequestBuilder,
        expected: u16,
    ) -> anyhow::Result<Value> {
        let sent = Instant::now();
        let response = request.send().await.map_err(|e| anyhow::anyhow!("{metric}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| anyhow::anyhow!("{metric}: {e}"))?;
        self.timings.push((metric, sent.elapsed()));
        anyhow::ensure!(status == expected, "{metric} answered {status}, not {expected}: {body}");
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Waits until the order is at `status` or beyond: reads its stream, or polls it as its
    /// customer (`token`).
    async fn wait_for(&mut self, order_id: &str, status: OrderStatus, token: &str) -> anyhow::Result<()> {
        if let Some((stream, told)) = &mut self.stream {
            let wanted = status.stage();
            while told.is_none_or(|told| told < wanted) {
                let event =
                    stream.next().await.ok_or_else(|| anyhow::anyhow!("the stream ended before {wanted:?}"))??;
                let data: Value = serde_json::from_str(&event.data)?;
                *told = Some(serde_json::from_value(data["stage"].clone())?);
            }
            return Ok(());
        }
        let wanted = rank(status);
        loop {
            tokio::time::sleep(self.customer.poll_interval).await;
            self.turn += 1;
            let url = format!("{}/orders/{order_id}", pick(&self.customer.endpoints.order, self.turn));
            self.polls += 1;
            let order = self.call(POLL, self.customer.http.get(url).header("authorization", token), 200).await?;
            let now = order["status"].as_str().and_then(OrderStatus::parse).map(rank);
            if now.is_some_and(|now| now >= wanted) {
                return Ok(());
            }
        }
    }
}

/// How far along the journey a status is: `OrderStatus::ALL` is in journey order.
fn rank(status: OrderStatus) -> usize {
    OrderStatus::ALL.iter().position(|s| *s == status).expect("ALL has every status")
}

fn pick(urls: &[String], turn: usize) -> &str {
    &urls[turn % urls.len()]
}

fn text(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no {field} in {value}"))
}

#[cfg(test)]
mod tests {
    use shop_events::Stage;

    use super::*;

    #[test]
    fn statuses_rank_in_journey_order() {
        // In the order their first stage comes in the journey, as order's history adds them.
        let first_stage = |status: OrderStatus| Stage::ALL.iter().position(|s| *s == status.stages_on_entry()[0]);
        for pair in OrderStatus::ALL.windows(2) {
            assert!(rank(pair[0]) < rank(pair[1]), "{pair:?}");
            assert!(first_stage(pair[0]) < first_stage(pair[1]), "{pair:?}");
        }
        assert_eq!(OrderStatus::parse("paid"), None, "an unknown status ranks nowhere");
    }

    #[test]
    fn the_client_metrics_name_the_statuses_they_wait_for() {
        assert_eq!(PAY_TO_READY, format!("pay sent → {} seen", OrderStatus::ReadyToShip.as_str()));
        assert_eq!(JOURNEY, format!("whole journey (create → {} seen)", OrderStatus::Delivered.as_str()));
        let distinct: std::collections::BTreeSet<_> = CLIENT_METRICS.iter().collect();
        assert_eq!(distinct.len(), CLIENT_METRICS.len());
    }
}
