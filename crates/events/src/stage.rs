//! The seven stages a customer follows, each announced by one stage event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
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
}
