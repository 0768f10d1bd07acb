//! JSON Schemas of every event, generated from the types. The checked-in copies under
//! `crates/events/schemas/` are the published contract; a test keeps them equal to these.

use schemars::{schema_for, Schema};

use crate::payloads::*;
use crate::{Envelope, EventType};

/// The schema of the whole record (envelope and payload) of one event type.
pub fn for_event(event_type: EventType) -> Schema {
    let mut schema = match event_type {
        EventType::OrderCreated => schema_for!(Envelope<OrderCreated>),
        EventType::PaymentCreated => schema_for!(Envelope<PaymentCreated>),
        EventType::PaymentMade => schema_for!(Envelope<PaymentMade>),
        EventType::OrderReadyToShip => schema_for!(Envelope<OrderReadyToShip>),
        EventType::DeliveryOpened | EventType::DeliveryShipped | EventType::DeliveryDelivered => {
            schema_for!(Envelope<DeliveryProgressed>)
        }
        EventType::OrderShipping | EventType::OrderShipped | EventType::OrderDelivered => {
            schema_for!(Envelope<OrderDeliveryProgressed>)
        }
        EventType::AuditRecorded => schema_for!(Envelope<AuditRecorded>),
    };
    // One schema per type: pin the `type` field to this type only.
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.insert("type".into(), serde_json::json!({ "const": event_type.name() }));
    }
    schema.insert("title".into(), format!("{event_type} v{}", event_type.version()).into());
    schema
}

/// The file name of the published schema of one event type.
pub fn file_name(event_type: EventType) -> String {
    format!("{}.v{}.json", event_type.name(), event_type.version())
}
