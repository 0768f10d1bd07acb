//! The order state machine. Statuses move one way only; each move has exactly one trigger,
//! and everything else is an illegal transition the caller must refuse.

use serde::{Deserialize, Serialize};
use shop_events::Stage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum OrderStatus {
    Created,
    ReadyToShip,
    Shipping,
    Shipped,
    Delivered,
}

/// What moves an order on: the events order consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderTrigger {
    PaymentMade,
    DeliveryShipping,
    DeliveryShipped,
    DeliveryDelivered,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an order that is {from} cannot take {trigger:?}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub trigger: OrderTrigger,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Created,
        OrderStatus::ReadyToShip,
        OrderStatus::Shipping,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];

    /// The status's name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn transition(self, trigger: OrderTrigger) -> Result<OrderStatus, IllegalTransition> {
        use OrderStatus::*;
        use OrderTrigger::*;
        match (self, trigger) {
            (Created, PaymentMade) => Ok(ReadyToShip),
            (ReadyToShip, DeliveryShipping) => Ok(Shipping),
            (Shipping, DeliveryShipped) => Ok(Shipped),
            (Shipped, DeliveryDelivered) => Ok(Delivered),
            (from, trigger) => Err(IllegalTransition { from: from.as_str(), trigger }),
        }
    }

    /// The customer-facing stages reaching this status adds to the history.
    pub fn stages_on_entry(self) -> &'static [Stage] {
        match self {
            OrderStatus::Created => &[Stage::Created, Stage::PaymentCreated],
            OrderStatus::ReadyToShip => &[Stage::PaymentMade, Stage::ReadyToShip],
            OrderStatus::Shipping => &[Stage::Shipping],
            OrderStatus::Shipped => &[Stage::Shipped],
            OrderStatus::Delivered => &[Stage::Delivered],
        }
    }
}

impl OrderTrigger {
    /// The one status this trigger moves an order on from, as the state machine says.
    pub fn legal_source(self) -> OrderStatus {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.transition(self).is_ok())
            .expect("every trigger is legal from exactly one status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;
    use OrderTrigger::*;

    #[test]
    fn each_status_is_named_as_serde_names_it_and_parses_back() {
        for status in OrderStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReadyToShip.as_str(), "readyToShip");
    }

    const TRIGGERS: [OrderTrigger; 4] = [PaymentMade, DeliveryShipping, DeliveryShipped, DeliveryDelivered];

    #[test]
    fn the_journey_moves_through_every_status_in_order() {
        let mut status = Created;
        for (trigger, expected) in TRIGGERS.into_iter().zip([ReadyToShip, Shipping, Shipped, Delivered]) {
            status = status.transition(trigger).unwrap();
            assert_eq!(status, expected);
        }
    }

    #[test]
    fn every_other_transition_is_refused() {
        let legal = [
            (Created, PaymentMade),
            (ReadyToShip, DeliveryShipping),
            (Shipping, DeliveryShipped),
            (Shipped, DeliveryDelivered),
        ];
        for from in OrderStatus::ALL {
            for trigger in TRIGGERS {
                let result = from.transition(trigger);
                if legal.contains(&(from, trigger)) {
                    assert!(result.is_ok(), "{from:?} + {trigger:?} should be allowed");
                    assert_eq!(trigger.legal_source(), from, "the source of {trigger:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition { from: from.as_str(), trigger }),
                        "{from:?} + {trigger:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_history_gets_all_seven_stages_once() {
        let stages: Vec<_> = OrderStatus::ALL.iter().flat_map(|s| s.stages_on_entry()).copied().collect();
        assert_eq!(stages, Stage::ALL);
    }

    #[test]
    fn statuses_read_back_from_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("paid"), None);
    }
}
