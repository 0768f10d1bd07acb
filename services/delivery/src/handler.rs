//! Delivery consumes `orders-ready-to-ship` (group `delivery-service`): it opens a delivery
//! and acknowledges it by publishing `delivery-shipping`, once per order.

use async_trait::async_trait;
use shop_events::{group, DeliveryId, DeliveryProgressed, Event};
use shop_platform::consumer::{HandleError, Incoming};
use shop_platform::db::{now_millis, Transaction};
use shop_platform::inbox;
use shop_platform::outbox::{Audit, Outbox};
use shop_platform::transactional::Apply;

use crate::status::DeliveryStatus;
use crate::store::{self, Delivery};

pub struct DeliveryHandler {
    pub outbox: Outbox,
    pub instance: String,
}

#[async_trait]
impl Apply for DeliveryHandler {
    type Applied = ();

    async fn apply(&self, tx: &mut Transaction<'_>, incoming: &Incoming) -> Result<Option<()>, HandleError> {
        let Event::OrderReadyToShip(ready) = &incoming.event else {
            return Err(HandleError::Permanent(
                "unexpected_event",
                format!("delivery does not handle {}", incoming.event.event_type()),
            ));
        };
        let order_id = incoming.envelope.order_id;
        if !inbox::first_delivery(&mut **tx, group::DELIVERY_SERVICE, incoming.envelope.id).await? {
            return Ok(None);
        }
        let now = now_millis();
        let delivery = Delivery {
            order_id,
            id: DeliveryId::new(),
            status: DeliveryStatus::Shipping,
            customer: ready.customer.clone(),
            items: ready.items.clone(),
            created_at: now,
            updated_at: now,
        };
        if !store::open(tx, &delivery).await? {
            tracing::warn!(%order_id, "The order already has a delivery; nothing to open");
            return Ok(Some(())); // the inbox entry is written
        }
        let event = Event::DeliveryOpened(DeliveryProgressed { delivery_id: delivery.id.clone() });
        let message = format!("Delivery {} opened, waiting for the courier", delivery.id);
        let audit = Audit { instance: &self.instance, action: "delivery.opened", message };
        self.outbox.enqueue(tx, order_id, &event, audit, &incoming.span).await?;
        tracing::debug!(delivery_id = %delivery.id, %order_id, "Delivery opened");
        Ok(Some(()))
    }
}
