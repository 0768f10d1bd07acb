//! The two ways a customer is told: a push to the phone (HTTP to the mobile service) and an
//! email (SMTP to the mailbox). Each send carries an id derived from the event and the
//! channel, so a resend after a crash lands once at the receiver.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail as MailFrom, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
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
    /// The span of the record it is for: its sending belongs under it.
    pub span: tracing::Span,
}

/// At most this many notices of one batch are on their way at once, where a channel sends
/// them one by one.
const SENDS_IN_FLIGHT: usize = 8;

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError>;

    /// Sends several notices (each to a different order) and says what became of each, in
    /// their order. By default each on its own, several at once, each in its record's span.
    async fn send_all(&self, outgoing: &[Outgoing<'_>]) -> Vec<Result<(), HandleError>> {
        use tracing::Instrument;
        let mut sends = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            sends.push(self.send(o).instrument(o.span.clone()));
        }
        futures::stream::iter(sends).buffered(SENDS_IN_FLIGHT).collect().await
    }
}

/// Pushes to the phone: `POST /api/pushes` on mobile (one request for the pushes of a batch),
/// with notification's service credential.
pub struct Push {
    http: reqwest::Client,
    url: String,
    credential: ServiceCredential,
}

impl Push {
    pub fn new(mobile_url: &str, credential: ServiceCredential) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
            .build()
            .expect("an HTTP client builds");
        Self { http, url: format!("{}/api/pushes", mobile_url.trim_end_matches('/')), credential }
    }
}

#[async_trait]
impl Channel for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError> {
        let mut results = self.send_all(std::slice::from_ref(outgoing)).await;
        results.pop().expect("one answer for one push")
    }

    /// One request for many pushes (`POST /api/pushes`): mobile stores them in one transaction
    /// and says what became of each. Each push carries its record's trace context; the request
    /// goes in the first one's trace.
    async fn send_all(&self, outgoing: &[Outgoing<'_>]) -> Vec<Result<(), HandleError>> {
        let mut results = Vec::with_capacity(outgoing.len());
        for chunk in chunks(outgoing) {
            results.extend(self.send_chunk(chunk).await);
        }
        results
    }
}

