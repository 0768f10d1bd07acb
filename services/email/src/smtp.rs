//! A small SMTP server (RFC 5321: EHLO/HELO, AUTH, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT;
//! 8BITMIME, SMTPUTF8 for international addresses such as `user@münchen.de`, RFC 6531,
//! PIPELINING, RFC 2920: answers are written when no further command is waiting to be read, and
//! CHUNKING, RFC 3030: BDAT, so that a client can send many mails in one write and read all
//! their answers at once), enough to receive mail from any standard client such as lettre. Only
//! the shop's sender may submit: it authenticates (AUTH PLAIN or LOGIN, RFC 4954) with the
//! configured password before any mail. No relay, no TLS: it is the customers' mailbox on the
//! system's private network.
//!
//! Bounded so that nobody without the password can stop the mail: sessions that have not
//! authenticated are few (in all and per peer) and must authenticate within seconds; an idle
//! session ends after a minute, and NOOP does not count as activity.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use crate::mailbox::{Delivery, Mailbox, StoreError};
use shop_platform::Shutdown;

/// The largest message accepted.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// The user the shop's sender authenticates as.
pub const SENDER: &str = shop_events::service::NOTIFICATION;
/// Sessions open at once.
const MAX_CONNECTIONS: usize = 256;
/// Sessions not yet authenticated, in all and from one peer address.
const MAX_UNAUTHENTICATED: usize = 16;
const MAX_UNAUTHENTICATED_PER_PEER: usize = 4;
/// A session must authenticate within this long of connecting.
const AUTHENTICATE_WITHIN: Duration = Duration::from_secs(10);
/// A session that does nothing for this long (NOOP is nothing) is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Failed AUTH attempts before the session is closed.
const MAX_AUTH_FAILURES: u32 = 3;

/// The credential the mailbox accepts.
#[derive(Clone)]
pub struct Sender {
    pub user: String,
    pub password: String,
}

impl Sender {
    fn accepts(&self, user: &str, password: &str) -> bool {
        let user_ok = user.as_bytes().ct_eq(self.user.as_bytes());
        let password_ok = password.as_bytes().ct_eq(self.password.as_bytes());
        bool::from(user_ok & password_ok)
    }
}

/// Admission of sessions that have not authenticated yet: a few per peer and a few in all.
/// When a new one would pass the limit, the oldest waiting one (from that peer, or of all) is
/// closed instead of refusing the new one: the shop's sender authenticates within a round trip
/// of connecting, so sessions that only wait are the ones that go, even when the sender and
/// the flood share an address (one machine, loopback).
#[derive(Clone)]
struct Doorway {
    waiting: Arc<Mutex<WaitingRoom>>,
}

#[derive(Default)]
struct WaitingRoom {
    next: u64,
    /// Oldest first: (ticket, peer, how to close it).
    sessions: VecDeque<(u64, IpAddr, CancellationToken)>,
}

/// A place at the doorway, given back when the session authenticates or ends.
struct Waiting {
    ticket: u64,
    room: Arc<Mutex<WaitingRoom>>,
    /// Cancelled when a newer session needs the place.
    evicted: CancellationToken,
}

impl Doorway {
    fn new() -> Self {
        Self { waiting: Arc::default() }
    }

    fn enter(&self, peer: IpAddr) -> Waiting {
        let mut room = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_peer = room.sessions.iter().filter(|(_, p, _)| *p == peer).count();
        let evict = if from_peer >= MAX_UNAUTHENTICATED_PER_PEER {
            room.sessions.iter().position(|(_, p, _)| *p == peer)
        } else if room.sessions.len() >= MAX_UNAUTHENTICATED {
            Some(0)
        } else {
            None
        };
        if let Some((_, evicted_peer, token)) = evict.and_then(|i| room.sessions.remove(i)) {
            tracing::debug!(peer = %evicted_peer, "An unauthenticated SMTP session gives way to a newer one");
            token.cancel();
        }
        room.next += 1;
        let (ticket, evicted) = (room.next, CancellationToken::new());
        room.sessions.push_back((ticket, peer, evicted.clone()));
        Waiting { ticket, room: self.waiting.clone(), evicted }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut room = self.room.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        room.sessions.retain(|(ticket, _, _)| *ticket != self.ticket);
    }
}

