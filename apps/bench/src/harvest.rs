//! After the load: for every measured order, read what the services show of it (history,
//! payment, audit trail, pushes, mails), waiting a bounded time for the slower channels to
//! catch up, and turn it into hop latencies. Reading afterwards keeps these requests out
//! of the measured window.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use shop_events::Stage;

use crate::customer::Delivered;
use crate::hops::{self, Evidence};
use crate::latency::Latencies;
use crate::system::Endpoints;

/// Orders read at once.
const CONCURRENCY: usize = 8;
/// What a complete order shows: 10 audit records, a push and a mail per stage.
const AUDIT_RECORDS: usize = 10;
const NOTIFICATIONS: usize = Stage::ALL.len();

#[derive(Default)]
pub struct Harvest {
    pub latencies: Latencies,
    pub orders: usize,
    /// Orders still missing an audit record, a push or a mail when the wait ended.
    pub incomplete: usize,
    /// Hops whose effect was stamped before their cause (clocks disagree): recorded as 0.
    pub negative: u64,
    pub seconds: f64,
}

pub async fn collect(http: &reqwest::Client, endpoints: &Endpoints, orders: &[Delivered], within: Duration) -> Harvest {
    let started = Instant::now();
    let deadline = started + within;
    let all_hops = hops::all();
    let mut harvest = Harvest { orders: orders.len(), ..Harvest::default() };
    let mut evidence = futures::stream::iter(orders)
        .map(|order| gather(http, endpoints, order, deadline))
        .buffer_unordered(CONCURRENCY);
    while let Some((evidence, complete)) = evidence.next().await {
        if !complete {
            harvest.incomplete += 1;
        }
        for (name, millis) in evidence.hops(&all_hops) {
            if millis < 0 {
                harvest.negative += 1;
            }
            harvest.latencies.record_micros(name, millis.max(0) as u64 * 1000);
        }
    }
    harvest.seconds = started.elapsed().as_secs_f64();
    harvest
}

/// Reads one order until everything it caused is visible or the deadline passes.
async fn gather(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    order: &Delivered,
    deadline: Instant,
) -> (Evidence, bool) {
    let operator = endpoints.tokens.operator();
    let get = |url: String, token: &str| {
        let request = http.get(url).header("authorization", token);
        async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => response.json::<Value>().await.unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
    };
    let id = &order.order_id;
    let customer = order.customer.as_str();
    let order_view = get(format!("{}/orders/{id}", endpoints.order[0]), customer).await;
    let payment = get(format!("{}/payments/{}", endpoints.payment[0], order.payment_id), customer).await;
    let wanted = |endpoint: &Option<String>, n: usize| if endpoint.is_some() { n } else { 0 };
    let wanted = (
        wanted(&endpoints.logging, AUDIT_RECORDS),
        wanted(&endpoints.mobile, NOTIFICATIONS),
        wanted(&endpoints.email, NOTIFICATIONS),
    );
    let list = |endpoint: &Option<String>, path: String, token: &str| {
        let request = endpoint.as_ref().map(|base| get(format!("{base}{path}"), token));
        async move {
            match request {
                Some(request) => request.await,
                None => Value::Null,
            }
        }
    };
    loop {
        let audit = list(&endpoints.logging, format!("/logs?orderId={id}"), operator).await;
        let pushes = list(&endpoints.mobile, format!("/api/notifications?orderId={id}"), customer).await;
        let emails = list(&endpoints.email, format!("/api/emails?orderId={id}"), customer).await;
        let evidence = Evidence::from_json(&order_view, &payment, &audit, &pushes, &emails);
        let (a, p, e) = evidence.counts();
        let complete = a >= wanted.0 && p >= wanted.1 && e >= wanted.2;
        if complete || Instant::now() >= deadline {
            return (evidence, complete);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The hops in report order.
pub fn hop_names() -> Vec<String> {
    hops::all().into_iter().map(|hop| hop.name).collect()
}
