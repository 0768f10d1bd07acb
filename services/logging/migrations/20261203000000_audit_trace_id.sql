-- The trace of the work that wrote each audit record (32 hex digits; null where that work was
-- not traced): the records one action caused share it.
ALTER TABLE audit_log ADD COLUMN trace_id TEXT;