pub async fn serve(listener: TcpListener, mailbox: Mailbox, sender: Sender, shutdown: Shutdown) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let doorway = Doorway::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "Cannot accept an SMTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return Ok(()),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "Too many SMTP connections; refusing one");
            let _ = stream.write_all(b"421 4.7.0 too many connections, try again later\r\n").await;
            continue;
        };
        let waiting = doorway.enter(peer.ip());
        let (mailbox, sender) = (mailbox.clone(), sender.clone());
        tokio::spawn(async move {
            if let Err(error) = session(stream, mailbox, &sender, waiting).await {
                tracing::debug!(%peer, %error, "SMTP session ended with an error");
            }
            drop(permit);
        });
    }
}

/// The mail being received: its sender, recipients and, with BDAT, the chunks so far.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
    chunks: Vec<u8>,
}

impl Envelope {
    fn has_recipients(&self) -> bool {
        self.from.is_some() && !self.to.is_empty()
    }
}

type Lines = FramedRead<tokio::net::tcp::OwnedReadHalf, LinesCodec>;

async fn session(stream: TcpStream, mailbox: Mailbox, sender: &Sender, waiting: Waiting) -> anyhow::Result<()> {
    let (read, write) = stream.into_split();
    let mut answers = Answers { write: BufWriter::new(write), queue: VecDeque::new() };
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(4096));
    answers.push("220 shop-mailbox ESMTP ready").await?;
    let mut waiting = Some(waiting);
    let authenticate_by = Instant::now() + AUTHENTICATE_WITHIN;
    let mut idle_until = Instant::now() + IDLE;
    let mut failures = 0;
    let mut envelope = Envelope::default();
    loop {
        let deadline = if waiting.is_some() { authenticate_by.min(idle_until) } else { idle_until };
        let evicted = waiting.as_ref().map(|w| w.evicted.clone()).unwrap_or_default();
        let line = tokio::select! {
            line = next_line(&mut lines, &mut answers, deadline) => line?,
            _ = evicted.cancelled(), if waiting.is_some() => {
                return answers.close("421 4.7.0 too many connections waiting to authenticate, closing").await;
            }
        };
        let Some(line) = line else {
            let reason = if waiting.is_some() { "authenticate first" } else { "idle for too long" };
            return answers.close(format!("421 4.4.2 {reason}, closing")).await;
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        if !matches!(verb.as_str(), "NOOP") {
            idle_until = Instant::now() + IDLE;
        }
        let authenticated = waiting.is_none();
        let answer: Answer = match verb.as_str() {
            "EHLO" => "250-shop-mailbox\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250-CHUNKING\r\n\
                       250-AUTH PLAIN LOGIN\r\n250 SIZE 1048576"
                .into(),
            "HELO" => "250 shop-mailbox".into(),
            "AUTH" if authenticated => "503 5.5.1 already authenticated".into(),
            "AUTH" => match authenticate(rest, &mut lines, &mut answers, deadline).await? {
                Some((user, password)) if sender.accepts(&user, &password) => {
                    waiting = None;
                    "235 2.7.0 authentication succeeded".into()
                }
                Some(_) => {
                    failures += 1;
                    if failures >= MAX_AUTH_FAILURES {
                        return answers.close("421 4.7.0 too many failed attempts, closing").await;
                    }
                    "535 5.7.8 authentication credentials invalid".into()
                }
                None => "501 5.5.2 expected AUTH PLAIN or AUTH LOGIN with base64 credentials".into(),
            },
            // The octets after BDAT cannot be told from commands: a chunk that will not be
            // taken is still read (RFC 3030), except before AUTH, where the session ends.
            "BDAT" if !authenticated => return answers.close("530 5.7.0 authentication required, closing").await,
            "MAIL" | "RCPT" | "DATA" if !authenticated => "530 5.7.0 authentication required".into(),
            "MAIL" => match address(rest, "FROM:") {
                Some(from) => {
                    envelope = Envelope { from: Some(from), ..Envelope::default() };
                    "250 OK".into()
                }
                None => "501 expected MAIL FROM:<address>".into(),
            },
            "RCPT" if envelope.from.is_none() => "503 MAIL first".into(),
            "RCPT" => match address(rest, "TO:") {
                Some(to) if !to.is_empty() => {
                    envelope.to.push(to);
                    "250 OK".into()
                }
                _ => "501 expected RCPT TO:<address>".into(),
            },
            "DATA" if !envelope.has_recipients() => "503 RCPT first".into(),
            "DATA" if !envelope.chunks.is_empty() => "503 5.5.1 a BDAT mail is under way: RSET first".into(),
            "DATA" => {
                answers.push("354 end data with <CR><LF>.<CR><LF>").await?;
                let Some(data) = read_data(&mut lines, &mut answers).await? else { return Ok(()) };
                let envelope = std::mem::take(&mut envelope);
                match data {
                    Err(()) => "552 message too large".into(),
                    Ok(data) => receive(&mailbox, envelope, data.into_bytes(), "DATA").await,
                }
            }
            "BDAT" => {
                let Some((size, last)) = chunk_size(rest) else {
                    return answers.close("501 5.5.4 expected BDAT <size> [LAST], closing").await;
                };
                let room = if envelope.has_recipients() { MAX_MESSAGE - envelope.chunks.len() } else { 0 };
                let kept = read_chunk(&mut lines, size, room, &mut envelope.chunks, idle_until).await?;
                if !envelope.has_recipients() {
                    "503 5.5.1 MAIL and RCPT first".into()
                } else if !kept {
                    envelope = Envelope::default();
                    "552 5.3.4 message too large".into()
                } else if !last {
                    format!("250 2.0.0 {size} octets received").into()
                } else {
                    let mut envelope = std::mem::take(&mut envelope);
                    let message = std::mem::take(&mut envelope.chunks);
                    receive(&mailbox, envelope, message, "BDAT").await
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 OK".into()
            }
            "NOOP" => "250 OK".into(),
            "QUIT" => return answers.close("221 bye").await,
            _ => "502 command not implemented".into(),
        };
        answers.push(answer).await?;
    }
}

/// Hands a mail to the mailbox; its answer waits until it is stored.
async fn receive(mailbox: &Mailbox, envelope: Envelope, message: Vec<u8>, command: &str) -> Answer {
    let from = envelope.from.unwrap_or_default();
    match mailbox.receive(&from, &envelope.to, &message, command).await {
        Ok(delivery) => Answer::Stored(delivery),
        Err(error) => store_failed(&error).into(),
    }
}

fn store_failed(error: &StoreError) -> String {
    tracing::warn!(%error, "Cannot store a mail; the sender will retry");
    "451 cannot store the message now, try again".to_owned()
}

/// An answer of the session: now, or once a mail is stored.
enum Answer {
    Text(String),
    Stored(Delivery),
}

impl<T: Into<String>> From<T> for Answer {
    fn from(text: T) -> Self {
        Answer::Text(text.into())
    }
}

/// The session's answers, in the order of the commands. An answer waiting for its mail to be
/// stored holds back those after it; all go out when the client waits for them (nothing
/// further to read), so the mails of one pipelined write are stored together.
struct Answers {
    write: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    queue: VecDeque<Answer>,
}

impl Answers {
    async fn push(&mut self, answer: impl Into<Answer>) -> std::io::Result<()> {
        match answer.into() {
            Answer::Text(text) if self.queue.is_empty() => self.write_line(&text).await,
            answer => {
                self.queue.push_back(answer);
                Ok(())
            }
        }
    }

    /// Waits for the mails answered so far to be stored and writes every answer out.
    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(answer) = self.queue.pop_front() {
            let text = match answer {
                Answer::Text(text) => text,
                Answer::Stored(delivery) => match delivery.stored().await {
                    Ok(id) => format!("250 OK queued as {id}"),
                    Err(error) => store_failed(&error),
                },
            };
            self.write_line(&text).await?;
        }
        self.write.flush().await
    }

    async fn write_line(&mut self, text: &str) -> std::io::Result<()> {
        self.write.write_all(text.as_bytes()).await?;
        self.write.write_all(b"\r\n").await
    }

    /// The last answer of a session, written out now.
    async fn close(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.push(text.into()).await?;
        self.flush().await?;
        Ok(())
    }
}

