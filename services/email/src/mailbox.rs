//! The mailbox: mails received over SMTP, parsed and stored once per Message-ID.

use std::sync::Arc;

use mail_parser::MessageParser;
use shop_events::api::ORDER_MAIL_HEADER;
use shop_platform::db::{now_millis, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Mails stored in one transaction at most: those that arrived while the last group was
/// being written.
const GROUP: usize = 64;

/// The mailbox. Its writer stores the mails of every SMTP session: each mail that arrives
/// while a transaction is being written waits for the next one, which stores all that are
/// waiting together (group commit). A session answers its sender only once the mail is stored.
#[derive(Clone)]
pub struct Mailbox {
    arrivals: mpsc::Sender<Arrival>,
}

/// Why a mail was not stored (the sender is told to try again).
pub type StoreError = Arc<sqlx::Error>;

/// A parsed mail, to be stored once per Message-ID.
struct Mail {
    message_id: String,
    order_id: Option<String>,
    from: String,
    to: Vec<String>,
    subject: String,
    body: String,
}

/// A mail waiting for the writer, with its delivery's span and whom to tell.
struct Arrival {
    mail: Mail,
    span: tracing::Span,
    stored: oneshot::Sender<Result<(), StoreError>>,
}

impl Mailbox {
    /// A mailbox storing into `pool`; its writer runs until the last clone is dropped.
    pub fn new(pool: Pool) -> Mailbox {
        let (arrivals, mut waiting) = mpsc::channel::<Arrival>(GROUP * 4);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(GROUP);
            while waiting.recv_many(&mut group, GROUP).await > 0 {
                store_group(&pool, std::mem::take(&mut group)).await;
            }
        });
        Mailbox { arrivals }
    }

    /// Hands a received message to the writer and returns at once: the [`Delivery`] says when
    /// it is stored, so a session can read the next pipelined mail meanwhile (and the mails of
    /// one write go into one transaction). A message whose Message-ID is already here is
    /// accepted and not stored again. `command` is the SMTP command that carried it (DATA, BDAT).
    pub async fn receive(&self, from: &str, to: &[String], raw: &[u8], command: &str) -> Result<Delivery, StoreError> {
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
            otel.name = format!("smtp {command}"),
            otel.kind = "server",
            network.protocol.name = "smtp",
            order_id = order_id.as_deref(),
        );
        let traceparent = parsed.as_ref().and_then(|m| m.header_raw(shop_platform::trace::TRACEPARENT)).map(str::trim);
        shop_platform::trace::continue_from(&span, traceparent);
        let mail =
            Mail { message_id: message_id.clone(), order_id, from: from.to_owned(), to: to.to_vec(), subject, body };
        let (stored, answer) = oneshot::channel();
        self.arrivals.send(Arrival { mail, span, stored }).await.map_err(|_| gone())?;
        Ok(Delivery { message_id, answer })
    }
}

/// A mail handed to the writer, not necessarily stored yet.
pub struct Delivery {
    message_id: String,
    answer: oneshot::Receiver<Result<(), StoreError>>,
}

impl Delivery {
    /// Waits until the mail is stored (or could not be); returns its Message-ID.
    pub async fn stored(self) -> Result<String, StoreError> {
        self.answer.await.map_err(|_| gone())??;
        Ok(self.message_id)
    }
}

/// The writer is gone (the mailbox is shutting down).
fn gone() -> StoreError {
    Arc::new(sqlx::Error::WorkerCrashed)
}

/// Stores a group of mails in one transaction and tells each sender. When the transaction
/// fails, each mail is stored on its own, so one mail cannot keep the others out.
async fn store_group(pool: &Pool, group: Vec<Arrival>) {
    if group.len() > 1 {
        match store(pool, &group).await {
            Ok(()) => {
                for arrival in group {
                    let _ = arrival.stored.send(Ok(()));
                }
                return;
            }
            Err(error) => {
                tracing::info!(%error, mails = group.len(), "Cannot store the mails together; storing each alone")
            }
        }
    }
    for arrival in group {
        let stored = store(pool, std::slice::from_ref(&arrival)).await.map_err(Arc::new);
        let _ = arrival.stored.send(stored);
    }
}

/// Stores the mails in one transaction, each insert in its delivery's span.
async fn store(pool: &Pool, arrivals: &[Arrival]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut new = Vec::with_capacity(arrivals.len());
    for Arrival { mail, span, .. } in arrivals {
        let inserted = insert(&mut tx, mail).instrument(span.clone()).await?;
        new.push(inserted);
    }
    tx.commit().await?;
    for (Arrival { mail, span, .. }, inserted) in arrivals.iter().zip(new) {
        let _entered = span.enter();
        if inserted {
            tracing::debug!(order_id = mail.order_id.as_deref().unwrap_or("-"), subject = %mail.subject, "Mail received");
        } else {
            tracing::debug!(message_id = %mail.message_id, "Mail received again; kept once");
        }
    }
    Ok(())
}

/// Inserts a mail and its recipients unless its Message-ID is here already; says whether it was new.
async fn insert(tx: &mut Transaction<'_>, mail: &Mail) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO emails (message_id, order_id, sender, recipients, subject, body, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&mail.message_id)
    .bind(mail.order_id.clone())
    .bind(&mail.from)
    .bind(mail.to.join(", "))
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    for address in &mail.to {
        sqlx::query("INSERT INTO mail_recipients (message_id, address) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&mail.message_id)
            .bind(address.trim().to_lowercase())
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}
