//! Deliveries in storage.

use shop_events::{Customer, DeliveryId, LineItem, OrderId};
use shop_platform::db::{self, Pool, Transaction};
use sqlx::Row;

use crate::status::DeliveryStatus;

#[derive(Clone, Debug)]
pub struct Delivery {
    pub order_id: OrderId,
    pub id: DeliveryId,
    pub status: DeliveryStatus,
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a read returns, decoded by name (`from_row`).
const COLUMNS: &str =
    "order_id, id, status, customer_name, customer_email, customer_phone, items, created_at, updated_at";

fn from_row(row: sqlx::any::AnyRow) -> Result<Delivery, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored delivery has a bad {what}").into());
    let text = |column: &str| row.try_get::<String, _>(column);
    Ok(Delivery {
        order_id: OrderId::parse(&text("order_id")?).map_err(|_| bad("order id"))?,
        id: DeliveryId::parse(&text("id")?).map_err(|_| bad("id"))?,
        status: DeliveryStatus::parse(&text("status")?).ok_or_else(|| bad("status"))?,
        customer: db::customer(&row)?,
        items: serde_json::from_str(&text("items")?).map_err(|_| bad("items"))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Opens the delivery of an order unless it has one. Returns whether it was opened.
pub async fn open(tx: &mut Transaction<'_>, delivery: &Delivery) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO deliveries (order_id, id, status, customer_name, customer_email, customer_phone, items, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(delivery.order_id.to_string())
    .bind(delivery.id.as_str())
    .bind(delivery.status.as_str())
    .bind(delivery.customer.name())
    .bind(delivery.customer.email())
    .bind(delivery.customer.phone())
    .bind(serde_json::to_string(&delivery.items).expect("line items serialize"))
    .bind(delivery.created_at)
    .bind(delivery.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the delivery from `from` to `to` if it is still at `from`; returns it as it is then.
pub async fn update_status(
    tx: &mut Transaction<'_>,
    order_id: OrderId,
    from: DeliveryStatus,
    to: DeliveryStatus,
    at: i64,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE deliveries SET status = $1, updated_at = $2 WHERE order_id = $3 AND status = $4 RETURNING {COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(at)
    .bind(order_id.to_string())
    .bind(from.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .map(from_row)
    .transpose()
}

pub async fn find<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: OrderId,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM deliveries WHERE order_id = $1"))
        .bind(order_id.to_string())
        .fetch_optional(executor)
        .await?
        .map(from_row)
        .transpose()
}

/// The most recent deliveries, for the courier's list.
pub async fn recent(pool: &Pool, limit: i64) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM deliveries ORDER BY created_at DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}
