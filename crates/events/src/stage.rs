//! The seven stages a customer follows, each announced by one stage event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
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

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Created => "created",
            Stage::PaymentCreated => "paymentCreated",
            Stage::PaymentMade => "paymentMade",
            Stage::ReadyToShip => "readyToShip",
            Stage::Shipping => "shipping",
            Stage::Shipped => "shipped",
            Stage::Delivered => "delivered",
        }
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
