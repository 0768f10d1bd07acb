//! The two ways a customer is told: a push to the phone (HTTP to the mobile service) and an
//! email (SMTP to the mailbox). Each send carries an id derived from the event and the
//! channel, so a resend after a crash lands once at the receiver.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shop_events::{Customer, OrderId};
use shop_platform::consumer::HandleError;

use crate::messages::Notice;

pub struct Delivery<'a> {
    pub id: uuid::Uuid,
    pub order_id: OrderId,
    pub customer: &'a Customer,
    pub notice: &'a Notice,
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn send(&self, delivery: &Delivery<'_>) -> Result<(), HandleError>;
}

pub struct Push {
    http: reqwest::Client,
    url: String,
}

impl Push {
    pub fn new(mobile_url: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client builds");
        Self { http, url: format!("{}/api/push", mobile_url.trim_end_matches('/')) }
    }
}

#[async_trait]
impl Channel for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    async fn send(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let body = serde_json::json!({
            "id": delivery.id,
            "orderId": delivery.order_id,
            "stage": delivery.notice.stage,
            "title": delivery.notice.title,
            "body": delivery.notice.body,
            "sentAt": chrono::Utc::now().to_rfc3339(),
        });
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| HandleError::Transient(format!("mobile unreachable: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
            let text = response.text().await.unwrap_or_default();
            Err(HandleError::Permanent(format!("mobile refused the push ({status}): {text}")))
        } else {
            Err(HandleError::Transient(format!("mobile failed ({status})")))
        }
    }
}

pub struct Mail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mail {
    pub fn new(host: &str, port: u16, from: &str) -> anyhow::Result<Self> {
        // A mailbox on the private network: plain SMTP, no TLS, no auth.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM {from:?} is not an address: {e}"))?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Channel for Mail {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, delivery: &Delivery<'_>) -> Result<(), HandleError> {
        let to = format!("{} <{}>", delivery.customer.name.replace(['<', '>', '"', ','], ""), delivery.customer.email)
            .parse()
            .map_err(|e| HandleError::Permanent(format!("customer email cannot be addressed: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&delivery.notice.title)
            .message_id(Some(format!("<{}@shop.notification>", delivery.id)))
            .raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str(shop_email_header()),
                delivery.order_id.to_string(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(delivery.notice.body.clone())
            .map_err(|e| HandleError::Permanent(format!("cannot build the mail: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(HandleError::Permanent(format!("mail refused: {error}"))),
            Err(error) => Err(HandleError::Transient(format!("mail not sent: {error}"))),
        }
    }
}

/// The header the mailbox files mails by order under.
const fn shop_email_header() -> &'static str {
    "X-Shop-Order-Id"
}
