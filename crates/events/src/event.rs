//! Every event type, the topic it travels on, the stage it announces and its schema version.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::payloads::*;
use crate::{Customer, Stage, Topic};

/// The type of an event, as written in the envelope's `type` field.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
pub enum EventType {
    OrderCreated,
    PaymentCreated,
    PaymentMade,
    OrderReadyToShip,
    // Delivery opened the order's delivery; the courier takes it from there. Its wire name (and topic,
    // delivery-shipping) are the design's; a doc line here would change the schemas.
    #[serde(rename = "DeliveryShipping")]
    #[strum(serialize = "DeliveryShipping")]
    DeliveryOpened,
    OrderShipping,
    DeliveryShipped,
    OrderShipped,
    DeliveryDelivered,
    OrderDelivered,
    AuditRecorded,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::OrderCreated,
        EventType::PaymentCreated,
        EventType::PaymentMade,
        EventType::OrderReadyToShip,
        EventType::DeliveryOpened,
        EventType::OrderShipping,
        EventType::DeliveryShipped,
        EventType::OrderShipped,
        EventType::DeliveryDelivered,
        EventType::OrderDelivered,
        EventType::AuditRecorded,
    ];

    /// Each type travels on exactly one topic, and each topic carries exactly one type.
    pub const fn topic(self) -> Topic {
        match self {
            EventType::OrderCreated => Topic::OrdersCreated,
            EventType::PaymentCreated => Topic::PaymentsCreated,
            EventType::PaymentMade => Topic::PaymentsMade,
            EventType::OrderReadyToShip => Topic::OrdersReadyToShip,
            EventType::DeliveryOpened => Topic::DeliveryShipping,
            EventType::OrderShipping => Topic::OrdersShipping,
            EventType::DeliveryShipped => Topic::DeliveryShipped,
            EventType::OrderShipped => Topic::OrdersShipped,
            EventType::DeliveryDelivered => Topic::DeliveryDelivered,
            EventType::OrderDelivered => Topic::OrdersDelivered,
            EventType::AuditRecorded => Topic::LoggingEvents,
        }
    }

    /// The current schema version; a consumer refuses versions newer than it knows.
    pub const fn version(self) -> u16 {
        1
    }

    /// The stage an event of this type announces to the customer, if any.
    pub fn stage(self) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.event_type() == self)
    }

    /// The type's name, as serde spells it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An event with its typed payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    OrderCreated(OrderCreated),
    PaymentCreated(PaymentCreated),
    PaymentMade(PaymentMade),
    OrderReadyToShip(OrderReadyToShip),
    /// The delivery was opened (`DeliveryShipping` on the wire, topic `delivery-shipping`).
    DeliveryOpened(DeliveryProgressed),
    OrderShipping(OrderDeliveryProgressed),
    DeliveryShipped(DeliveryProgressed),
    OrderShipped(OrderDeliveryProgressed),
    DeliveryDelivered(DeliveryProgressed),
    OrderDelivered(OrderDeliveryProgressed),
    AuditRecorded(AuditRecorded),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::OrderCreated(_) => EventType::OrderCreated,
            Event::PaymentCreated(_) => EventType::PaymentCreated,
            Event::PaymentMade(_) => EventType::PaymentMade,
            Event::OrderReadyToShip(_) => EventType::OrderReadyToShip,
            Event::DeliveryOpened(_) => EventType::DeliveryOpened,
            Event::OrderShipping(_) => EventType::OrderShipping,
            Event::DeliveryShipped(_) => EventType::DeliveryShipped,
            Event::OrderShipped(_) => EventType::OrderShipped,
            Event::DeliveryDelivered(_) => EventType::DeliveryDelivered,
            Event::OrderDelivered(_) => EventType::OrderDelivered,
            Event::AuditRecorded(_) => EventType::AuditRecorded,
        }
    }

    pub fn topic(&self) -> Topic {
        self.event_type().topic()
    }

    /// The stage this event announces to the customer, and the customer to tell.
    pub fn stage(&self) -> Option<(Stage, &Customer)> {
        let stage = self.event_type().stage()?;
        let customer = match self {
            Event::OrderCreated(e) => &e.customer,
            Event::PaymentCreated(e) => &e.customer,
            Event::PaymentMade(e) => &e.customer,
            Event::OrderReadyToShip(e) => &e.customer,
            Event::OrderShipping(e) | Event::OrderShipped(e) | Event::OrderDelivered(e) => &e.customer,
            Event::DeliveryOpened(_)
            | Event::DeliveryShipped(_)
            | Event::DeliveryDelivered(_)
            | Event::AuditRecorded(_) => return None,
        };
        Some((stage, customer))
    }

    pub(crate) fn payload_json(&self) -> serde_json::Value {
        let value = match self {
            Event::OrderCreated(p) => serde_json::to_value(p),
            Event::PaymentCreated(p) => serde_json::to_value(p),
            Event::PaymentMade(p) => serde_json::to_value(p),
            Event::OrderReadyToShip(p) => serde_json::to_value(p),
            Event::DeliveryOpened(p) | Event::DeliveryShipped(p) | Event::DeliveryDelivered(p) => {
                serde_json::to_value(p)
            }
            Event::OrderShipping(p) | Event::OrderShipped(p) | Event::OrderDelivered(p) => serde_json::to_value(p),
            Event::AuditRecorded(p) => serde_json::to_value(p),
        };
        // Serializing plain data structs to a JSON value cannot fail.
        value.expect("event payloads always serialize")
    }

    pub(crate) fn from_payload(event_type: EventType, payload: serde_json::Value) -> Result<Event, serde_json::Error> {
        use serde_json::from_value as from;
        Ok(match event_type {
            EventType::OrderCreated => Event::OrderCreated(from(payload)?),
            EventType::PaymentCreated => Event::PaymentCreated(from(payload)?),
            EventType::PaymentMade => Event::PaymentMade(from(payload)?),
            EventType::OrderReadyToShip => Event::OrderReadyToShip(from(payload)?),
            EventType::DeliveryOpened => Event::DeliveryOpened(from(payload)?),
            EventType::OrderShipping => Event::OrderShipping(from(payload)?),
            EventType::DeliveryShipped => Event::DeliveryShipped(from(payload)?),
            EventType::OrderShipped => Event::OrderShipped(from(payload)?),
            EventType::DeliveryDelivered => Event::DeliveryDelivered(from(payload)?),
            EventType::OrderDelivered => Event::OrderDelivered(from(payload)?),
            EventType::AuditRecorded => Event::AuditRecorded(from(payload)?),
        })
    }
}