/// Requests of at most [`api::MAX_PUSHES`] pushes and about [`PUSH_BYTES`] of JSON, under
/// mobile's limit on a request's body.
fn chunks<'o, 'a>(outgoing: &'o [Outgoing<'a>]) -> Vec<&'o [Outgoing<'a>]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, o) in outgoing.iter().enumerate() {
        let size = 300 + o.notice.title.len() + o.notice.body.len() + o.customer.email().len();
        if i > start && (i - start == api::MAX_PUSHES || bytes + size > PUSH_BYTES) {
            chunks.push(&outgoing[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < outgoing.len() {
        chunks.push(&outgoing[start..]);
    }
    chunks
}

/// About how much JSON one request of pushes carries at most (mobile takes 64 KiB).
const PUSH_BYTES: usize = 48 * 1024;

impl Push {
    async fn send_chunk(&self, chunk: &[Outgoing<'_>]) -> Vec<Result<(), HandleError>> {
        let everyone = |error: HandleError| chunk.iter().map(|_| Err(error.clone())).collect::<Vec<_>>();
        let authorization = match self.credential.authorization() {
            Ok(authorization) => authorization,
            Err(e) => return everyone(HandleError::Transient("credentials", format!("cannot sign a token: {e}"))),
        };
        let sent_at = chrono::Utc::now().to_rfc3339();
        let pushes = api::Pushes {
            pushes: chunk
                .iter()
                .map(|o| api::TracedPush {
                    push: api::Push {
                        id: o.id,
                        order_id: o.order_id,
                        to: o.customer.email().to_owned(),
                        stage: o.notice.stage,
                        title: o.notice.title.clone(),
                        body: o.notice.body.clone(),
                        sent_at: sent_at.clone(),
                    },
                    traceparent: shop_platform::trace::traceparent(&o.span),
                })
                .collect(),
        };
        let mut request = self.http.post(&self.url).header(reqwest::header::AUTHORIZATION, authorization);
        // The request's span at mobile comes under the first record's span.
        if let Some(traceparent) = pushes.pushes.first().and_then(|p| p.traceparent.clone()) {
            request = request.header(shop_platform::trace::TRACEPARENT, traceparent);
        }
        let response = match request.json(&pushes).send().await {
            Ok(response) => response,
            Err(e) => return everyone(HandleError::Transient("mobile", format!("mobile unreachable: {e}"))),
        };
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return everyone(if push_refused_for_itself(status) {
                HandleError::Permanent("push_refused", format!("mobile refused the pushes ({status}): {text}"))
            } else {
                HandleError::Transient("mobile", format!("mobile failed ({status})"))
            });
        }
        let answers: Vec<api::PushResult> = match response.json().await {
            Ok(answers) => answers,
            Err(e) => return everyone(HandleError::Transient("mobile", format!("mobile's answer unreadable: {e}"))),
        };
        chunk
            .iter()
            .map(|o| match answers.iter().find(|a| a.id == o.id) {
                Some(api::PushResult { outcome: api::PushOutcome::Stored | api::PushOutcome::Duplicate, .. }) => Ok(()),
                Some(api::PushResult { outcome: api::PushOutcome::Refused, error, .. }) => Err(HandleError::Permanent(
                    "push_refused",
                    format!("mobile refused the push: {}", error.as_deref().unwrap_or("no reason given")),
                )),
                None => Err(HandleError::Transient("mobile", "mobile did not answer for this push".into())),
            })
            .collect()
    }
}

/// Whose failure a push's answer is. Mobile refusing this push as it is (a 4xx: invalid, not
/// allowed, too large) is the push's own: set aside. A 5xx, 408 (mobile timed out reading it)
/// and 429 (mobile asks to slow down) are mobile's, as is no answer at all: retried.
fn push_refused_for_itself(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 408 | 429)
}

/// SMTP sessions open at once: mails beyond wait for one to be free (each session carries one
/// write of mails at a time; the consumer handles many partitions at once, several mails each).
const SESSIONS: usize = 64;
/// Mails of a batch written to one session at once, where the mailbox takes them so.
const MAILS_PER_WRITE: usize = 16;
/// How long a session has to send one mail, or one write of mails, and have its answers.
const SEND_WITHIN: Duration = Duration::from_secs(10);
/// Sessions being opened at once. A mailbox admits only a few sessions from one peer that have
/// not authenticated yet (the shop's: 4, and it closes the oldest for a newer one), so opening
/// many at once has most of them refused with a 421.
const OPENING: usize = 2;

/// Sends mail over at most `SESSIONS` kept-open SMTP connections (opened `OPENING` at a time,
/// each reopened when it breaks), with Nagle's algorithm off: lettre writes a message's body
/// and its final "." separately, and with Nagle on, the second write waits for the mailbox's
/// delayed ACK, 40 ms per mail. Where the mailbox offers PIPELINING (RFC 2920) and CHUNKING
/// (RFC 3030), the mails of a batch go in one write per session, each as MAIL, RCPT and
/// `BDAT <size> LAST` with its message, and their answers are read together: one round trip
/// for up to [`MAILS_PER_WRITE`] mails instead of four per mail. With PIPELINING alone a mail
/// takes two: MAIL, RCPT and DATA in one write, then the message.
pub struct Mail {
    address: String,
    from: lettre::message::Mailbox,
    credentials: Credentials,
    idle: std::sync::Mutex<Vec<Session>>,
    sessions: tokio::sync::Semaphore,
    opening: tokio::sync::Semaphore,
}

impl Mail {
    /// Mail to the mailbox at `host:port`, sent as `from`, authenticating as `user` with `password`.
    pub fn new(host: &str, port: u16, from: &str, user: &str, password: String) -> anyhow::Result<Self> {
        let from = from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM {from:?} is not an address: {e}"))?;
        let credentials = Credentials::new(user.to_owned(), password);
        Ok(Self {
            address: format!("{host}:{port}"),
            from,
            credentials,
            idle: std::sync::Mutex::new(Vec::new()),
            sessions: tokio::sync::Semaphore::new(SESSIONS),
            opening: tokio::sync::Semaphore::new(OPENING),
        })
    }

    /// A mailbox on the private network: plain SMTP (no TLS), authenticated with AUTH PLAIN.
    async fn connect(&self) -> Result<Session, HandleError> {
        let _opening = self.opening.acquire().await.expect("the semaphore is never closed");
        let unreachable = |e: &dyn std::fmt::Display| {
            HandleError::Transient("mailbox", format!("mailbox {} unreachable: {e}", self.address))
        };
        let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&self.address))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        stream.set_nodelay(true).map_err(|e| unreachable(&e))?;
        // Whatever fails before a mail is given is the mailbox's failure (or its configuration's),
        // never a mail's: retried, so that no mail is set aside for it.
        let refused = |e: lettre::transport::smtp::Error| {
            HandleError::Transient("mailbox", format!("mailbox {} refused the session: {e}", self.address))
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
            .await
            .map_err(refused)?;
        // lettre reads the EHLO answer for the extensions it uses, PIPELINING and CHUNKING not
        // among them: asked once more per session (sessions are kept), before AUTH.
        let ehlo = connection.command(Ehlo::new(ClientId::default())).await.map_err(refused)?;
        let offers = |name: &str| ehlo.message().any(|line| line.trim().eq_ignore_ascii_case(name));
        let (pipelining, chunking) = (offers("PIPELINING"), offers("CHUNKING"));
        connection.auth(&[Mechanism::Plain], &self.credentials).await.map_err(refused)?;
        Ok(Session { connection, pipelining, chunking })
    }

    /// A kept session the mailbox has not closed, unless `fresh`; else a new one.
    async fn session(&self, fresh: bool) -> Result<Session, HandleError> {
        let kept = if fresh { None } else { self.kept().pop().filter(|s| !s.connection.has_broken()) };
        match kept {
            Some(session) => Ok(session),
            None => self.connect().await,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.idle.lock().expect("the pool lock is never poisoned")
    }

    /// The mail of one notice, in its record's trace.
    fn message(&self, outgoing: &Outgoing<'_>) -> Result<Message, HandleError> {
        // The name as the customer wrote it: lettre quotes or encodes it in the header.
        let address =
            outgoing.customer.email().parse().map_err(|e| {
                HandleError::Permanent("bad_address", format!("customer email cannot be addressed: {e}"))
            })?;
        let to = lettre::message::Mailbox::new(Some(outgoing.customer.name().to_owned()), address);
        let mut message = Message::builder();
        // The mailbox's span of the delivery comes under this record's span.
        if let Some(traceparent) = shop_platform::trace::traceparent(&outgoing.span) {
            message = message.raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str(shop_platform::trace::TRACEPARENT),
                traceparent,
            ));
        }
        message
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
            .map_err(|e| HandleError::Permanent("bad_mail", format!("cannot build the mail: {e}")))
    }

    /// Mails over one session, in one write where the mailbox takes them so; else each on
    /// its own, several at once. What became of each, in their order.
    async fn send_group(&self, messages: &[&Message]) -> Vec<Result<(), HandleError>> {
        let everyone = |error: HandleError| messages.iter().map(|_| Err(error.clone())).collect::<Vec<_>>();
        let session_permit = self.sessions.acquire().await.expect("the semaphore is never closed");
        // A kept connection may have been closed by the server while idle: one fresh try.
        for fresh in [false, true] {
            let mut session = match self.session(fresh).await {
                Ok(session) => session,
                Err(error) => return everyone(error),
            };
            let Some(write) = session.chunked(messages) else {
                self.kept().push(session);
                drop(session_permit);
                let mut sends = Vec::with_capacity(messages.len());
                for message in messages {
                    sends.push(self.send_message(message));
                }
                return futures::stream::iter(sends).buffered(SENDS_IN_FLIGHT).collect().await;
            };
            let answers: usize = messages.iter().map(|m| m.envelope().to().len() + 2).sum();
            let read = tokio::time::timeout(SEND_WITHIN, session.send_chunked(write, messages)).await;
            match read {
                Ok(Written { outcomes, broken: None }) => {
                    self.kept().push(session);
                    return outcomes;
                }
                Ok(Written { mut outcomes, broken: Some(error) }) if fresh || !outcomes.is_empty() => {
                    // The mails whose answers did not come are the mailbox's or the network's.
                    let error = HandleError::Transient("mailbox", format!("mail not sent: {error}"));
                    outcomes.resize(messages.len(), Err(error));
                    return outcomes;
                }
                Err(_) if fresh => {
                    let waited = format!("the mailbox did not answer {answers} commands in time");
                    return everyone(HandleError::Transient("mailbox", waited));
                }
                Ok(_) | Err(_) => continue,
            }
        }
        unreachable!("the loop returns on its fresh try")
    }

    async fn send_message(&self, message: &Message) -> Result<(), HandleError> {
        let _session = self.sessions.acquire().await.expect("the semaphore is never closed");
        // A kept connection may have been closed by the server while idle: one fresh try.
        for fresh in [false, true] {
            let mut session = self.session(fresh).await?;
            match tokio::time::timeout(SEND_WITHIN, session.send(message.envelope(), &message.formatted())).await {
                Ok(Ok(())) => {
                    self.kept().push(session);
                    return Ok(());
                }
                Ok(Err(error)) if fresh || is_the_mails(&error) => return Err(classify(error)),
                Err(_) if fresh => {
                    return Err(HandleError::Transient("mailbox", "the mailbox did not answer in time".into()))
                }
                Ok(Err(_)) | Err(_) => continue,
            }
        }
        unreachable!("the loop returns on its fresh try")
    }
}

