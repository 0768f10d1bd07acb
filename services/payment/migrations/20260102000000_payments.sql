CREATE TABLE IF NOT EXISTS payments (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL UNIQUE,   -- one payment per order: creating it again returns it
    amount_cents   BIGINT NOT NULL,
    status         TEXT NOT NULL,          -- created | made
    customer_name  TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    paid_at        BIGINT
);
