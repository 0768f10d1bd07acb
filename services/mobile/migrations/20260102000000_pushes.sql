-- The phone's push inbox. The push id (chosen by the sender per event and channel) makes a
-- resent push land once.
CREATE TABLE IF NOT EXISTS pushes (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS pushes_by_order ON pushes (order_id, received_at);
