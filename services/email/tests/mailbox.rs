//! The mailbox on its own, in this process: built from its flags on port 0 with a fresh SQLite
//! and test keys; mail comes in over real SMTP (lettre, AUTH PLAIN as notification sends it)
//! and is read back through the mailbox's own API, as the customer and the operator read it.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use serde_json::Value;
use shop_events::{api, service, OrderId};
use shop_platform::auth::Role;
use shop_testkit::{config, free_port, System};

struct Mailbox {
    system: System,
    http: u16,
    smtp: u16,
}

impl Mailbox {
    async fn start() -> Mailbox {
        let mut system = System::start().await;
        let mut args = system.common_args();
        args.extend(["--smtp-port".to_owned(), free_port().to_string()]);
        let email = shop_email::Service::build(config(&args)).await.unwrap();
        let smtp = email.smtp_port();
        let http = system.run(email.port(), |stop| email.run_until_stopped(stop));
        Mailbox { system, http, smtp }
    }

    async fn connect(&self) -> AsyncSmtpConnection {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.smtp)).await.unwrap();
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default()).await.unwrap()
    }

    /// A mail about `order` to `to`, sent as notification sends it, with `password`.
    async fn send(&self, password: &str, order: OrderId, to: &str, subject: &str) -> Result<(), String> {
        let mut connection = self.signed_in(password).await?;
        let message = mail(order, to, subject, None);
        connection.send(message.envelope(), &message.formatted()).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// A session signed in as notification with `password`.
    async fn signed_in(&self, password: &str) -> Result<AsyncSmtpConnection, String> {
        let mut connection = self.connect().await;
        let credentials = Credentials::new(service::NOTIFICATION.to_owned(), password.to_owned());
        connection.auth(&[Mechanism::Plain], &credentials).await.map_err(|e| e.to_string())?;
        Ok(connection)
    }

    fn password(&self) -> String {
        self.system.keys().secrets().read_text(shop_platform::secrets::SMTP_PASSWORD).unwrap()
    }

    async fn emails(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let reply = self.system.get(self.http, &format!("/api/emails{query}"), token).await;
        (reply.status, reply.body)
    }
}

/// A mail about `order` to `to` as notification writes it, with `message_id` if given.
fn mail(order: OrderId, to: &str, subject: &str, message_id: Option<String>) -> Message {
    Message::builder()
        .from("Shop <shop@example.com>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .message_id(message_id)
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(api::ORDER_MAIL_HEADER), order.to_string()))
        .body("Hello".to_owned())
        .unwrap()
}

