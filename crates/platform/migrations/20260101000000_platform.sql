-- Tables the platform keeps in every service database.

-- Events written in the same transaction as the state change they announce; the relay
-- publishes them and deletes them once the broker has acknowledged them (acks=all).
CREATE TABLE IF NOT EXISTS outbox (
    id          TEXT PRIMARY KEY,        -- the event id, a UUIDv7: ordered by time of writing
    topic       TEXT NOT NULL,
    record_key  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    traceparent TEXT,
    created_at  BIGINT NOT NULL
);

-- Which replica publishes the outbox: one holder at a time, the lease expires if it dies.
CREATE TABLE IF NOT EXISTS outbox_lease (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Events a consumer has applied, written in the same transaction as the effect, so a
-- redelivered record changes nothing twice.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
