//! What order does with the events it consumes (group `order-service`): payment made and the
//! three courier events move the order on, record the stages, and publish the next event,
//! all in one transaction with the inbox entry that makes a redelivery a no-op.

use async_trait::async_trait;
use shop_events::{group, Event, OrderDeliveryProgressed, OrderReadyToShip};
use shop_platform::consumer::{HandleError, Incoming};
use shop_platform::db::{now_millis, Transaction};
use shop_platform::inbox;
use shop_platform::outbox::{Audit, Outbox};
use shop_platform::transactional::Apply;
use tokio::sync::watch;

use crate::status::{OrderStatus, OrderTrigger};
use crate::store;

pub struct OrderHandler {
    pub outbox: Outbox,
    pub instance: String,
    pub changes: watch::Sender<u64>,
}

#[async_trait]
impl Apply for OrderHandler {
    type Applied = ();

    async fn apply(&self, tx: &mut Transaction<'_>, incoming: &Incoming) -> Result<Option<()>, HandleError> {
        let (trigger, delivery_id) = match &incoming.event {
            Event::PaymentMade(_) => (OrderTrigger::PaymentMade, None),
            Event::DeliveryShipping(e) => (OrderTrigger::DeliveryShipping, Some(e.delivery_id.as_str())),
            Event::DeliveryShipped(e) => (OrderTrigger::DeliveryShipped, Some(e.delivery_id.as_str())),
            Event::DeliveryDelivered(e) => (OrderTrigger::DeliveryDelivered, Some(e.delivery_id.as_str())),
            other => return Err(HandleError::Permanent(format!("order does not handle {}", other.event_type()))),
        };
        let order_id = incoming.envelope.order_id;
        if !inbox::first_delivery(&mut **tx, group::ORDER_SERVICE, incoming.envelope.id).await? {
            return Ok(None);
        }
        // Each trigger moves an order on from one status: try that first, look only if it fails.
        let was = trigger.legal_source();
        let next = was.transition(trigger).map_err(|e| HandleError::Permanent(e.to_string()))?;
        let now = now_millis();
        let Some(order) = store::update_status(tx, order_id, was, next, delivery_id, now).await? else {
            let order = store::find(&mut **tx, order_id)
                .await?
                .ok_or_else(|| HandleError::Permanent(format!("no order {order_id}")))?;
            return Err(match order.status.transition(trigger) {
                Err(illegal) => HandleError::Permanent(illegal.to_string()),
                Ok(_) => HandleError::Transient("the order changed concurrently".into()),
            });
        };
        store::add_history(tx, order_id, next.stages_on_entry(), now).await?;
        let customer = order.customer.clone();
        let progressed = |id: &str| OrderDeliveryProgressed { customer: customer.clone(), delivery_id: id.to_owned() };
        let event = match (next, delivery_id) {
            (OrderStatus::ReadyToShip, _) => Event::OrderReadyToShip(OrderReadyToShip {
                customer: order.customer.clone(),
                items: order.items.clone(),
                total: order.total,
                payment_id: order.payment_id,
            }),
            (OrderStatus::Shipping, Some(id)) => Event::OrderShipping(progressed(id)),
            (OrderStatus::Shipped, Some(id)) => Event::OrderShipped(progressed(id)),
            (OrderStatus::Delivered, Some(id)) => Event::OrderDelivered(progressed(id)),
            (status, _) => return Err(HandleError::Permanent(format!("no event for status {}", status.as_str()))),
        };
        let action = format!("order.{}", next.as_str());
        let message = format!("Order is {} (was {})", next.as_str(), was.as_str());
        let audit = Audit { instance: &self.instance, action: &action, message };
        self.outbox.enqueue(tx, order_id, &event, audit, Some(&incoming.trace)).await?;
        tracing::info!(status = next.as_str(), %order_id, "Order moved on");
        Ok(Some(()))
    }

    fn committed(&self, applied: Vec<()>) {
        self.changes.send_modify(|n| *n += applied.len() as u64);
    }
}
