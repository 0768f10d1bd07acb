//! Payments in storage. Every write transaction starts with its write, so SQLite takes the
//! write lock first and two replicas never deadlock on a read-then-write upgrade.

use shop_events::{Customer, Money, OrderId, PaymentId};
use shop_platform::db::{self, now_millis, Pool, Transaction};
use sqlx::Row;

use crate::PaymentStatus;

#[derive(Clone, Debug)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub status: PaymentStatus,
    pub customer: Customer,
    pub created_at: i64,
    pub paid_at: Option<i64>,
}

/// What a read returns, decoded by name (`from_row`).
const COLUMNS: &str =
    "id, order_id, amount_cents, status, customer_name, customer_email, customer_phone, created_at, paid_at";

fn from_row(row: sqlx::any::AnyRow) -> Result<Payment, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored payment has a bad {what}").into());
    let text = |column: &str| row.try_get::<String, _>(column);
    Ok(Payment {
        id: PaymentId::parse(&text("id")?).map_err(|_| bad("id"))?,
        order_id: OrderId::parse(&text("order_id")?).map_err(|_| bad("order id"))?,
        amount: Money::from_cents(row.try_get("amount_cents")?).map_err(|_| bad("amount"))?,
        status: PaymentStatus::parse(&text("status")?).ok_or_else(|| bad("status"))?,
        customer: db::customer(&row)?,
        created_at: row.try_get("created_at")?,
        paid_at: row.try_get("paid_at")?,
    })
}

/// Inserts a new payment unless the order has one. Returns whether it was inserted.
pub async fn insert(tx: &mut Transaction<'_>, payment: &Payment) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO payments (id, order_id, amount_cents, status, customer_name, customer_email, customer_phone, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(payment.id.to_string())
    .bind(payment.order_id.to_string())
    .bind(payment.amount.cents())
    .bind(payment.status.as_str())
    .bind(payment.customer.name())
    .bind(payment.customer.email())
    .bind(payment.customer.phone())
    .bind(payment.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the payment made if, and only if, it is still `created` (the one transition of
/// `PaymentStatus::pay`): the database decides which of two concurrent pays wins. Returns the
/// payment as it is then, or None when it was not `created`.
pub async fn mark_made(tx: &mut Transaction<'_>, id: PaymentId) -> Result<Option<Payment>, sqlx::Error> {
    let from = PaymentStatus::Created;
    let to = from.pay().expect("a created payment can be paid");
    sqlx::query(&format!(
        "UPDATE payments SET status = $1, paid_at = $2 WHERE id = $3 AND status = $4 RETURNING {COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(now_millis())
    .bind(id.to_string())
    .bind(from.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .map(from_row)
    .transpose()
}

pub async fn find<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    id: PaymentId,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?
        .map(from_row)
        .transpose()
}

pub async fn find_by_order<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: OrderId,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1"))
        .bind(order_id.to_string())
        .fetch_optional(executor)
        .await?
        .map(from_row)
        .transpose()
}

pub async fn get(pool: &Pool, id: PaymentId) -> Result<Option<Payment>, sqlx::Error> {
    find(pool, id).await
}