/// An authenticated SMTP session, and whether the mailbox takes pipelined commands and BDAT.
struct Session {
    connection: AsyncSmtpConnection,
    pipelining: bool,
    chunking: bool,
}

/// What became of the mails of one write: the outcome of each whose answers were all read, in
/// order, and the error that broke the session before the others' were.
struct Written {
    outcomes: Vec<Result<(), HandleError>>,
    broken: Option<lettre::transport::smtp::Error>,
}

impl Session {
    /// The one write that sends all `messages` (RFC 2920 and RFC 3030): for each, MAIL, RCPT
    /// and `BDAT <size> LAST` followed by the message as it is. None where the mailbox does not
    /// offer both extensions, or lacks one a mail needs (lettre's own `send` then says so).
    fn chunked(&self, messages: &[&Message]) -> Option<String> {
        if !self.chunking {
            return None;
        }
        let mut write = String::new();
        for message in messages {
            let (envelope, email) = (message.envelope(), message.formatted());
            let parameters = self.pipelined(envelope, &email)?;
            let email = String::from_utf8(email).ok()?;
            write.push_str(&MailFrom::new(envelope.from().cloned(), parameters).to_string());
            for to in envelope.to() {
                write.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
            }
            write.push_str(&format!("BDAT {} LAST\r\n", email.len()));
            write.push_str(&email);
        }
        Some(write)
    }

