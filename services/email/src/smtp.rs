//! A small SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), enough to
//! receive mail from any standard client such as lettre. No relay, no auth, no TLS: it is
//! the customer's mailbox on a private network, not a mail exchanger.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::mailbox::Mailbox;
use shop_platform::Shutdown;

/// The largest message accepted.
pub const MAX_MESSAGE: usize = 1024 * 1024;
const MAX_CONNECTIONS: usize = 64;
const IDLE: Duration = Duration::from_secs(60);

pub async fn serve(listener: TcpListener, mailbox: Mailbox, shutdown: Shutdown) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.wait() => return Ok(()),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "Too many SMTP connections; refusing one");
            let mut stream = stream;
            let _ = stream.write_all(b"421 too busy, try again later\r\n").await;
            continue;
        };
        let mailbox = mailbox.clone();
        tokio::spawn(async move {
            if let Err(error) = session(stream, mailbox).await {
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

async fn session(stream: TcpStream, mailbox: Mailbox) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(4096));
    send(&mut write, "220 shop-mailbox ESMTP ready").await?;
    let mut envelope = Envelope::default();
    loop {
        let line = match tokio::time::timeout(IDLE, lines.next()).await {
            Err(_) => {
                send(&mut write, "421 idle for too long").await?;
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Ok(Some(line)) => line?,
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-shop-mailbox\r\n250-8BITMIME\r\n250 SIZE 1048576".to_owned(),
            "HELO" => "250 shop-mailbox".to_owned(),
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
                let mut data = String::new();
                let mut too_big = false;
                loop {
                    let line = match tokio::time::timeout(IDLE, lines.next()).await {
                        Ok(Some(line)) => line?,
                        _ => return Ok(()),
                    };
                    if line == "." {
                        break;
                    }
                    let line = line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line);
                    if data.len() + line.len() + 2 > MAX_MESSAGE {
                        too_big = true;
                    } else {
                        data.push_str(line);
                        data.push_str("\r\n");
                    }
                }
                let from = envelope.from.take().unwrap_or_default();
                let to = std::mem::take(&mut envelope.to);
                if too_big {
                    "552 message too large".to_owned()
                } else {
                    match mailbox.deliver(&from, &to, data.as_bytes()).await {
                        Ok(id) => format!("250 OK queued as {id}"),
                        Err(error) => {
                            tracing::warn!(%error, "Cannot store a mail; the sender will retry");
                            "451 cannot store the message now, try again".to_owned()
                        }
                    }
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 OK".to_owned()
            }
            "NOOP" => "250 OK".to_owned(),
            "QUIT" => {
                send(&mut write, "221 bye").await?;
                return Ok(());
            }
            _ => "502 command not implemented".to_owned(),
        };
        send(&mut write, answer).await?;
    }
}

async fn send(write: &mut tokio::net::tcp::OwnedWriteHalf, text: impl AsRef<str>) -> std::io::Result<()> {
    write.write_all(format!("{}\r\n", text.as_ref()).as_bytes()).await
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
    use super::address;

    #[test]
    fn addresses_are_read_from_their_angle_brackets() {
        assert_eq!(address("FROM:<a@b.c> SIZE=10", "FROM:"), Some("a@b.c".into()));
        assert_eq!(address("to: <x@y.z>", "TO:"), Some("x@y.z".into()));
        assert_eq!(address("FROM:<>", "FROM:"), Some(String::new()));
        assert_eq!(address("FROM a@b.c", "FROM:"), None);
    }
}
