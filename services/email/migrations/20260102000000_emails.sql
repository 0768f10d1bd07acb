-- The customer's mailbox. The Message-ID (chosen by the sender per event) makes a resent
-- mail land once.
CREATE TABLE IF NOT EXISTS emails (
    message_id  TEXT PRIMARY KEY,
    order_id    TEXT,
    sender      TEXT NOT NULL,
    recipients  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS emails_by_order ON emails (order_id, received_at);
CREATE INDEX IF NOT EXISTS emails_by_time ON emails (received_at);
