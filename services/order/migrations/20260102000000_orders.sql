CREATE TABLE IF NOT EXISTS orders (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,   -- created | readyToShip | shipping | shipped | delivered
    customer_name   TEXT NOT NULL,
    customer_email  TEXT NOT NULL,
    customer_phone  TEXT NOT NULL,
    items           TEXT NOT NULL,   -- JSON array of line items
    total_cents     BIGINT NOT NULL,
    payment_id      TEXT NOT NULL,
    payment_url     TEXT NOT NULL,
    delivery_id     TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_by_email ON orders (customer_email, created_at);

-- One row per stage reached: the primary key makes a doubled stage impossible.
CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL,
    stage    TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (order_id, stage)
);
