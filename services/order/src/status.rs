//! The order state machine. Statuses move one way only; each move has exactly one trigger,
//! and everything else is an illegal transition the caller must refuse.

use serde::{Deserialize, Serialize};
use shop_events::{DeliveryId, Event, OrderDeliveryProgressed, OrderReadyToShip, Stage};

use crate::store::Order;

/// Where an order is: each status is reached once, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum OrderStatus {
    Created,
    ReadyToShip,
    Shipping,
    Shipped,
    Delivered,
}

/// What moves an order on: the events order consumes, with what the order keeps of them.
#[derive(Clone, Debug, PartialEq, Eq, strum::IntoStaticStr)]
pub enum OrderTrigger {
    PaymentMade,
    /// Delivery opened the parcel's delivery (`DeliveryShipping` on the wire).
    DeliveryOpened(DeliveryId),
    DeliveryShipped(DeliveryId),
    DeliveryDelivered(DeliveryId),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an order that is {from} cannot take {trigger}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub trigger: &'static str,
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

    pub fn transition(self, trigger: &OrderTrigger) -> Result<OrderStatus, IllegalTransition> {
        use OrderStatus::*;
        match (self, trigger) {
            (Created, OrderTrigger::PaymentMade) => Ok(ReadyToShip),
            (ReadyToShip, OrderTrigger::DeliveryOpened(_)) => Ok(Shipping),
            (Shipping, OrderTrigger::DeliveryShipped(_)) => Ok(Shipped),
            (Shipped, OrderTrigger::DeliveryDelivered(_)) => Ok(Delivered),
            (from, trigger) => Err(IllegalTransition { from: from.as_str(), trigger: trigger.into() }),
        }
    }

    /// The furthest stage the customer has reached once the order has this status.
    pub const fn stage(self) -> Stage {
        match self {
            OrderStatus::Created => Stage::PaymentCreated,
            OrderStatus::ReadyToShip => Stage::ReadyToShip,
            OrderStatus::Shipping => Stage::Shipping,
            OrderStatus::Shipped => Stage::Shipped,
            OrderStatus::Delivered => Stage::Delivered,
        }
    }

    /// The stages reaching this status adds to the history: those after the previous
    /// status's stage, up to and including this one's.
    pub fn stages_on_entry(self) -> &'static [Stage] {
        static STAGES: [Stage; 7] = Stage::ALL;
        let position = |stage: Stage| STAGES.iter().position(|s| *s == stage).expect("every stage is in ALL");
        let index = OrderStatus::ALL.iter().position(|s| *s == self).expect("every status is in ALL");
        let first = match index {
            0 => 0,
            _ => position(OrderStatus::ALL[index - 1].stage()) + 1,
        };
        &STAGES[first..=position(self.stage())]
    }
}

impl OrderTrigger {
    /// The trigger an event is, for the events order consumes.
    pub fn of(event: &Event) -> Option<OrderTrigger> {
        Some(match event {
            Event::PaymentMade(_) => OrderTrigger::PaymentMade,
            Event::DeliveryOpened(e) => OrderTrigger::DeliveryOpened(e.delivery_id.clone()),
            Event::DeliveryShipped(e) => OrderTrigger::DeliveryShipped(e.delivery_id.clone()),
            Event::DeliveryDelivered(e) => OrderTrigger::DeliveryDelivered(e.delivery_id.clone()),
            _ => return None,
        })
    }