    /// Writes `write` (from [`Session::chunked`]) and reads the answers: MAIL's, each RCPT's
    /// and BDAT's, per mail. A mail's first refusal is its outcome (the mailbox answers every
    /// command after a refused one too, so the session stays in step); any other error (the
    /// network, an answer that cannot be read) breaks the session.
    async fn send_chunked(&mut self, write: String, messages: &[&Message]) -> Written {
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut answer = Some(self.connection.command(write).await);
        for message in messages {
            let mut refused = None;
            for _ in 0..message.envelope().to().len() + 2 {
                let read = match answer.take() {
                    Some(first) => first,
                    None => self.connection.read_response().await,
                };
                match read {
                    Ok(_) => {}
                    Err(error) if error.is_transient() || error.is_permanent() => _ = refused.get_or_insert(error),
                    Err(error) => return Written { outcomes, broken: Some(error) },
                }
            }
            outcomes.push(refused.map_or(Ok(()), |error| Err(classify(error))));
        }
        Written { outcomes, broken: None }
    }

    /// One mail. Any error leaves the session out of step (answers may be unread): it is not
    /// kept. The checks before MAIL are lettre's own (`AsyncSmtpConnection::send`).
    async fn send(
        &mut self,
        envelope: &lettre::address::Envelope,
        email: &[u8],
    ) -> Result<(), lettre::transport::smtp::Error> {
        let Some(parameters) = self.pipelined(envelope, email) else {
            return self.connection.send(envelope, email).await.map(drop);
        };
        let mut commands = MailFrom::new(envelope.from().cloned(), parameters).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
        }
        commands.push_str(&Data.to_string());
        // One write; the answers come in order: MAIL's, each RCPT's, DATA's (354).
        self.connection.command(commands).await?;
        for _ in 0..envelope.to().len() + 1 {
            self.connection.read_response().await?;
        }
        self.connection.message(email).await.map(drop)
    }

    /// The MAIL parameters of a pipelined send; None where lettre's own `send` goes instead:
    /// the mailbox does not pipeline, or lacks an extension the mail needs (SMTPUTF8 for an
    /// international address, 8BITMIME for a body that is not ASCII), which lettre refuses as
    /// the mail's own fault.
    fn pipelined(&self, envelope: &lettre::address::Envelope, email: &[u8]) -> Option<Vec<MailParameter>> {
        if !self.pipelining {
            return None;
        }
        let offers = |extension| self.connection.server_info().supports_feature(extension).then_some(());
        let mut parameters = Vec::new();
        let mut addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.any(|address: &lettre::Address| !AsRef::<str>::as_ref(address).is_ascii()) {
            offers(Extension::SmtpUtfEight)?;
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !email.is_ascii() {
            offers(Extension::EightBitMime)?;
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Some(parameters)
    }
}

#[async_trait]
impl Channel for Mail {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<(), HandleError> {
        let mut results = self.send_all(std::slice::from_ref(outgoing)).await;
        results.pop().expect("one answer for one mail")
    }

    /// The mails of a batch in writes of up to [`MAILS_PER_WRITE`], several sessions at once.
    async fn send_all(&self, outgoing: &[Outgoing<'_>]) -> Vec<Result<(), HandleError>> {
        let messages: Vec<Result<Message, HandleError>> = outgoing.iter().map(|o| self.message(o)).collect();
        let ready: Vec<(usize, &Message)> =
            messages.iter().enumerate().filter_map(|(i, m)| Some((i, m.as_ref().ok()?))).collect();
        let groups: Vec<Vec<&Message>> =
            ready.chunks(MAILS_PER_WRITE).map(|group| group.iter().map(|(_, m)| *m).collect()).collect();
        let mut sends = Vec::with_capacity(groups.len());
        for group in &groups {
            sends.push(self.send_group(group));
        }
        let sent: Vec<Vec<Result<(), HandleError>>> =
            futures::stream::iter(sends).buffered(SENDS_IN_FLIGHT).collect().await;
        let mut results: Vec<Result<(), HandleError>> =
            messages.iter().map(|m| m.as_ref().map(drop).map_err(Clone::clone)).collect();
        for ((i, _), result) in ready.iter().zip(sent.into_iter().flatten()) {
            results[*i] = result;
        }
        results
    }
}

/// Whose failure it is, once a mail is given. The mail's own (a 5xx answer to it, or lettre
/// refusing to send this message, such as an international address to a server without
/// SMTPUTF8) will not change on retry: the record is set aside. The mailbox's or the network's
/// (a 4xx answer, a lost or refused connection, a timeout) may: it is retried.
fn classify(error: lettre::transport::smtp::Error) -> HandleError {
    if is_the_mails(&error) {
        HandleError::Permanent("mail_refused", format!("mail refused: {error}"))
    } else {
        HandleError::Transient("mailbox", format!("mail not sent: {error}"))
    }
}

fn is_the_mails(error: &lettre::transport::smtp::Error) -> bool {
    error.is_permanent() || error.is_client()
}

#[cfg(test)]
mod tests {
    use shop_events::Stage;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    #[test]
    fn a_push_refused_as_it_is_is_set_aside_and_mobiles_own_failures_are_retried() {
        for (status, the_pushs) in [
            (400, true),
            (401, true),
            (403, true),
            (404, true),
            (413, true),
            (422, true),
            (408, false),
            (429, false),
            (500, false),
            (502, false),
            (503, false),
            (504, false),
        ] {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            assert_eq!(push_refused_for_itself(status), the_pushs, "{status}");
        }
    }

    /// A mailbox on a free port that speaks SMTP as told: `extensions` after EHLO, `auth` to
    /// AUTH, `rcpt` to RCPT (and 550 to a RCPT of `nobody@…`), and takes whatever DATA or BDAT
    /// it gets. A real SMTP conversation over TCP with answers the shop's own mailbox never
    /// gives (it takes every mail).
    async fn mailbox(extensions: &'static str, auth: &'static str, rcpt: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    write.write_all(b"220 scripted ESMTP\r\n").await?;
                    let mut line = String::new();
                    while {
                        line.clear();
                        read.read_line(&mut line).await? > 0
                    } {
                        let command = line.trim_end();
                        let verb = command.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                        let answer = match verb.as_str() {
                            "EHLO" => format!("250-scripted\r\n250-AUTH PLAIN\r\n{extensions}250 8BITMIME"),
                            "AUTH" => auth.to_owned(),
                            "MAIL" | "RSET" | "NOOP" => "250 OK".to_owned(),
                            "RCPT" if command.contains("<nobody@") => "550 5.1.1 no such user".to_owned(),
                            "RCPT" => rcpt.to_owned(),
                            "DATA" => {
                                write.write_all(b"354 go on\r\n").await?;
                                let mut data = String::new();
                                while {
                                    data.clear();
                                    read.read_line(&mut data).await? > 0 && data.trim_end() != "."
                                } {}
                                "250 OK queued".to_owned()
                            }
                            "BDAT" => {
                                let size: usize = command.split(' ').nth(1).unwrap_or_default().parse().unwrap();
                                read.read_exact(&mut vec![0; size]).await?;
                                "250 OK queued".to_owned()
                            }
                            "QUIT" => "221 bye".to_owned(),
                            _ => "502 not implemented".to_owned(),
                        };
                        write.write_all(format!("{answer}\r\n").as_bytes()).await?;
                    }
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        port
    }

    async fn send_to(port: u16, email: &str) -> Result<(), HandleError> {
        let mail = Mail::new("127.0.0.1", port, "Shop <shop@example.com>", "notification", "secret".into()).unwrap();
        let customer = Customer::parse("Smith (Jr): Foo", email, "+49 89 1234567").unwrap();
        let notice = Notice { stage: Stage::Created, title: "Order received".into(), body: "Thank you.".into() };
        let outgoing = Outgoing {
            id: uuid::Uuid::now_v7(),
            order_id: OrderId::new(),
            customer: &customer,
            notice: &notice,
            span: tracing::Span::none(),
        };
        mail.send(&outgoing).await
    }

    /// The mails of a batch go in one write where the mailbox chunks (RFC 3030): one refused
    /// for itself (a 550 to its recipient) is set aside alone, the others are sent, and the
    /// session stays in step: the next batch goes over the same one.
    #[tokio::test]
    async fn in_one_write_a_mail_refused_for_itself_is_set_aside_alone() {
        const CHUNKING: &str = "250-PIPELINING\r\n250-CHUNKING\r\n";
        let port = mailbox(CHUNKING, "235 2.7.0 ok", "250 OK").await;
        let mail = Mail::new("127.0.0.1", port, "Shop <shop@example.com>", "notification", "secret".into()).unwrap();
        let customers: Vec<Customer> = ["ada@example.com", "nobody@example.com", "grace@example.com"]
            .iter()
            .map(|email| Customer::parse("A customer", email, "+49 89 1234567").unwrap())
            .collect();
        let notice = Notice { stage: Stage::Created, title: "Order received".into(), body: "Thank you.".into() };
        for _ in 0..2 {
            let outgoing: Vec<Outgoing> = customers
                .iter()
                .map(|customer| Outgoing {
                    id: uuid::Uuid::now_v7(),
                    order_id: OrderId::new(),
                    customer,
                    notice: &notice,
                    span: tracing::Span::none(),
                })
                .collect();
            let sent = mail.send_all(&outgoing).await;
            assert!(
                matches!(&sent[..], [Ok(()), Err(HandleError::Permanent(..)), Ok(())]),
                "only nobody's mail is set aside: {sent:?}"
            );
            let kept = mail.kept();
            assert!(kept.len() == 1 && kept[0].chunking, "one session, kept, chunking");
        }
    }

    /// The shop's own mailbox admits 4 unauthenticated sessions per peer and closes the oldest
    /// for a newer one: mails sent all at once used to open a session each, and most were
    /// refused with a 421 (retried, so they went later, one by one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_mails_at_once_go_out_over_the_sessions_the_mailbox_admits() {
        let mut system = shop_testkit::System::start().await;
        let mut args = system.common_args();
        args.extend(["--smtp-port".to_owned(), shop_testkit::free_port().to_string()]);
        let email = shop_email::Service::build(shop_testkit::config(&args)).await.unwrap();
        let smtp_port = email.smtp_port();
        system.run(email.port(), |stop| email.run_until_stopped(stop));
        let password = system.keys().secrets().read_text(shop_platform::secrets::SMTP_PASSWORD).unwrap();
        let mail = Mail::new("127.0.0.1", smtp_port, "Shop <shop@example.com>", "notification", password).unwrap();
        let customer = Customer::parse("Ada", "ada@example.com", "+49 89 1234567").unwrap();
        let notice = Notice { stage: Stage::Created, title: "Order received".into(), body: "Thank you.".into() };
        let outgoing: Vec<Outgoing> = (0..64)
            .map(|_| Outgoing {
                id: uuid::Uuid::now_v7(),
                order_id: OrderId::new(),
                customer: &customer,
                notice: &notice,
                span: tracing::Span::none(),
            })
            .collect();
        let sent = futures::future::join_all(outgoing.iter().map(|o| mail.send(o))).await;
        let refused: Vec<String> = sent.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
        assert!(refused.is_empty(), "{} of 64 mails not sent: {:?}", refused.len(), refused.first());
        let (kept, pipelined) = {
            let kept = mail.kept();
            (kept.len(), kept.iter().filter(|session| session.pipelining).count())
        };
        assert!(kept <= SESSIONS, "at most {SESSIONS} sessions are kept");
        assert_eq!(pipelined, kept, "the mailbox offers PIPELINING, and every session uses it");

        // A batch of 40 goes in writes of 16 mails at most, over the sessions kept.
        let batch = mail.send_all(&outgoing[..40]).await;
        assert!(batch.iter().all(Result::is_ok), "{batch:?}");
        assert!(mail.kept().iter().all(|session| session.chunking), "the mailbox offers CHUNKING");
        system.stop().await;
    }

    #[tokio::test]
    async fn a_mail_refused_as_it_is_is_set_aside_and_the_mailboxs_own_failures_are_retried() {
        const UTF8: &str = "250-SMTPUTF8\r\n";
        const AUTHENTICATED: &str = "235 2.7.0 ok";
        let taken = mailbox(UTF8, AUTHENTICATED, "250 OK").await;
        assert!(send_to(taken, "user@münchen.de").await.is_ok());

        const PIPELINING: &str = "250-PIPELINING\r\n250-SMTPUTF8\r\n";
        assert!(send_to(mailbox(PIPELINING, AUTHENTICATED, "250 OK").await, "user@münchen.de").await.is_ok());
        const CHUNKING: &str = "250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n";
        assert!(send_to(mailbox(CHUNKING, AUTHENTICATED, "250 OK").await, "user@münchen.de").await.is_ok());

        let cases = [
            // The mail's own: a 5xx to it, or an address the mailbox cannot take.
            (
                "RCPT 550, pipelined",
                mailbox(PIPELINING, AUTHENTICATED, "550 5.1.1 no such user").await,
                "ada@example.com",
                true,
            ),
            (
                "RCPT 450, pipelined",
                mailbox(PIPELINING, AUTHENTICATED, "450 4.2.1 try later").await,
                "ada@example.com",
                false,
            ),
            (
                "RCPT 550, chunked",
                mailbox(CHUNKING, AUTHENTICATED, "550 5.1.1 no such user").await,
                "ada@example.com",
                true,
            ),
            (
                "RCPT 450, chunked",
                mailbox(CHUNKING, AUTHENTICATED, "450 4.2.1 try later").await,
                "ada@example.com",
                false,
            ),
            (
                "RCPT 550 (no such mailbox)",
                mailbox(UTF8, AUTHENTICATED, "550 5.1.1 no such user").await,
                "ada@example.com",
                true,
            ),
            (
                "RCPT 553 (address not allowed)",
                mailbox(UTF8, AUTHENTICATED, "553 5.1.3 bad address").await,
                "ada@example.com",
                true,
            ),
            (
                "an international address, no SMTPUTF8",
                mailbox("", AUTHENTICATED, "250 OK").await,
                "user@münchen.de",
                true,
            ),
            // The mailbox's: a 4xx, or it will not let the sender in (its configuration).
            (
                "RCPT 450 (mailbox busy)",
                mailbox(UTF8, AUTHENTICATED, "450 4.2.1 try later").await,
                "ada@example.com",
                false,
            ),
            (
                "RCPT 451 (local error)",
                mailbox(UTF8, AUTHENTICATED, "451 4.3.0 try later").await,
                "ada@example.com",
                false,
            ),
            ("AUTH 535 (credentials refused)", mailbox(UTF8, "535 5.7.8 no", "250 OK").await, "ada@example.com", false),
            ("AUTH 454 (temporary)", mailbox(UTF8, "454 4.7.0 later", "250 OK").await, "ada@example.com", false),
        ];
        for (case, port, email, the_mails) in cases {
            match send_to(port, email).await {
                Err(HandleError::Permanent(_, why)) => {
                    assert!(the_mails, "{case}: set aside, should be retried: {why}")
                }
                Err(HandleError::Transient(_, why)) => {
                    assert!(!the_mails, "{case}: retried, should be set aside: {why}")
                }
                Ok(()) => panic!("{case}: sent"),
            }
        }
        // Nobody listening: the mailbox is down, retried.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(matches!(send_to(port, "ada@example.com").await, Err(HandleError::Transient(..))));
    }
}
