//! The seven stages a customer follows, each announced by one stage event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{EventType, Topic};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Stage {
    Created,
    PaymentCreated,
    PaymentMade,
    ReadyToShip,
    Shipping,
    Shipped,
    Delivered,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Created,
        Stage::PaymentCreated,
        Stage::PaymentMade,
        Stage::ReadyToShip,
        Stage::Shipping,
        Stage::Shipped,
        Stage::Delivered,
    ];

    /// The one event type that announces this stage: the table every other statement of the
    /// stages (their topics, the notification groups' subscriptions, an event's stage) is
    /// derived from.
    pub const fn event_type(self) -> EventType {
        match self {
            Stage::Created => EventType::OrderCreated,
            Stage::PaymentCreated => EventType::PaymentCreated,
            Stage::PaymentMade => EventType::PaymentMade,
            Stage::ReadyToShip => EventType::OrderReadyToShip,
            Stage::Shipping => EventType::OrderShipping,
            Stage::Shipped => EventType::OrderShipped,
            Stage::Delivered => EventType::OrderDelivered,
        }
    }

    /// The topic the stage's event travels on.
    pub const fn topic(self) -> Topic {
        self.event_type().topic()
    }

    /// The stage's name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == text)
    }

    /// Position in the journey, 1 to 7.
    pub fn number(self) -> u8 {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8 + 1
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_and_event_type_is_named_as_serde_names_it() {
        for stage in Stage::ALL {
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.as_str());
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
        assert_eq!(Stage::ReadyToShip.as_str(), "readyToShip");
        for event_type in crate::EventType::ALL {
            assert_eq!(serde_json::to_value(event_type).unwrap(), event_type.name());
        }
    }

    #[test]
    fn each_stage_is_announced_by_its_own_event_type_on_its_own_topic_in_journey_order() {
        for stage in Stage::ALL {
            assert_eq!(stage.event_type().stage(), Some(stage));
        }
        let stage_types: Vec<EventType> = EventType::ALL.into_iter().filter(|t| t.stage().is_some()).collect();
        assert_eq!(stage_types, Stage::ALL.map(Stage::event_type), "every other type announces no stage");
        assert_eq!(Topic::STAGES, Stage::ALL.map(Stage::topic));
        assert_eq!(Stage::ReadyToShip.topic().name(), "orders-ready-to-ship");
    }
}
