-- Who each mail was delivered to (the envelope's RCPT TO, lower case): a customer reads the
-- mails addressed to them, and only those. Mails received before this table existed had one
-- recipient each (notification sends one per mail).
CREATE TABLE IF NOT EXISTS mail_recipients (
    message_id TEXT NOT NULL,
    address    TEXT NOT NULL,
    PRIMARY KEY (message_id, address)
);

INSERT INTO mail_recipients (message_id, address) SELECT message_id, lower(recipients) FROM emails;

CREATE INDEX IF NOT EXISTS mail_recipients_by_address ON mail_recipients (address, message_id);