/// The next line before `deadline`; None when the deadline passed or the peer went away.
/// The answers so far go out first unless a whole further line is already here (a pipelining
/// client sent several commands at once and reads their answers together).
async fn next_line(lines: &mut Lines, answers: &mut Answers, deadline: Instant) -> anyhow::Result<Option<String>> {
    if !lines.read_buffer().contains(&b'\n') {
        answers.flush().await?;
    }
    match tokio::time::timeout_at(deadline, lines.next()).await {
        Err(_) | Ok(None) => Ok(None),
        Ok(Some(line)) => Ok(Some(line?)),
    }
}

/// `1024 LAST` → (1024, true).
fn chunk_size(rest: &str) -> Option<(usize, bool)> {
    let mut words = rest.split_ascii_whitespace();
    let size = words.next()?.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// Reads the `size` octets of a BDAT chunk: appended to `into` when they fit in `room`, read
/// and dropped when not; says whether they were kept. An error when the peer goes away or
/// stalls until `deadline`.
async fn read_chunk(
    lines: &mut Lines,
    size: usize,
    room: usize,
    into: &mut Vec<u8>,
    deadline: Instant,
) -> anyhow::Result<bool> {
    let keep = size <= room;
    // What the line reader holds already comes first. It has just returned the BDAT line and
    // looked no further, so taking bytes from its buffer leaves it in step.
    let buffered = lines.read_buffer_mut();
    let head = buffered.split_to(buffered.len().min(size));
    if keep {
        into.extend_from_slice(&head);
    }
    let left = (size - head.len()) as u64;
    let mut rest = lines.get_mut().take(left);
    let read = async {
        if keep {
            rest.read_to_end(into).await.map(|n| n as u64)
        } else {
            tokio::io::copy(&mut rest, &mut tokio::io::sink()).await
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(read)) if read == left => Ok(keep),
        Ok(Ok(_)) => anyhow::bail!("the peer went away within a BDAT chunk"),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => anyhow::bail!("the peer stalled within a BDAT chunk"),
    }
}

/// The message after DATA, up to the lone "."; Err(()) when it is too large; None when the
/// peer went away or stalled.
async fn read_data(lines: &mut Lines, answers: &mut Answers) -> anyhow::Result<Option<Result<String, ()>>> {
    let mut data = String::new();
    let mut too_big = false;
    loop {
        let Some(line) = next_line(lines, answers, Instant::now() + IDLE).await? else { return Ok(None) };
        if line == "." {
            return Ok(Some(if too_big { Err(()) } else { Ok(data) }));
        }
        let line = line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line);
        if data.len() + line.len() + 2 > MAX_MESSAGE {
            too_big = true;
        } else {
            data.push_str(line);
            data.push_str("\r\n");
        }
    }
}

