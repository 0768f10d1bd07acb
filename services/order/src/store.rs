//! Orders, their history and their customers' idempotency keys in storage. Write
//! transactions start with their write so that SQLite takes the write lock up front (two
//! replicas share the file).

use shop_events::{Customer, DeliveryId, LineItem, Money, OrderId, PaymentId, Stage};
use shop_platform::db::{self, placeholders, Pool, Transaction};
use sqlx::Row;

use crate::status::OrderStatus;

#[derive(Clone, Debug)]
pub struct Order {
    pub id: OrderId,
    /// The customer who placed it: their email, lower case.
    pub owner: String,
    pub status: OrderStatus,
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub payment_id: PaymentId,
    pub payment_url: String,
    pub delivery_id: Option<DeliveryId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a read returns, decoded by name (`from_row`).
const COLUMNS: &str = "id, owner, status, customer_name, customer_email, customer_phone, items, total_cents, \
                       payment_id, payment_url, delivery_id, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Order, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored order has a bad {what}").into());
    let text = |column: &str| row.try_get::<String, _>(column);
    Ok(Order {
        id: OrderId::parse(&text("id")?).map_err(|_| bad("id"))?,
        owner: text("owner")?,
        status: OrderStatus::parse(&text("status")?).ok_or_else(|| bad("status"))?,
        customer: db::customer(row)?,
        items: serde_json::from_str(&text("items")?).map_err(|_| bad("items"))?,
        total: Money::from_cents(row.try_get("total_cents")?).map_err(|_| bad("total"))?,
        payment_id: PaymentId::parse(&text("payment_id")?).map_err(|_| bad("payment id"))?,
        payment_url: text("payment_url")?,
        delivery_id: row
            .try_get::<Option<String>, _>("delivery_id")?
            .map(|id| DeliveryId::parse(&id))
            .transpose()
            .map_err(|_| bad("delivery id"))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts the order unless one with its id exists. Returns whether it was inserted.
pub async fn insert(tx: &mut Transaction<'_>, order: &Order) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO orders (id, owner, status, customer_name, customer_email, customer_phone, items, total_cents, \
         payment_id, payment_url, delivery_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
    )
    .bind(order.id.to_string())
    .bind(&order.owner)
    .bind(order.status.as_str())
    .bind(order.customer.name())
    .bind(order.customer.email())
    .bind(order.customer.phone())
    .bind(serde_json::to_string(&order.items).expect("line items serialize"))
    .bind(order.total.cents())
    .bind(order.payment_id.to_string())
    .bind(&order.payment_url)
    .bind(order.delivery_id.as_ref().map(DeliveryId::to_string))
    .bind(order.created_at)
    .bind(order.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The order a customer's Idempotency-Key stands for and the request it was first used with:
/// `candidate` if the key is new (it is reserved for it now), the first one's otherwise.
pub async fn reserve_key(
    pool: &Pool,
    owner: &str,
    key: &str,
    candidate: OrderId,
    request_hash: &str,
    at: i64,
) -> Result<(OrderId, String), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_keys (owner, idempotency_key, order_id, request_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(owner)
    .bind(key)
    .bind(candidate.to_string())
    .bind(request_hash)
    .bind(at)
    .execute(pool)
    .await?;
    let row = sqlx::query("SELECT order_id, request_hash FROM order_keys WHERE owner = $1 AND idempotency_key = $2")
        .bind(owner)
        .bind(key)
        .fetch_one(pool)
        .await?;
    let id = OrderId::parse(&row.try_get::<String, _>("order_id")?)
        .map_err(|_| sqlx::Error::Decode("stored order key has a bad order id".into()))?;
    Ok((id, row.try_get("request_hash")?))
}

/// Moves the order from `from` to `to` if it is still at `from`; returns it as it is then.
pub async fn update_status(
    tx: &mut Transaction<'_>,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    delivery_id: Option<&DeliveryId>,
    at: i64,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE orders SET status = $1, updated_at = $2, delivery_id = COALESCE($3, delivery_id) \
         WHERE id = $4 AND status = $5 RETURNING {COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(at)
    .bind(delivery_id.map(DeliveryId::to_string))
    .bind(id.to_string())
    .bind(from.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| from_row(&row))
    .transpose()
}

/// Records that the order reached `stages` at `at`, in one statement.
pub async fn add_history(tx: &mut Transaction<'_>, id: OrderId, stages: &[Stage], at: i64) -> Result<(), sqlx::Error> {
    let rows: Vec<String> = placeholders(3, stages.len()).map(|stage| format!("($1, $2, {stage})")).collect();
    let insert =
        format!("INSERT INTO order_history (order_id, at, stage) VALUES {} ON CONFLICT DO NOTHING", rows.join(", "));
    let mut query = sqlx::query(&insert).bind(id.to_string()).bind(at);
    for stage in stages {
        query = query.bind(stage.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

pub async fn find<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    id: OrderId,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

/// How many orders are at each status now.
pub async fn count_by_status(pool: &Pool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status").fetch_all(pool).await
}

/// A customer's orders, newest first.
pub async fn list_by_owner(pool: &Pool, owner: &str, limit: i64) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE owner = $1 ORDER BY created_at DESC LIMIT $2"))
        .bind(owner)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The order and the stages it reached, in journey order, with when: one query.
pub async fn find_with_history(pool: &Pool, id: OrderId) -> Result<Option<(Order, Vec<(Stage, i64)>)>, sqlx::Error> {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect();
    let rows = sqlx::query(&format!(
        "SELECT {}, h.stage, h.at FROM orders o LEFT JOIN order_history h ON h.order_id = o.id WHERE o.id = $1",
        columns.join(", ")
    ))
    .bind(id.to_string())
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    Ok(Some((from_row(first)?, stages(&rows))))
}

/// The stages reached, in journey order, with when.
pub async fn history(pool: &Pool, id: OrderId) -> Result<Vec<(Stage, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT stage, at FROM order_history WHERE order_id = $1")
        .bind(id.to_string())
        .fetch_all(pool)
        .await?;
    Ok(stages(&rows))
}

/// Reads (stage, at) from columns `stage` and `at`, sorted in journey order; rows without a
/// stage (an order with no history yet, in a join) are left out.
fn stages(rows: &[sqlx::any::AnyRow]) -> Vec<(Stage, i64)> {
    let mut stages: Vec<(Stage, i64)> = rows
        .iter()
        .filter_map(|row| {
            let stage = row.try_get::<Option<String>, _>("stage").ok()??;
            Some((Stage::parse(&stage)?, row.try_get("at").ok()?))
        })
        .collect();
    stages.sort_by_key(|(stage, _)| *stage);
    stages
}
