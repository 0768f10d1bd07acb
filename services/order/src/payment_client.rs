//! The synchronous call order makes to payment when an order is created, with order's own
//! service credential (payment opens payments for order only). Payment creation is
//! idempotent per order, so retrying on another replica is safe. What payment answers is
//! logged; the customer is told only that the payment could not be opened.

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
        Self { http, base_urls, credential: Arc::new(credential) }
    }

    /// Opens (or finds) the payment of `order_id`, trying each payment replica in turn.
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
        for base in &self.base_urls {
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
