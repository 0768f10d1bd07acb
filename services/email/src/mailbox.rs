//! The mailbox: mails received over SMTP, parsed and stored once per Message-ID.

use mail_parser::MessageParser;
use shop_events::api::ORDER_MAIL_HEADER;
use shop_platform::db::{now_millis, Pool};
use tracing::Instrument;

#[derive(Clone)]
pub struct Mailbox {
    pub pool: Pool,
}

impl Mailbox {
    /// Stores a received message. A message whose Message-ID is already here is accepted
    /// and not stored again. Returns the Message-ID.
    pub async fn deliver(&self, from: &str, to: &[String], raw: &[u8]) -> Result<String, sqlx::Error> {
        let parsed = MessageParser::default().parse(raw);
        let (message_id, order_id, subject, body) = match &parsed {
            Some(message) => (
                message.message_id().map(str::to_owned),
                message.header_raw(ORDER_MAIL_HEADER).map(|v| v.trim().to_owned()),
                message.subject().unwrap_or_default().to_owned(),
                message.body_text(0).map(|b| b.trim_end().to_owned()).unwrap_or_default(),
            ),
            None => (None, None, String::new(), String::from_utf8_lossy(raw).into_owned()),
        };
        let message_id = message_id.unwrap_or_else(|| format!("{}@shop-mailbox", uuid::Uuid::now_v7()));
        // The delivery's span comes under the sender's span, named in the mail's traceparent.
        let span = tracing::info_span!(
            "deliver",
            otel.name = "smtp DATA",
            otel.kind = "server",
            network.protocol.name = "smtp",
            order_id = order_id.as_deref(),
        );
        let traceparent = parsed.as_ref().and_then(|m| m.header_raw(shop_platform::trace::TRACEPARENT)).map(str::trim);
        shop_platform::trace::continue_from(&span, traceparent);
        self.store(&message_id, order_id, from, to, &subject, &body).instrument(span).await?;
        Ok(message_id)
    }

    async fn store(
        &self,
        message_id: &str,
        order_id: Option<String>,
        from: &str,
        to: &[String],
        subject: &str,
        body: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO emails (message_id, order_id, sender, recipients, subject, body, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(message_id)
        .bind(order_id.clone())
        .bind(from)
        .bind(to.join(", "))
        .bind(subject)
        .bind(body)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            for address in to {
                sqlx::query("INSERT INTO mail_recipients (message_id, address) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(message_id)
                    .bind(address.trim().to_lowercase())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        if inserted.rows_affected() == 1 {
            tracing::debug!(order_id = order_id.as_deref().unwrap_or("-"), %subject, "Mail received");
        } else {
            tracing::debug!(%message_id, "Mail received again; kept once");
        }
        Ok(())
    }
}
