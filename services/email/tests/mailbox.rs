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
        let mut connection = self.connect().await;
        let credentials = Credentials::new(service::NOTIFICATION.to_owned(), password.to_owned());
        connection.auth(&[Mechanism::Plain], &credentials).await.map_err(|e| e.to_string())?;
        let message = Message::builder()
            .from("Shop <shop@example.com>".parse().unwrap())
            .to(to.parse().unwrap())
            .subject(subject)
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(api::ORDER_MAIL_HEADER), order.to_string()))
            .body("Hello".to_owned())
            .unwrap();
        connection.send(message.envelope(), &message.formatted()).await.map(|_| ()).map_err(|e| e.to_string())
    }

    fn password(&self) -> String {
        self.system.keys().secrets().read_text(shop_platform::secrets::SMTP_PASSWORD).unwrap()
    }

    async fn emails(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let reply = self.system.get(self.http, &format!("/api/emails{query}"), token).await;
        (reply.status, reply.body)
    }
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
