//! What the customer is told at each stage, in plain words. The first messages carry the
//! payment link.

use shop_events::{Event, OrderId, Stage};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub stage: Stage,
    pub title: String,
    pub body: String,
}

/// The notice for a stage event, or None for an event that is not a stage.
pub fn notice(order_id: OrderId, event: &Event) -> Option<Notice> {
    let (stage, customer) = event.stage()?;
    let first_name = customer.name().split_whitespace().next().unwrap_or(customer.name());
    let order = order_id.short();
    let (title, body) = match event {
        Event::OrderCreated(e) => (
            format!("Order {order} received"),
            format!(
                "Hi {first_name}, we received your order {order} of {} item(s), total {}. Pay here: {}",
                e.items.iter().map(|i| i.quantity).sum::<u32>(),
                e.total,
                e.payment_url
            ),
        ),
        Event::PaymentCreated(e) => (
            format!("Payment of {} ready", e.amount),
            format!("Your payment of {} for order {order} is ready. Pay securely here: {}", e.amount, e.payment_url),
        ),
        Event::PaymentMade(e) => (
            format!("Payment of {} received", e.amount),
            format!("Thank you {first_name}, we received your payment of {} for order {order}.", e.amount),
        ),
        Event::OrderReadyToShip(_) => (
            format!("Order {order} is ready to ship"),
            format!("Your order {order} is paid and packed, and is being handed to the courier."),
        ),
        Event::OrderShipping(e) => (
            format!("Order {order} is with the courier"),
            format!("The courier has your order {order} (delivery {}) and is preparing to ship it.", e.delivery_id),
        ),
        Event::OrderShipped(e) => (
            format!("Order {order} shipped"),
            format!("Your order {order} is on its way (delivery {}).", e.delivery_id),
        ),
        Event::OrderDelivered(e) => (
            format!("Order {order} delivered"),
            format!("Your order {order} was delivered (delivery {}). Enjoy, {first_name}!", e.delivery_id),
        ),
        _ => return None,
    };
    Some(Notice { stage, title, body })
}