/// Mails of many sessions at once are stored together (one transaction for those that wait
/// together): each once, a resend of the same Message-ID included, and each session is told
/// only after its mail is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_of_many_sessions_at_once_are_each_stored_once() {
    let mailbox = Mailbox::start().await;
    let password = mailbox.password();
    let orders: Vec<OrderId> = (0..48).map(|_| OrderId::new()).collect();
    // Signed in one after the other (the mailbox lets only a few sessions of one peer wait to
    // authenticate), then all sending at once.
    let mut connections = Vec::new();
    for _ in orders.chunks(6) {
        connections.push(mailbox.signed_in(&password).await.unwrap());
    }
    let sessions = orders.chunks(6).zip(connections).map(|(orders, mut connection)| {
        async move {
            for order in orders {
                // Sent twice with one Message-ID, as notification resends after a lost answer.
                let message = mail(*order, "ada@example.com", "Order received", Some(format!("<{order}@shop.test>")));
                for _ in 0..2 {
                    connection.send(message.envelope(), &message.formatted()).await.expect("the mail is accepted");
                }
            }
        }
    });
    futures::future::join_all(sessions).await;

    // Every session was answered after its mails were stored: all are there now.
    let operator = mailbox.system.keys().staff(Role::Operator);
    let (status, all) = mailbox.emails("", Some(&operator)).await;
    assert_eq!(status, 200, "{all}");
    let mut stored: Vec<&str> = all.as_array().unwrap().iter().map(|m| m["orderId"].as_str().unwrap()).collect();
    stored.sort_unstable();
    let mut sent: Vec<String> = orders.iter().map(ToString::to_string).collect();
    sent.sort_unstable();
    assert_eq!(stored, sent, "each mail stored once");
    mailbox.system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_from_the_shop_reaches_only_its_customer_and_the_operator() {
    let mailbox = Mailbox::start().await;
    let (order, other_order) = (OrderId::new(), OrderId::new());
    mailbox.send(&mailbox.password(), order, "Ada <ada@example.com>", "Order received").await.unwrap();
    mailbox.send(&mailbox.password(), other_order, "grace@example.com", "Order received").await.unwrap();

    let ada = mailbox.system.keys().customer("ADA@example.com");
    let (status, mails) = mailbox.emails(&format!("?orderId={order}"), Some(&ada)).await;
    assert_eq!(status, 200, "{mails}");
    let mails = mails.as_array().unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["orderId"], order.to_string());
    assert_eq!(mails[0]["subject"], "Order received");
    assert!(mails[0]["to"].as_str().unwrap().contains("ada@example.com"), "{mails:?}");

    // Ada sees her mail and nobody else's, even asking for another order's.
    let (_, all) = mailbox.emails("", Some(&ada)).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let (_, theirs) = mailbox.emails(&format!("?orderId={other_order}"), Some(&ada)).await;
    assert_eq!(theirs, Value::Array(vec![]));

    // The operator sees everyone's; the courier and anonymous callers nothing.
    let operator = mailbox.system.keys().staff(Role::Operator);
    let (status, all) = mailbox.emails("", Some(&operator)).await;
    assert_eq!((status, all.as_array().unwrap().len()), (200, 2), "{all}");
    let (status, _) = mailbox.emails("", Some(&mailbox.system.keys().staff(Role::Courier))).await;
    assert_eq!(status, 403);
    let (status, _) = mailbox.emails("", None).await;
    assert_eq!(status, 401);
    mailbox.system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_without_the_senders_password_is_refused_and_not_stored() {
    let mailbox = Mailbox::start().await;
    let order = OrderId::new();
    let refused = mailbox.send("not the password", order, "ada@example.com", "Pay here").await;
    assert!(refused.is_err(), "a wrong password is refused");

    // Without AUTH at all, the mail transaction itself is refused.
    let mut connection = mailbox.connect().await;
    let message = Message::builder()
        .from("x@example.com".parse().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject("Pay here")
        .body("phishing".to_owned())
        .unwrap();
    assert!(connection.send(message.envelope(), &message.formatted()).await.is_err(), "no AUTH, no mail");

    let operator = mailbox.system.keys().staff(Role::Operator);
    let (_, all) = mailbox.emails("", Some(&operator)).await;
    assert_eq!(all, Value::Array(vec![]), "nothing was stored");
    mailbox.system.stop().await;
}

/// A raw SMTP session on the mailbox, signed in as notification: what a client that pipelines
/// (RFC 2920) and chunks (RFC 3030) writes, byte for byte, and the answers' codes.
struct Raw {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn open(mailbox: &Mailbox, password: Option<&str>) -> Raw {
        use tokio::io::AsyncBufReadExt;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", mailbox.smtp)).await.unwrap();
        let (read, write) = stream.into_split();
        let mut raw = Raw { lines: tokio::io::BufReader::new(read).lines(), write };
        assert_eq!(raw.codes(1).await, [220]);
        raw.write(b"EHLO test\r\n").await;
        let mut extensions = Vec::new();
        loop {
            let line = raw.lines.next_line().await.unwrap().expect("an EHLO answer");
            extensions.push(line[4..].to_owned());
            if line.as_bytes()[3] == b' ' {
                break;
            }
        }
        assert!(["PIPELINING", "CHUNKING"].iter().all(|e| extensions.iter().any(|x| x == e)), "{extensions:?}");
        if let Some(password) = password {
            use base64::Engine;
            let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0notification\0{password}"));
            raw.write(format!("AUTH PLAIN {plain}\r\n").as_bytes()).await;
            assert_eq!(raw.codes(1).await, [235]);
        }
        raw
    }

    async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.write.write_all(bytes).await.unwrap();
    }

    /// The codes of the next `n` answers (None once the mailbox closed the session).
    async fn codes(&mut self, n: usize) -> Vec<u16> {
        let mut codes = Vec::new();
        while codes.len() < n {
            let Some(line) = self.lines.next_line().await.unwrap() else { break };
            if line.as_bytes().get(3) != Some(&b'-') {
                codes.push(line[..3].parse().unwrap());
            }
        }
        codes
    }
}

