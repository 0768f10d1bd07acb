//! Orders and their history in storage. Write transactions start with their write so that
//! SQLite takes the write lock up front (two replicas share the file).

use shop_events::{Customer, LineItem, Money, OrderId, PaymentId, Stage};
use shop_platform::db::{placeholders, Pool, Transaction};
use sqlx::Row;

use crate::status::OrderStatus;

#[derive(Clone, Debug)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub payment_id: PaymentId,
    pub payment_url: String,
    pub delivery_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, status, customer_name, customer_email, customer_phone, items, total_cents, payment_id, \
                       payment_url, delivery_id, idempotency_key, request_hash, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Order, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored order has a bad {what}").into());
    Ok(Order {
        id: OrderId::parse(row.try_get::<String, _>(0)?.as_str()).map_err(|_| bad("id"))?,
        status: OrderStatus::parse(row.try_get::<String, _>(1)?.as_str()).ok_or_else(|| bad("status"))?,
        customer: Customer { name: row.try_get(2)?, email: row.try_get(3)?, phone: row.try_get(4)? },
        items: serde_json::from_str(row.try_get::<String, _>(5)?.as_str()).map_err(|_| bad("items"))?,
        total: Money::from_cents(row.try_get(6)?).map_err(|_| bad("total"))?,
        payment_id: PaymentId::parse(row.try_get::<String, _>(7)?.as_str()).map_err(|_| bad("payment id"))?,
        payment_url: row.try_get(8)?,
        delivery_id: row.try_get(9)?,
        idempotency_key: row.try_get(10)?,
        request_hash: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

/// Inserts the order unless one with its id exists. Returns whether it was inserted.
pub async fn insert(tx: &mut Transaction<'_>, order: &Order) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT DO NOTHING"
    ))
    .bind(order.id.to_string())
    .bind(order.status.as_str())
    .bind(&order.customer.name)
    .bind(&order.customer.email)
    .bind(&order.customer.phone)
    .bind(serde_json::to_string(&order.items).expect("line items serialize"))
    .bind(order.total.cents())
    .bind(order.payment_id.to_string())
    .bind(&order.payment_url)
    .bind(order.delivery_id.clone())
    .bind(order.idempotency_key.clone())
    .bind(&order.request_hash)
    .bind(order.created_at)
    .bind(order.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the order from `from` to `to` if it is still at `from`; returns it as it is then.
pub async fn update_status(
    tx: &mut Transaction<'_>,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    delivery_id: Option<&str>,
    at: i64,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE orders SET status = $1, updated_at = $2, delivery_id = COALESCE($3, delivery_id) \
         WHERE id = $4 AND status = $5 RETURNING {COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(at)
    .bind(delivery_id.map(str::to_owned))
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

pub async fn find_by_key(pool: &Pool, key: &str) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE idempotency_key = $1"))
        .bind(key)
        .fetch_optional(pool)
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

pub async fn list_by_email(pool: &Pool, email: &str, limit: i64) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE customer_email = $1 ORDER BY created_at DESC LIMIT $2"))
        .bind(email)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|row| from_row(&row))
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
    Ok(Some((from_row(first)?, stages(&rows, columns.len()))))
}

/// The stages reached, in journey order, with when.
pub async fn history(pool: &Pool, id: OrderId) -> Result<Vec<(Stage, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT stage, at FROM order_history WHERE order_id = $1")
        .bind(id.to_string())
        .fetch_all(pool)
        .await?;
    Ok(stages(&rows, 0))
}

/// Reads (stage, at) from columns `column` and `column + 1`, sorted in journey order; rows
/// without a stage (an order with no history yet, in a join) are left out.
fn stages(rows: &[sqlx::any::AnyRow], column: usize) -> Vec<(Stage, i64)> {
    let mut stages: Vec<(Stage, i64)> = rows
        .iter()
        .filter_map(|row| {
            let stage = row.try_get::<Option<String>, _>(column).ok()??;
            Some((Stage::parse(&stage)?, row.try_get(column + 1).ok()?))
        })
        .collect();
    stages.sort_by_key(|(stage, _)| *stage);
    stages
}
