//! The synchronous call order makes to payment when an order is created, with order's own
//! service credential (payment opens payments for order only). Payment creation is
//! idempotent per order, so retrying on another replica is safe. What payment answers is
//! logged; the customer is told only that the payment could not be opened.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shop_events::{Customer, Money, OrderId, PaymentId};
use shop_platform::auth::ServiceCredential;
use shop_platform::http::ApiError;

#[derive(Clone)]
pub struct PaymentClient {
    http: reqwest::Client,
    base_urls: Vec<String>,
    credential: Arc<ServiceCredential>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayment<'a> {
    order_id: OrderId,
    amount: Money,
    customer: &'a Customer,
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
            // Shorter than the server's wait for the next request on a kept connection, so a
            // pooled connection is never reused just as payment closes it.
            .pool_idle_timeout(Duration::from_secs(5))
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
    ) -> Result<OpenedPayment, ApiError> {
        let body = CreatePayment { order_id, amount, customer };
        let authorization = self.credential.authorization().map_err(|e| ApiError::internal(e.to_string()))?;
        let cannot = || ApiError::bad_gateway("the payment service cannot open the payment now; try again");
        let mut last_problem = "no payment service configured".to_owned();
        for base in &self.base_urls {
            let sent = self
                .http
                .post(format!("{base}/payments"))
                .header(reqwest::header::AUTHORIZATION, &authorization)
                .json(&body)
                .send()
                .await;
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
                return response
                    .json::<OpenedPayment>()
                    .await
                    .map_err(|e| cannot().with_detail(format!("payment service answered nonsense: {e}")));
            }
            let answer = response.text().await.unwrap_or_default();
            if status.is_client_error() {
                return Err(cannot().with_detail(format!("payment service refused the payment ({status}): {answer}")));
            }
            last_problem = format!("payment service failed ({status}): {answer}");
        }
        Err(cannot().with_detail(last_problem))
    }
}