/// A mail for BDAT: its envelope commands and message, about `order`.
fn chunked(order: OrderId, body: &str) -> (String, String) {
    let envelope = "MAIL FROM:<shop@example.com>\r\nRCPT TO:<ada@example.com>\r\n".to_owned();
    let message = format!(
        "From: shop@example.com\r\nTo: ada@example.com\r\nSubject: Chunked\r\nMessage-ID: <{order}@shop.test>\r\n\
         {}: {order}\r\n\r\n{body}\r\n",
        api::ORDER_MAIL_HEADER
    );
    (envelope, message)
}

/// Many mails in one write (RFC 3030's BDAT, pipelined): each answered in order and stored
/// as it was sent, a message in two chunks too, and a line of a lone "." is the message's,
/// not its end. A chunk outside a mail, or too large, is read and refused, and the session
/// goes on in step; before AUTH, BDAT ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_written_at_once_in_chunks_are_each_answered_and_stored() {
    let mailbox = Mailbox::start().await;
    let mut raw = Raw::open(&mailbox, Some(&mailbox.password())).await;
    let orders: Vec<OrderId> = (0..4).map(|_| OrderId::new()).collect();
    let bodies = ["First.", "Second, in two chunks.", "Third:\r\n.\r\nafter a lone dot.", "Fourth."];
    let mut write = Vec::new();
    let mut expected = Vec::new();
    for (i, (order, body)) in orders.iter().zip(bodies).enumerate() {
        let (envelope, message) = chunked(*order, body);
        write.extend_from_slice(envelope.as_bytes());
        if i == 1 {
            let (head, tail) = message.split_at(20);
            write.extend_from_slice(format!("BDAT {}\r\n{head}", head.len()).as_bytes());
            write.extend_from_slice(format!("BDAT {} LAST\r\n{tail}", tail.len()).as_bytes());
            expected.extend([250, 250, 250, 250]);
        } else {
            write.extend_from_slice(format!("BDAT {} LAST\r\n{message}", message.len()).as_bytes());
            expected.extend([250, 250, 250]);
        }
        if i == 2 {
            // Outside a mail: read and refused.
            write.extend_from_slice(b"BDAT 5 LAST\r\nhello");
            expected.push(503);
            // Larger than the mailbox takes: read and refused, the mail dropped.
            let big = "x".repeat(shop_email::MAX_MESSAGE + 1);
            let envelope = "MAIL FROM:<shop@example.com>\r\nRCPT TO:<ada@example.com>\r\n";
            write.extend_from_slice(format!("{envelope}BDAT {} LAST\r\n{big}", big.len()).as_bytes());
            expected.extend([250, 250, 552]);
        }
    }
    write.extend_from_slice(b"NOOP\r\n");
    expected.push(250);
    raw.write(&write).await;
    assert_eq!(raw.codes(expected.len()).await, expected);

    let operator = mailbox.system.keys().staff(Role::Operator);
    for (order, body) in orders.iter().zip(bodies) {
        let (status, mails) = mailbox.emails(&format!("?orderId={order}"), Some(&operator)).await;
        assert_eq!(status, 200, "{mails}");
        let mails = mails.as_array().unwrap();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let stored = mails[0]["body"].as_str().unwrap().replace("\r\n", "\n");
        assert_eq!(stored, body.replace("\r\n", "\n"), "{mails:?}");
    }
    let (_, all) = mailbox.emails("", Some(&operator)).await;
    assert_eq!(all.as_array().unwrap().len(), 4, "only the four mails: {all}");

    // Before AUTH: refused, and the session ends (what follows could not be told from commands).
    let mut stranger = Raw::open(&mailbox, None).await;
    stranger.write(b"BDAT 5 LAST\r\nhello").await;
    assert_eq!(stranger.codes(2).await, [530], "refused, then closed");
    mailbox.system.stop().await;
}
