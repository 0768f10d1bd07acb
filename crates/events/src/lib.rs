//! The contract every Shop service shares: the 11 topics, the consumer groups, the event
//! envelope and the payload of every event type.
//!
//! Services never spell a topic or a group as a string literal; they name it here, so the
//! wire contract lives in one place and the published JSON Schemas (`schemas/`) are generated
//! from these very types.

pub mod api;
mod envelope;
mod event;
mod payloads;
pub mod schema;
pub mod service;
mod stage;
mod topic;
mod values;

pub use envelope::{DecodeError, Envelope, RawEnvelope, TRACEPARENT_HEADER};
pub use event::{Event, EventType};
pub use payloads::*;
pub use stage::Stage;
pub use topic::{dead_letter_topic, group, Topic};
pub use values::{
    Customer, CustomerError, DeliveryId, DeliveryIdError, LineItem, Money, MoneyError, OrderId, PaymentId,
};
