-- The audit trail: one row per logging event, the event id making a redelivery a no-op.
CREATE TABLE IF NOT EXISTS audit_log (
    event_id    TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    source      TEXT NOT NULL,
    instance    TEXT NOT NULL,
    action      TEXT NOT NULL,
    message     TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS audit_log_by_order ON audit_log (order_id, occurred_at);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (occurred_at);
