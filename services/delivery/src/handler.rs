//! Delivery consumes `orders-ready-to-ship` (group `delivery-service`): it opens a delivery
//! and acknowledges it by publishing `delivery-shipping`, once per order.

use async_trait::async_trait;
use shop_events::{group, DeliveryProgressed, Event};
use shop_platform::consumer::{HandleError, Handler, Incoming};
use shop_platform::db::{now_millis, Pool};
use shop_platform::inbox;
use shop_platform::outbox::{Audit, Outbox};

use crate::status::DeliveryStatus;
use crate::store::{self, Delivery};

pub struct DeliveryHandler {
    pub pool: Pool,
    pub outbox: Outbox,
    pub instance: String,
}

#[async_trait]
impl Handler for DeliveryHandler {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        let Event::OrderReadyToShip(ready) = &incoming.event else {
            return Err(HandleError::Permanent(format!("delivery does not handle {}", incoming.event.event_type())));
        };
        let order_id = incoming.envelope.order_id;
        let mut tx = self.pool.begin().await?;
        if !inbox::first_delivery(&mut *tx, group::DELIVERY_SERVICE, incoming.envelope.id).await? {
            return Ok(());
        }
        let now = now_millis();
        let delivery = Delivery {
            order_id,
            id: format!("DLV-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]).to_uppercase(),
            status: DeliveryStatus::Shipping,
            customer: ready.customer.clone(),
            items: ready.items.clone(),
            created_at: now,
            updated_at: now,
        };
        if !store::open(&mut tx, &delivery).await? {
            tracing::warn!("The order already has a delivery; nothing to open");
            tx.commit().await?;
            return Ok(());
        }
        let event = Event::DeliveryShipping(DeliveryProgressed { delivery_id: delivery.id.clone() });
        let message = format!("Delivery {} opened, waiting for the courier", delivery.id);
        let audit = Audit { instance: &self.instance, action: "delivery.opened", message };
        self.outbox.enqueue(&mut tx, order_id, &event, audit, Some(&incoming.trace)).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(delivery_id = %delivery.id, "Delivery opened");
        Ok(())
    }
}
