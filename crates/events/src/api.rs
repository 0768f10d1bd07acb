//! What the services send each other outside Kafka: one type or name for each, used by the
//! sender and the receiver alike, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::{Customer, Money, OrderId, Stage};

/// A push notification, as notification sends it to mobile (`POST /api/push`, or several in
/// one `POST /api/pushes`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Push {
    /// The same on every retry of one notice: mobile stores it once.
    pub id: uuid::Uuid,
    pub order_id: OrderId,
    /// The customer it is for: their email.
    pub to: String,
    pub stage: Stage,
    pub title: String,
    pub body: String,
    /// When notification sent it (RFC 3339).
    pub sent_at: String,
}

/// Several pushes in one request (`POST /api/pushes` on mobile), as notification sends the
/// notices of a batch of records; at most [`MAX_PUSHES`].
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pushes {
    pub pushes: Vec<TracedPush>,
}

/// At most this many pushes in one `POST /api/pushes`.
pub const MAX_PUSHES: usize = 100;

/// A push with the W3C trace context (`traceparent`) of the work that sent it, if traced:
/// mobile's storing of it is a span of that trace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracedPush {
    pub push: Push,
    pub traceparent: Option<String>,
}

/// What became of one push of a `POST /api/pushes`; the answer lists them in the order sent.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    pub id: uuid::Uuid,
    pub outcome: PushOutcome,
    /// Why it was refused.
    pub error: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PushOutcome {
    /// New: stored.
    Stored,
    /// It had arrived before.
    Duplicate,
    /// Invalid as it is (its own fault: not retried).
    Refused,
}

/// The mail header naming the order a mail is about, which the mailbox files it by.
pub const ORDER_MAIL_HEADER: &str = "X-Shop-Order-Id";

/// Opening the payment of an order, as order asks payment (`POST /payments`). Payment checks
/// the customer again (`Customer::parse`): a body is never trusted for being well-formed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenPayment {
    pub order_id: OrderId,
    pub amount: Money,
    pub customer: Customer,
}