/// The (user, password) of an AUTH command (`rest` is what follows AUTH), asking for what
/// the command did not carry; None when the mechanism or the encoding is not understood.
async fn authenticate(
    rest: &str,
    lines: &mut Lines,
    answers: &mut Answers,
    deadline: Instant,
) -> anyhow::Result<Option<(String, String)>> {
    let (mechanism, initial) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
    let mut ask = async |prompt: &str| -> anyhow::Result<Option<String>> {
        answers.push(format!("334 {prompt}")).await?;
        next_line(lines, answers, deadline).await
    };
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let response = if initial.is_empty() { ask("").await? } else { Some(initial.to_owned()) };
            Ok(response.and_then(|r| decode(&r)).and_then(|plain| {
                let mut parts = plain.split('\0');
                let (_authorization, user, password) = (parts.next()?, parts.next()?, parts.next()?);
                Some((user.to_owned(), password.to_owned()))
            }))
        }
        "LOGIN" => {
            let user = if initial.is_empty() { ask("VXNlcm5hbWU6").await? } else { Some(initial.to_owned()) };
            let Some(user) = user.and_then(|u| decode(&u)) else { return Ok(None) };
            let password = ask("UGFzc3dvcmQ6").await?.and_then(|p| decode(&p));
            Ok(password.map(|password| (user, password)))
        }
        _ => Ok(None),
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// `FROM:<a@b.c> SIZE=12` → `a@b.c`.
fn address(rest: &str, prefix: &str) -> Option<String> {
    let rest = rest.trim();
    if rest.len() < prefix.len() || !rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let value = rest[prefix.len()..].trim();
    let start = value.find('<')?;
    let end = value[start..].find('>')? + start;
    Some(value[start + 1..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_read_with_their_last_mark() {
        assert_eq!(chunk_size("1024 LAST"), Some((1024, true)));
        assert_eq!(chunk_size("0 last"), Some((0, true)));
        assert_eq!(chunk_size("17"), Some((17, false)));
        assert_eq!(chunk_size(""), None);
        assert_eq!(chunk_size("-1 LAST"), None);
        assert_eq!(chunk_size("12 FIRST"), None);
        assert_eq!(chunk_size("12 LAST more"), None);
    }

    #[test]
    fn addresses_are_read_from_their_angle_brackets() {
        assert_eq!(address("FROM:<a@b.c> SIZE=10", "FROM:"), Some("a@b.c".into()));
        assert_eq!(address("to: <x@y.z>", "TO:"), Some("x@y.z".into()));
        assert_eq!(address("FROM:<>", "FROM:"), Some(String::new()));
        assert_eq!(address("FROM a@b.c", "FROM:"), None);
    }

    #[test]
    fn only_the_configured_sender_is_accepted() {
        let sender = Sender { user: "notification".into(), password: "s3cret".into() };
        assert!(sender.accepts("notification", "s3cret"));
        assert!(!sender.accepts("notification", "s3cre"));
        assert!(!sender.accepts("mobile", "s3cret"));
    }

    #[test]
    fn a_new_session_over_the_limit_closes_the_oldest_waiting_one_of_its_peer() {
        let doorway = Doorway::new();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_UNAUTHENTICATED_PER_PEER).map(|_| doorway.enter(peer)).collect();
        let other = doorway.enter("10.0.0.2".parse().unwrap());
        let newest = doorway.enter(peer);
        assert!(held[0].evicted.is_cancelled(), "the oldest of that peer gives way");
        assert!(held[1..].iter().all(|w| !w.evicted.is_cancelled()) && !other.evicted.is_cancelled());
        drop(held);
        assert!(!newest.evicted.is_cancelled());
        let crowd: Vec<_> =
            (0..MAX_UNAUTHENTICATED).map(|i| doorway.enter(IpAddr::from([10, 1, 0, i as u8]))).collect();
        assert!(other.evicted.is_cancelled() && newest.evicted.is_cancelled(), "the oldest of all give way to a crowd");
        assert!(crowd.iter().all(|w| !w.evicted.is_cancelled()));
    }
}
