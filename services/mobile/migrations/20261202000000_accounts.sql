-- Customers' accounts: the app signs customers in with their email and a password, kept as
-- an Argon2id hash (a PHC string). The email is the customer's identity, lower case.
CREATE TABLE IF NOT EXISTS accounts (
    email         TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Every push is addressed to a customer (their email, lower case): the phone shows a
-- customer the pushes addressed to them, and only those. Pushes received before there
-- were recipients are shown to nobody.
ALTER TABLE pushes ADD COLUMN recipient TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS pushes_by_recipient ON pushes (recipient, order_id, received_at);
