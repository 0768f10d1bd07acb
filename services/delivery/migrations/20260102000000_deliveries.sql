CREATE TABLE IF NOT EXISTS deliveries (
    order_id       TEXT PRIMARY KEY,   -- one delivery per order
    id             TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,      -- shipping | shipped | delivered
    customer_name  TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    items          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
