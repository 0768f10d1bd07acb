//! The synchronous call order makes to payment when an order is created, with order's own
//! service credential (payment opens payments for order only). Calls take the payment
//! replicas in turn; payment creation is idempotent per order, so retrying on another replica
//! is safe. What payment answers is logged; the customer is told only that the payment could
//! not be opened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shop_events::{api, Customer, Money, OrderId, PaymentId};
use shop_platform::auth::ServiceCredential;

#[derive(Clone)]
pub struct PaymentClient {
    http: reqwest::Client,
    base_urls: Vec<String>,
    credential: Arc<ServiceCredential>,
    /// How many calls have started: each starts at the next replica.
    calls: Arc<AtomicUsize>,
}

/// Why no payment could be opened. The customer learns only that it could not be; the
/// detail is for the log.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("cannot sign order's service token: {0}")]
    Credential(String),
    #[error("payment service refused the payment ({status}): {answer}")]
    Refused { status: reqwest::StatusCode, answer: String },
    #[error("payment service answered nonsense: {0}")]
    Nonsense(String),
    /// Every replica was unreachable or failed; the last one's problem.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenedPayment {
    pub payment_id: PaymentId,
    pub payment_url: String,
}

impl PaymentClient {
    pub fn new(base_urls: Vec<String>, credential: ServiceCredential) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
            .build()
            .expect("an HTTP client builds");
        let base_urls = base_urls
            .into_iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Self { http, base_urls, credential: Arc::new(credential), calls: Arc::default() }
    }

    /// Opens (or finds) the payment of `order_id`: asks the replica after the one the last
    /// call started with, and the others in turn while one is unreachable or fails.
    pub async fn open_payment(
        &self,
        order_id: OrderId,
        amount: Money,
        customer: &Customer,
    ) -> Result<OpenedPayment, PaymentError> {
        let body = api::OpenPayment { order_id, amount, customer: customer.clone() };
        let authorization = self.credential.authorization().map_err(|e| PaymentError::Credential(e.to_string()))?;
        let mut last_problem = "no payment service configured".to_owned();
        // Payment's span of the request comes under the order's request span.
        let traceparent = shop_platform::trace::current();
        let first = self.calls.fetch_add(1, Ordering::Relaxed);
        let count = self.base_urls.len();
        for base in (0..count).map(|i| &self.base_urls[(first + i) % count]) {
            let mut request =
                self.http.post(format!("{base}/payments")).header(reqwest::header::AUTHORIZATION, &authorization);
            if let Some(traceparent) = &traceparent {
                request = request.header(shop_platform::trace::TRACEPARENT, traceparent);
            }
            let sent = request.json(&body).send().await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(%base, %error, "Payment replica unreachable, trying the next");
                    last_problem = format!("payment service unreachable: {error}");
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                return response.json::<OpenedPayment>().await.map_err(|e| PaymentError::Nonsense(e.to_string()));
            }
            let answer = response.text().await.unwrap_or_default();
            if status.is_client_error() {
                return Err(PaymentError::Refused { status, answer });
            }
            last_problem = format!("payment service failed ({status}): {answer}");
        }
        Err(PaymentError::Unavailable(last_problem))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use axum::http::StatusCode;
    use axum::Json;
    use shop_platform::auth::{SigningKey, TestKeys};

    use super::*;

    /// A payment replica answering every `POST /payments` with a new payment; its count of calls.
    async fn replica() -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let router = axum::Router::new().route(
            "/payments",
            axum::routing::post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let id = PaymentId::new();
                async move {
                    (
                        StatusCode::CREATED,
                        Json(serde_json::json!({"paymentId": id, "paymentUrl": "http://pay.example/"})),
                    )
                }
            }),
        );
        let listener = shop_platform::http::bind("127.0.0.1", 0).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (base, calls)
    }

    /// A base URL where nothing listens.
    async fn unreachable() -> String {
        let listener = shop_platform::http::bind("127.0.0.1", 0).await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn client(keys: &TestKeys, base_urls: Vec<String>) -> PaymentClient {
        let key = SigningKey::load(keys.secrets(), shop_events::service::ORDER).unwrap();
        PaymentClient::new(base_urls, ServiceCredential::new(key, shop_events::service::PAYMENT))
    }

    async fn open(client: &PaymentClient) -> Result<OpenedPayment, PaymentError> {
        let customer = Customer::parse("Ada Lovelace", "ada@example.com", "+44 20 7946 0000").unwrap();
        client.open_payment(OrderId::new(), Money::from_cents(100).unwrap(), &customer).await
    }

    #[tokio::test]
    async fn calls_take_the_replicas_in_turn() {
        let keys = TestKeys::new();
        let ((a, to_a), (b, to_b)) = (replica().await, replica().await);
        let client = client(&keys, vec![a, b]);
        for _ in 0..4 {
            open(&client).await.unwrap();
        }
        assert_eq!((to_a.load(Ordering::SeqCst), to_b.load(Ordering::SeqCst)), (2, 2));
    }

    #[tokio::test]
    async fn a_replica_that_cannot_be_reached_is_passed_over() {
        let keys = TestKeys::new();
        let (a, to_a) = replica().await;
        let client = client(&keys, vec![unreachable().await, a]);
        for _ in 0..3 {
            open(&client).await.unwrap();
        }
        assert_eq!(to_a.load(Ordering::SeqCst), 3, "every call ends at the replica that answers");
    }
}
