//! What the services send each other outside Kafka: one type or name for each, used by the
//! sender and the receiver alike, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::{Customer, Money, OrderId, Stage};

/// A push notification, as notification sends it to mobile (`POST /api/push`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
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

/// The mail header naming the order a mail is about, which the mailbox files it by.
pub const ORDER_MAIL_HEADER: &str = "X-Shop-Order-Id";

/// Opening the payment of an order, as order asks payment (`POST /payments`). Payment checks
/// the customer again (`Customer::parse`): a body is never trusted for being well-formed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenPayment {
    pub order_id: OrderId,
    pub amount: Money,
    pub customer: Customer,
}