    /// The one status this trigger moves an order on from, as the state machine says.
    pub fn legal_source(&self) -> OrderStatus {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.transition(self).is_ok())
            .expect("every trigger is legal from exactly one status")
    }

    /// The delivery the trigger is about, which the order keeps.
    pub fn delivery_id(&self) -> Option<&DeliveryId> {
        match self {
            OrderTrigger::PaymentMade => None,
            OrderTrigger::DeliveryOpened(id)
            | OrderTrigger::DeliveryShipped(id)
            | OrderTrigger::DeliveryDelivered(id) => Some(id),
        }
    }

    /// The event `order` raises taking this trigger: the stage event of the status it enters,
    /// so that no status is entered without its announcement.
    pub fn raised(&self, order: &Order) -> Event {
        let progressed =
            |id: &DeliveryId| OrderDeliveryProgressed { customer: order.customer.clone(), delivery_id: id.clone() };
        match self {
            OrderTrigger::PaymentMade => Event::OrderReadyToShip(OrderReadyToShip {
                customer: order.customer.clone(),
                items: order.items.clone(),
                total: order.total,
                payment_id: order.payment_id,
            }),
            OrderTrigger::DeliveryOpened(id) => Event::OrderShipping(progressed(id)),
            OrderTrigger::DeliveryShipped(id) => Event::OrderShipped(progressed(id)),
            OrderTrigger::DeliveryDelivered(id) => Event::OrderDelivered(progressed(id)),
        }
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

    fn triggers() -> [OrderTrigger; 4] {
        let id = DeliveryId::parse("DLV-0000000000D1").unwrap();
        [PaymentMade, DeliveryOpened(id.clone()), DeliveryShipped(id.clone()), DeliveryDelivered(id)]
    }

    #[test]
    fn the_journey_moves_through_every_status_in_order() {
        let mut status = Created;
        for (trigger, expected) in triggers().into_iter().zip([ReadyToShip, Shipping, Shipped, Delivered]) {
            status = status.transition(&trigger).unwrap();
            assert_eq!(status, expected);
        }
    }

    #[test]
    fn every_other_transition_is_refused() {
        let [paid, shipping, shipped, delivered] = triggers();
        let legal = [(Created, &paid), (ReadyToShip, &shipping), (Shipping, &shipped), (Shipped, &delivered)];
        for from in OrderStatus::ALL {
            for trigger in &triggers() {
                let result = from.transition(trigger);
                if legal.contains(&(from, trigger)) {
                    assert!(result.is_ok(), "{from:?} + {trigger:?} should be allowed");
                    assert_eq!(trigger.legal_source(), from, "the source of {trigger:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition { from: from.as_str(), trigger: trigger.into() }),
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
        assert_eq!(Created.stages_on_entry(), [Stage::Created, Stage::PaymentCreated]);
        assert_eq!(ReadyToShip.stages_on_entry(), [Stage::PaymentMade, Stage::ReadyToShip]);
        assert_eq!(Delivered.stages_on_entry(), [Stage::Delivered]);
    }

    fn order(status: OrderStatus) -> Order {
        Order {
            id: shop_events::OrderId::new(),
            owner: "ada@example.com".into(),
            status,
            customer: shop_events::Customer::parse("Ada Lovelace", "ada@example.com", "+44 20 7946 0000").unwrap(),
            items: vec![],
            total: shop_events::Money::from_cents(100).unwrap(),
            payment_id: shop_events::PaymentId::new(),
            payment_url: "http://localhost:8082/pay/x".into(),
            delivery_id: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn each_trigger_raises_the_stage_event_of_the_status_it_enters() {
        for trigger in triggers() {
            let entered = trigger.legal_source().transition(&trigger).unwrap();
            let order = order(entered);
            let event = trigger.raised(&order);
            assert_eq!(event.event_type().stage(), Some(entered.stage()), "{trigger:?}");
            assert_eq!(event.stage().map(|(_, customer)| customer), Some(&order.customer));
        }
    }

    #[test]
    fn the_events_order_consumes_are_its_triggers_and_no_others() {
        let id = DeliveryId::new();
        let progressed = shop_events::DeliveryProgressed { delivery_id: id.clone() };
        assert_eq!(OrderTrigger::of(&Event::DeliveryShipped(progressed)), Some(DeliveryShipped(id.clone())));
        assert_eq!(DeliveryShipped(id.clone()).delivery_id(), Some(&id));
        assert_eq!(PaymentMade.delivery_id(), None);
        let audit = Event::AuditRecorded(shop_events::AuditRecorded {
            action: "x.y".into(),
            message: "m".into(),
            instance: "i".into(),
        });
        assert_eq!(OrderTrigger::of(&audit), None);
    }

    #[test]
    fn statuses_read_back_from_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("paid"), None);
    }
}
