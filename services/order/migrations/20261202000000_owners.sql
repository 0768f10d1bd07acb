-- An order belongs to the signed-in customer who placed it (their email, lower case), and an
-- Idempotency-Key is that customer's own: two customers may use the same key, and the order
-- id no longer derives from it. The key's reservation (order_keys) names the order id before
-- the payment is opened, so concurrent retries share one order and one payment.
CREATE TABLE IF NOT EXISTS order_keys (
    owner           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (owner, idempotency_key)
);

INSERT INTO order_keys (owner, idempotency_key, order_id, request_hash, created_at)
    SELECT lower(customer_email), idempotency_key, id, request_hash, created_at
    FROM orders WHERE idempotency_key IS NOT NULL;

CREATE TABLE orders_owned (
    id             TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,   -- the customer's email, lower case
    status         TEXT NOT NULL,   -- created | readyToShip | shipping | shipped | delivered
    customer_name  TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    items          TEXT NOT NULL,   -- JSON array of line items
    total_cents    BIGINT NOT NULL,
    payment_id     TEXT NOT NULL,
    payment_url    TEXT NOT NULL,
    delivery_id    TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

INSERT INTO orders_owned (id, owner, status, customer_name, customer_email, customer_phone, items, total_cents,
                          payment_id, payment_url, delivery_id, created_at, updated_at)
    SELECT id, lower(customer_email), status, customer_name, customer_email, customer_phone, items, total_cents,
           payment_id, payment_url, delivery_id, created_at, updated_at
    FROM orders;

DROP TABLE orders;
ALTER TABLE orders_owned RENAME TO orders;
CREATE INDEX IF NOT EXISTS orders_by_owner ON orders (owner, created_at);
