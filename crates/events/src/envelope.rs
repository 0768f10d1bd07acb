//! The one envelope every record carries: a unique id (the deduplication key of every
//! consumer), the type and schema version, when it occurred, the orderId (also the record
//! key) and the producing service. Trace context travels in the `traceparent` header.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventType, OrderId, Topic};

/// The Kafka header that carries W3C trace context from producer to consumer.
pub const TRACEPARENT_HEADER: &str = "traceparent";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<P> {
    /// Unique per event; a redelivered record has the same id.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Schema version of the payload.
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    pub order_id: OrderId,
    /// The service that produced the event: `order`, `payment`, `delivery`.
    pub source: String,
    pub payload: P,
}

/// The envelope as read off the wire, before its payload is decoded by type.
pub type RawEnvelope = Envelope<serde_json::Value>;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the record is not an event envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("{event_type} version {version} is newer than this service understands ({supported})")]
    UnsupportedVersion { event_type: EventType, version: u16, supported: u16 },
    #[error("the {event_type} payload is invalid: {source}")]
    Payload { event_type: EventType, source: serde_json::Error },
    #[error("{event_type} does not belong on topic {topic}")]
    WrongTopic { event_type: EventType, topic: String },
}

impl RawEnvelope {
    /// Wraps an event for `order_id`, produced now by `source`.
    pub fn wrap(order_id: OrderId, source: &str, event: &Event) -> RawEnvelope {
        let event_type = event.event_type();
        Envelope {
            id: Uuid::now_v7(),
            event_type,
            version: event_type.version(),
            occurred_at: Utc::now(),
            order_id,
            source: source.to_owned(),
            payload: event.payload_json(),
        }
    }

    /// Parses a record value received on `topic`.
    pub fn decode(topic: &str, bytes: &[u8]) -> Result<RawEnvelope, DecodeError> {
        let envelope: RawEnvelope = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        if Topic::from_name(topic).is_some_and(|t| t != envelope.event_type.topic()) {
            return Err(DecodeError::WrongTopic { event_type: envelope.event_type, topic: topic.to_owned() });
        }
        Ok(envelope)
    }

    /// The typed event inside.
    pub fn event(&self) -> Result<Event, DecodeError> {
        let supported = self.event_type.version();
        if self.version > supported {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type,
                version: self.version,
                supported,
            });
        }
        Event::from_payload(self.event_type, self.payload.clone())
            .map_err(|source| DecodeError::Payload { event_type: self.event_type, source })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }
}
