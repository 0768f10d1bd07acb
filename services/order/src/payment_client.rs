//! The synchronous call order makes to payment when an order is created. Payment creation
//! is idempotent per order, so retrying on another replica is safe.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shop_events::{Customer, Money, OrderId, PaymentId};
use shop_platform::http::ApiError;

#[derive(Clone)]
pub struct PaymentClient {
    http: reqwest::Client,
    base_urls: Vec<String>,
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

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl PaymentClient {
    pub fn new(base_urls: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("an HTTP client builds");
        let base_urls = base_urls
            .into_iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Self { http, base_urls }
    }

    /// Opens (or finds) the payment of `order_id`, trying each payment replica in turn.
    pub async fn open_payment(
        &self,
        order_id: OrderId,
        amount: Money,
        customer: &Customer,
    ) -> Result<OpenedPayment, ApiError> {
        let body = CreatePayment { order_id, amount, customer };
        let mut last_problem = "no payment service configured".to_owned();
        for base in &self.base_urls {
            let response = match self.http.post(format!("{base}/payments")).json(&body).send().await {
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
                    .map_err(|e| ApiError::bad_gateway(format!("payment service answered nonsense: {e}")));
            }
            let message = response.json::<ErrorBody>().await.map(|b| b.error).unwrap_or_default();
            if status.is_client_error() {
                return Err(ApiError::bad_gateway(format!(
                    "payment service refused the payment ({status}): {message}"
                )));
            }
            last_problem = format!("payment service failed ({status}): {message}");
        }
        Err(ApiError::bad_gateway(last_problem))
    }
}
