//! A small SMTP server (RFC 5321: EHLO/HELO, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT; 8BITMIME,
//! SMTPUTF8 for international addresses such as `user@münchen.de`, RFC 6531, and PIPELINING,
//! RFC 2920: answers are written when no further command is waiting to be read), enough to
//! receive mail from any standard client such as lettre. Only the shop's sender may
//! submit: it authenticates (AUTH PLAIN or LOGIN, RFC 4954) with the configured password before
//! any mail. No relay, no TLS: it is the customers' mailbox on the system's private network.
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
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use crate::mailbox::Mailbox;
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

#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

type Lines = FramedRead<tokio::net::tcp::OwnedReadHalf, LinesCodec>;
type Writer = BufWriter<tokio::net::tcp::OwnedWriteHalf>;

async fn session(stream: TcpStream, mailbox: Mailbox, sender: &Sender, waiting: Waiting) -> anyhow::Result<()> {
    let (read, write) = stream.into_split();
    let mut write = BufWriter::new(write);
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(4096));
    send(&mut write, "220 shop-mailbox ESMTP ready").await?;
    let mut waiting = Some(waiting);
    let authenticate_by = Instant::now() + AUTHENTICATE_WITHIN;
    let mut idle_until = Instant::now() + IDLE;
    let mut failures = 0;
    let mut envelope = Envelope::default();
    loop {
        let deadline = if waiting.is_some() { authenticate_by.min(idle_until) } else { idle_until };
        let evicted = waiting.as_ref().map(|w| w.evicted.clone()).unwrap_or_default();
        let line = tokio::select! {
            line = next_line(&mut lines, &mut write, deadline) => line?,
            _ = evicted.cancelled(), if waiting.is_some() => {
                return close(&mut write, "421 4.7.0 too many connections waiting to authenticate, closing").await;
            }
        };
        let Some(line) = line else {
            let reason = if waiting.is_some() { "authenticate first" } else { "idle for too long" };
            return close(&mut write, format!("421 4.4.2 {reason}, closing")).await;
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        if !matches!(verb.as_str(), "NOOP") {
            idle_until = Instant::now() + IDLE;
        }
        let authenticated = waiting.is_none();
        let answer = match verb.as_str() {
            "EHLO" => "250-shop-mailbox\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n\
                         250 SIZE 1048576"
                .to_owned(),
            "HELO" => "250 shop-mailbox".to_owned(),
            "AUTH" if authenticated => "503 5.5.1 already authenticated".to_owned(),
            "AUTH" => match authenticate(rest, &mut lines, &mut write, deadline).await? {
                Some((user, password)) if sender.accepts(&user, &password) => {
                    waiting = None;
                    "235 2.7.0 authentication succeeded".to_owned()
                }
                Some(_) => {
                    failures += 1;
                    if failures >= MAX_AUTH_FAILURES {
                        return close(&mut write, "421 4.7.0 too many failed attempts, closing").await;
                    }
                    "535 5.7.8 authentication credentials invalid".to_owned()
                }
                None => "501 5.5.2 expected AUTH PLAIN or AUTH LOGIN with base64 credentials".to_owned(),
            },
            "MAIL" | "RCPT" | "DATA" if !authenticated => "530 5.7.0 authentication required".to_owned(),
            "MAIL" => match address(rest, "FROM:") {
                Some(from) => {
                    envelope = Envelope { from: Some(from), to: Vec::new() };
                    "250 OK".to_owned()
                }
                None => "501 expected MAIL FROM:<address>".to_owned(),
            },
            "RCPT" if envelope.from.is_none() => "503 MAIL first".to_owned(),
            "RCPT" => match address(rest, "TO:") {
                Some(to) if !to.is_empty() => {
                    envelope.to.push(to);
                    "250 OK".to_owned()
                }
                _ => "501 expected RCPT TO:<address>".to_owned(),
            },
            "DATA" if envelope.to.is_empty() => "503 RCPT first".to_owned(),
            "DATA" => {
                send(&mut write, "354 end data with <CR><LF>.<CR><LF>").await?;
                let Some(data) = read_data(&mut lines, &mut write).await? else { return Ok(()) };
                let from = envelope.from.take().unwrap_or_default();
                let to = std::mem::take(&mut envelope.to);
                match data {
                    Err(()) => "552 message too large".to_owned(),
                    Ok(data) => match mailbox.deliver(&from, &to, data.as_bytes()).await {
                        Ok(id) => format!("250 OK queued as {id}"),
                        Err(error) => {
                            tracing::warn!(%error, "Cannot store a mail; the sender will retry");
                            "451 cannot store the message now, try again".to_owned()
                        }
                    },
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 OK".to_owned()
            }
            "NOOP" => "250 OK".to_owned(),
            "QUIT" => return close(&mut write, "221 bye").await,
            _ => "502 command not implemented".to_owned(),
        };
        send(&mut write, answer).await?;
    }
}

/// The next line before `deadline`; None when the deadline passed or the peer went away.
/// The answers written so far go out first unless a whole further line is already here (a
/// pipelining client sent several commands at once and reads their answers together).
async fn next_line(lines: &mut Lines, write: &mut Writer, deadline: Instant) -> anyhow::Result<Option<String>> {
    if !lines.read_buffer().contains(&b'\n') {
        write.flush().await?;
    }
    match tokio::time::timeout_at(deadline, lines.next()).await {
        Err(_) | Ok(None) => Ok(None),
        Ok(Some(line)) => Ok(Some(line?)),
    }
}

/// The message after DATA, up to the lone "."; Err(()) when it is too large; None when the
/// peer went away or stalled.
async fn read_data(lines: &mut Lines, write: &mut Writer) -> anyhow::Result<Option<Result<String, ()>>> {
    let mut data = String::new();
    let mut too_big = false;
    loop {
        let Some(line) = next_line(lines, write, Instant::now() + IDLE).await? else { return Ok(None) };
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
    write: &mut Writer,
    deadline: Instant,
) -> anyhow::Result<Option<(String, String)>> {
    let (mechanism, initial) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
    let mut ask = async |prompt: &str| -> anyhow::Result<Option<String>> {
        send(write, format!("334 {prompt}")).await?;
        next_line(lines, write, deadline).await
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

/// Queues an answer; it goes out before the session next waits for the client.
async fn send(write: &mut Writer, text: impl AsRef<str>) -> std::io::Result<()> {
    write.write_all(text.as_ref().as_bytes()).await?;
    write.write_all(b"\r\n").await
}

/// The last answer of a session, written out now.
async fn close(write: &mut Writer, text: impl AsRef<str>) -> anyhow::Result<()> {
    send(write, text).await?;
    write.flush().await?;
    Ok(())
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
