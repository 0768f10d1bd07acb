//! The delivery state machine. A delivery opens already `shipping` (delivery acknowledges
//! the order at once); the courier then marks it `shipped`, then `delivered`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum DeliveryStatus {
    Shipping,
    Shipped,
    Delivered,
}

/// What the courier can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CourierAction {
    MarkShipped,
    MarkDelivered,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a delivery that is {from} cannot be {wanted}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub wanted: &'static str,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [DeliveryStatus::Shipping, DeliveryStatus::Shipped, DeliveryStatus::Delivered];

    /// The status's name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn transition(self, action: CourierAction) -> Result<DeliveryStatus, IllegalTransition> {
        match (self, action) {
            (DeliveryStatus::Shipping, CourierAction::MarkShipped) => Ok(DeliveryStatus::Shipped),
            (DeliveryStatus::Shipped, CourierAction::MarkDelivered) => Ok(DeliveryStatus::Delivered),
            (from, action) => Err(IllegalTransition { from: from.as_str(), wanted: action.target().as_str() }),
        }
    }
}

impl CourierAction {
    pub const ALL: [CourierAction; 2] = [CourierAction::MarkShipped, CourierAction::MarkDelivered];

    pub fn target(self) -> DeliveryStatus {
        match self {
            CourierAction::MarkShipped => DeliveryStatus::Shipped,
            CourierAction::MarkDelivered => DeliveryStatus::Delivered,
        }
    }

    /// The one status this action is legal from, as the state machine says.
    pub fn legal_source(self) -> DeliveryStatus {
        DeliveryStatus::ALL
            .into_iter()
            .find(|status| status.transition(self).is_ok())
            .expect("every courier action is legal from exactly one status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CourierAction::*;
    use DeliveryStatus::*;

    #[test]
    fn each_status_is_named_as_serde_names_it_and_parses_back() {
        for status in DeliveryStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(Shipping.as_str(), "shipping");
    }

    #[test]
    fn the_courier_ships_then_delivers() {
        assert_eq!(Shipping.transition(MarkShipped), Ok(Shipped));
        assert_eq!(Shipped.transition(MarkDelivered), Ok(Delivered));
    }

    #[test]
    fn every_other_transition_is_refused() {
        let legal = [(Shipping, MarkShipped), (Shipped, MarkDelivered)];
        for from in DeliveryStatus::ALL {
            for action in CourierAction::ALL {
                let result = from.transition(action);
                assert_eq!(result.is_ok(), legal.contains(&(from, action)), "{from:?} + {action:?}");
                if let Err(error) = result {
                    assert_eq!(error.from, from.as_str());
                }
            }
        }
    }

    #[test]
    fn each_action_has_exactly_one_legal_source() {
        for action in CourierAction::ALL {
            let sources = DeliveryStatus::ALL.iter().filter(|s| s.transition(action).is_ok()).count();
            assert_eq!(sources, 1, "{action:?}");
        }
        assert_eq!(MarkShipped.legal_source(), Shipping);
        assert_eq!(MarkDelivered.legal_source(), Shipped);
    }

    /// The courier page enables each button from the status the state machine says.
    #[test]
    fn the_courier_page_offers_each_action_from_its_legal_source() {
        let script = include_str!("courier.js");
        for action in CourierAction::ALL {
            let (target, source) = (action.target().as_str(), action.legal_source().as_str());
            let line = script
                .lines()
                .find(|line| line.contains(&format!("action: '{target}'")))
                .unwrap_or_else(|| panic!("courier.js has no action {target}"));
            assert!(line.contains(&format!("from: '{source}'")), "{line}");
        }
    }
}
