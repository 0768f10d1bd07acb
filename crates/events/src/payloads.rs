//! The payload of every event type. Stage events carry the customer, so whoever tells the
//! customer about a stage needs nothing but the event itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Customer, DeliveryId, LineItem, Money, PaymentId};

/// `orders-created`: stage 1, the order exists and awaits payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub payment_id: PaymentId,
    pub payment_url: String,
}

/// `payments-created`: stage 2, the gateway opened a payment the customer can pay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub payment_url: String,
    pub customer: Customer,
}

/// `payments-made`: stage 3, the customer paid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMade {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub customer: Customer,
}

/// `orders-ready-to-ship`: stage 4, paid and handed to delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderReadyToShip {
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub payment_id: PaymentId,
}

/// `orders-shipping`, `orders-shipped`, `orders-delivered`: stages 5 to 7, the parcel moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDeliveryProgressed {
    pub customer: Customer,
    pub delivery_id: DeliveryId,
}

/// `delivery-shipping`, `delivery-shipped`, `delivery-delivered`: what the courier did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryProgressed {
    pub delivery_id: DeliveryId,
}

/// `logging-events`: one line of the audit trail, written by the service that acted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecorded {
    /// What happened, as a dotted name: `order.created`, `payment.made`...
    pub action: String,
    /// The same in plain words.
    pub message: String,
    /// The replica that acted, e.g. `order-2`.
    pub instance: String,
}
