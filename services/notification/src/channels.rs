//! The two ways a customer is told: a push to the phone (HTTP to the mobile service) and an
//! email (SMTP to the mailbox). Each send carries an id derived from the event and the
//! channel, so a resend after a crash lands once at the receiver.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use shop_events::{api, Customer, OrderId};
use shop_platform::auth::ServiceCredential;
use shop_platform::consumer::HandleError;

use crate::messages::Notice;

/// A notice on its way to one customer over one channel (its id is the same on every retry).
pub struct Outgoing<'a> {
    pub id: uuid::Uuid,
    pub order_id: OrderId,
    pub customer: &'a Customer,
    pub notice: &'a Notice,
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError>;
}

/// Pushes to the phone: `POST /api/push` on mobile, with notification's service credential.
pub struct Push {
    http: reqwest::Client,
    url: String,
    credential: ServiceCredential,
}

impl Push {
    pub fn new(mobile_url: &str, credential: ServiceCredential) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            // Shorter than mobile's wait for the next request on a kept connection.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client builds");
        Self { http, url: format!("{}/api/push", mobile_url.trim_end_matches('/')), credential }
    }
}

#[async_trait]
impl Channel for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError> {
        let authorization =
            self.credential.authorization().map_err(|e| HandleError::Transient(format!("cannot sign a token: {e}")))?;
        let body = api::Push {
            id: outgoing.id,
            order_id: outgoing.order_id,
            to: outgoing.customer.email().to_owned(),
            stage: outgoing.notice.stage,
            title: outgoing.notice.title.clone(),
            body: outgoing.notice.body.clone(),
            sent_at: chrono::Utc::now().to_rfc3339(),
        };
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .json(&body)
            .send()
            .await
            .map_err(|e| HandleError::Transient(format!("mobile unreachable: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
            let text = response.text().await.unwrap_or_default();
            Err(HandleError::Permanent(format!("mobile refused the push ({status}): {text}")))
        } else {
            Err(HandleError::Transient(format!("mobile failed ({status})")))
        }
    }
}

/// Sends mail over kept-open SMTP connections, one per mail in flight (the consumer handles
/// partitions concurrently), each reopened when it breaks, with Nagle's algorithm off: lettre
/// writes a message's body and its final "." separately, and with Nagle on, the second write
/// waits for the mailbox's delayed ACK, 40 ms per mail.
pub struct Mail {
    address: String,
    from: lettre::message::Mailbox,
    credentials: Credentials,
    idle: std::sync::Mutex<Vec<AsyncSmtpConnection>>,
}

impl Mail {
    /// Mail to the mailbox at `host:port`, sent as `from`, authenticating as `user` with `password`.
    pub fn new(host: &str, port: u16, from: &str, user: &str, password: String) -> anyhow::Result<Self> {
        let from = from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM {from:?} is not an address: {e}"))?;
        let credentials = Credentials::new(user.to_owned(), password);
        Ok(Self { address: format!("{host}:{port}"), from, credentials, idle: std::sync::Mutex::new(Vec::new()) })
    }

    /// A mailbox on the private network: plain SMTP (no TLS), authenticated with AUTH PLAIN.
    async fn connect(&self) -> Result<AsyncSmtpConnection, HandleError> {
        let unreachable =
            |e: &dyn std::fmt::Display| HandleError::Transient(format!("mailbox {} unreachable: {e}", self.address));
        let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&self.address))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        stream.set_nodelay(true).map_err(|e| unreachable(&e))?;
        // Whatever fails before a mail is given is the mailbox's failure (or its configuration's),
        // never a mail's: retried, so that no mail is set aside for it.
        let refused = |e: lettre::transport::smtp::Error| {
            HandleError::Transient(format!("mailbox {} refused the session: {e}", self.address))
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
            .await
            .map_err(refused)?;
        connection.auth(&[Mechanism::Plain], &self.credentials).await.map_err(refused)?;
        Ok(connection)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<AsyncSmtpConnection>> {
        self.idle.lock().expect("the pool lock is never poisoned")
    }

    async fn send_message(&self, message: &Message) -> Result<(), HandleError> {
        // A kept connection may have been closed by the server while idle: one fresh try.
        for fresh in [false, true] {
            let kept = if fresh { None } else { self.kept().pop().filter(|c| !c.has_broken()) };
            let mut connection = match kept {
                Some(connection) => connection,
                None => self.connect().await?,
            };
            match tokio::time::timeout(
                Duration::from_secs(10),
                connection.send(message.envelope(), &message.formatted()),
            )
            .await
            {
                Ok(Ok(_)) => {
                    self.kept().push(connection);
                    return Ok(());
                }
                Ok(Err(error)) if fresh || is_the_mails(&error) => return Err(classify(error)),
                Err(_) if fresh => return Err(HandleError::Transient("the mailbox did not answer in time".into())),
                Ok(Err(_)) | Err(_) => continue,
            }
        }
        unreachable!("the loop returns on its fresh try")
    }
}

#[async_trait]
impl Channel for Mail {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError> {
        // The name as the customer wrote it: lettre quotes or encodes it in the header.
        let address = outgoing
            .customer
            .email()
            .parse()
            .map_err(|e| HandleError::Permanent(format!("customer email cannot be addressed: {e}")))?;
        let to = lettre::message::Mailbox::new(Some(outgoing.customer.name().to_owned()), address);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&outgoing.notice.title)
            .message_id(Some(format!("<{}@shop.notification>", outgoing.id)))
            .raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str(api::ORDER_MAIL_HEADER),
                outgoing.order_id.to_string(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(outgoing.notice.body.clone())
            .map_err(|e| HandleError::Permanent(format!("cannot build the mail: {e}")))?;
        self.send_message(&message).await
    }
}

/// Whose failure it is, once a mail is given. The mail's own (a 5xx answer to it, or lettre
/// refusing to send this message, such as an international address to a server without
/// SMTPUTF8) will not change on retry: the record is set aside. The mailbox's or the network's
/// (a 4xx answer, a lost or refused connection, a timeout) may: it is retried.
fn classify(error: lettre::transport::smtp::Error) -> HandleError {
    if is_the_mails(&error) {
        HandleError::Permanent(format!("mail refused: {error}"))
    } else {
        HandleError::Transient(format!("mail not sent: {error}"))
    }
}

fn is_the_mails(error: &lettre::transport::smtp::Error) -> bool {
    error.is_permanent() || error.is_client()
}
