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
