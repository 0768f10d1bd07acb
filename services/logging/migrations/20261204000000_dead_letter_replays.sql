-- Each dead letter replayed by the operator, once: the key makes a second replay a conflict.
-- Written with its audit record before the copy is sent, taken back if the send fails.
CREATE TABLE IF NOT EXISTS dead_letter_replays (
    dlq_topic      TEXT NOT NULL,
    dlq_partition  BIGINT NOT NULL,
    dlq_offset     BIGINT NOT NULL,
    replayed_at    BIGINT NOT NULL,
    replayed_by    TEXT NOT NULL,
    to_topic       TEXT NOT NULL,
    to_partition   BIGINT,
    to_offset      BIGINT,
    audit_event_id TEXT NOT NULL,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
