//! What order does with the events it consumes (group `order-service`): payment made and the
//! three courier events move the order on, record the stages, and publish the next event,
//! all in one transaction with the inbox entry that makes a redelivery a no-op.

use async_trait::async_trait;
use shop_events::{group, OrderId, Stage};
use shop_platform::consumer::{HandleError, Incoming};
use shop_platform::db::{now_millis, Transaction};
use shop_platform::inbox;
use shop_platform::outbox::{Audit, Outbox};
use shop_platform::transactional::Apply;

use crate::live::Followers;
use crate::status::OrderTrigger;
use crate::store;

pub struct OrderHandler {
    pub outbox: Outbox,
    pub instance: String,
    pub followers: Followers,
}

/// The stages an applied record stored for an order, and their time: its live streams are told.
pub struct Moved {
    order_id: OrderId,
    stages: &'static [Stage],
    at: i64,
}

#[async_trait]
impl Apply for OrderHandler {
    type Applied = Moved;

    async fn apply(&self, tx: &mut Transaction<'_>, incoming: &Incoming) -> Result<Option<Moved>, HandleError> {
        let Some(trigger) = OrderTrigger::of(&incoming.event) else {
            return Err(HandleError::Permanent(
                "unexpected_event",
                format!("order does not handle {}", incoming.event.event_type()),
            ));
        };
        let order_id = incoming.envelope.order_id;
        if !inbox::first_delivery(&mut **tx, group::ORDER_SERVICE, incoming.envelope.id).await? {
            return Ok(None);
        }
        // Each trigger moves an order on from one status: try that first, look only if it fails.
        let was = trigger.legal_source();
        let next = was.transition(&trigger).map_err(|e| HandleError::Permanent("illegal_transition", e.to_string()))?;
        let now = now_millis();
        let Some(order) = store::update_status(tx, order_id, was, next, trigger.delivery_id(), now).await? else {
            let order = store::find(&mut **tx, order_id)
                .await?
                .ok_or_else(|| HandleError::Permanent("unknown_order", format!("no order {order_id}")))?;
            return Err(match order.status.transition(&trigger) {
                Err(illegal) => HandleError::Permanent("illegal_transition", illegal.to_string()),
                Ok(_) => HandleError::Transient("conflict", "the order changed concurrently".into()),
            });
        };
        let stages = next.stages_on_entry();
        store::add_history(tx, order_id, stages, now).await?;
        let event = trigger.raised(&order);
        let action = format!("order.{}", next.as_str());
        let message = format!("Order is {} (was {})", next.as_str(), was.as_str());
        let audit = Audit { instance: &self.instance, action: &action, message };
        self.outbox.enqueue(tx, order_id, &event, audit, &incoming.span).await?;
        tracing::debug!(status = next.as_str(), %order_id, "Order moved on");
        Ok(Some(Moved { order_id, stages, at: now }))
    }

    fn committed(&self, applied: Vec<Moved>) {
        for Moved { order_id, stages, at } in applied {
            self.followers.committed(order_id, stages, at);
        }
    }
}
