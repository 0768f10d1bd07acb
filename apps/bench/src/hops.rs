//! Event hops, derived without touching the services: every effect a consumer commits leaves
//! a time the services already show (order history, payment `paidAt`, the audit trail,
//! pushes and mails as received), and so does the moment the record was produced (the
//! producing transaction's time, which is also the envelope's `occurredAt`). A hop is the
//! difference between the two, read from one machine's clock. docs/performance.md lists
//! exactly which two times each hop subtracts.

use std::collections::HashMap;

use chrono::DateTime;
use serde_json::Value;
use shop_events::{Stage, Topic};

/// Where a time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `GET /orders/{id}` → `history[stage].at`: order wrote the stage in its transaction.
    History(Stage),
    /// `GET /payments/{id}` → `paidAt`: payment's transaction that made the payment and wrote
    /// `payments-made` into its outbox.
    PaidAt,
    /// `GET /logs?orderId=` → `occurredAt` of the action: the envelope time of the audit record
    /// that the acting service wrote in the same transaction as its effect and its event.
    Audit(&'static str),
    /// `GET /api/notifications?orderId=` → `receivedAt` of the stage's push, stored by mobile.
    Push(Stage),
    /// `GET /api/emails?orderId=` → `receivedAt` of the stage's mail, stored by the mailbox
    /// when the SMTP transaction ended.
    Email(Stage),
}

impl Source {
    /// The effect as a hop's name calls it: `order readyToShip`, `delivery opened`, `push`.
    fn effect(self) -> String {
        match self {
            Source::History(stage) => format!("order {stage}"),
            Source::PaidAt => "payment made".to_owned(),
            Source::Audit(action) => action.replacen('.', " ", 1),
            Source::Push(_) => "push".to_owned(),
            Source::Email(_) => "email".to_owned(),
        }
    }
}

/// One hop: a record produced on `topic` at `from`, its consumer's effect at `to`.
#[derive(Clone, Debug)]
pub struct Hop {
    /// `<topic> → <effect>`, as the report lists it: `payments-made → order readyToShip`.
    pub name: String,
    pub from: Source,
    pub to: Source,
}

impl Hop {
    fn new(topic: Topic, from: Source, to: Source) -> Hop {
        Hop { name: format!("{} → {}", topic.name(), to.effect()), from, to }
    }
}

/// When the record on the topic that announces a stage (`stage.topic()`) was produced.
pub fn produced(stage: Stage) -> Source {
    match stage {
        // Written by payment in the transaction that opened the payment.
        Stage::PaymentCreated => Source::Audit("payment.created"),
        Stage::PaymentMade => Source::PaidAt,
        Stage::Created | Stage::ReadyToShip | Stage::Shipping | Stage::Shipped | Stage::Delivered => {
            Source::History(stage)
        }
    }
}

/// The hops between services that move the order on: the topic, the time its record was
/// produced, and the time of the effect its consumer committed.
pub fn service_hops() -> Vec<Hop> {
    [
        (Topic::PaymentsMade, Source::PaidAt, Source::History(Stage::ReadyToShip)),
        (Topic::OrdersReadyToShip, Source::History(Stage::ReadyToShip), Source::Audit("delivery.opened")),
        (Topic::DeliveryShipping, Source::Audit("delivery.opened"), Source::History(Stage::Shipping)),
        (Topic::DeliveryShipped, Source::Audit("delivery.shipped"), Source::History(Stage::Shipped)),
        (Topic::DeliveryDelivered, Source::Audit("delivery.delivered"), Source::History(Stage::Delivered)),
    ]
    .into_iter()
    .map(|(topic, from, to)| Hop::new(topic, from, to))
    .collect()
}

/// Every hop in report order: the five between services, then each stage topic to a push,
/// then to a mail, stages in journey order.
pub fn all() -> Vec<Hop> {
    let to =
        |channel: fn(Stage) -> Source| Stage::ALL.map(|stage| Hop::new(stage.topic(), produced(stage), channel(stage)));
    service_hops().into_iter().chain(to(Source::Push)).chain(to(Source::Email)).collect()
}

/// What the services show of one order, as times in milliseconds since the epoch.
#[derive(Debug, Default)]
pub struct Evidence {
    history: HashMap<Stage, i64>,
    paid_at: Option<i64>,
    audit: HashMap<String, i64>,
    pushes: HashMap<Stage, i64>,
    emails: HashMap<Stage, i64>,
}

impl Evidence {
    /// Reads the answers of `GET /orders/{id}`, `GET /payments/{id}`, `GET /logs?orderId=`,
    /// `GET /api/notifications?orderId=` and `GET /api/emails?orderId=` (any may be `Null`).
    pub fn from_json(order: &Value, payment: &Value, audit: &Value, pushes: &Value, emails: &Value) -> Evidence {
        fn times<K: std::hash::Hash + Eq>(
            list: &Value,
            key: impl Fn(&Value) -> Option<K>,
            at: &str,
        ) -> HashMap<K, i64> {
            let mut found = HashMap::new();
            for item in list.as_array().into_iter().flatten() {
                if let (Some(key), Some(time)) = (key(item), millis(&item[at])) {
                    // Keep the first time each was seen: a redelivery must not move it.
                    found.entry(key).and_modify(|t: &mut i64| *t = (*t).min(time)).or_insert(time);
                }
            }
            found
        }
        let stage = |item: &Value| item["stage"].as_str().and_then(Stage::parse);
        Evidence {
            history: times(&order["history"], stage, "at"),
            paid_at: millis(&payment["paidAt"]),
            audit: times(audit, |item| item["action"].as_str().map(str::to_owned), "occurredAt"),
            pushes: times(pushes, stage, "receivedAt"),
            emails: times(emails, |item| item["subject"].as_str().and_then(email_stage), "receivedAt"),
        }
    }

    pub fn time(&self, source: Source) -> Option<i64> {
        match source {
            Source::History(stage) => self.history.get(&stage).copied(),
            Source::PaidAt => self.paid_at,
            Source::Audit(action) => self.audit.get(action).copied(),
            Source::Push(stage) => self.pushes.get(&stage).copied(),
            Source::Email(stage) => self.emails.get(&stage).copied(),
        }
    }

    /// How many audit records, pushes and mails are there so far.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.audit.len(), self.pushes.len(), self.emails.len())
    }

    /// Each hop whose two ends are known, in milliseconds (negative only if clocks disagree).
    pub fn hops<'h>(&self, hops: &'h [Hop]) -> Vec<(&'h str, i64)> {
        hops.iter().filter_map(|hop| Some((hop.name.as_str(), self.time(hop.to)? - self.time(hop.from)?))).collect()
    }
}

/// The stage a notification mail is about, from its subject (services/notification's
/// `messages.rs` words them; mails carry no stage header).
pub fn email_stage(subject: &str) -> Option<Stage> {
    let subject = subject.trim();
    if subject.starts_with("Payment of") {
        return if subject.ends_with("ready") {
            Some(Stage::PaymentCreated)
        } else if subject.ends_with("received") {
            Some(Stage::PaymentMade)
        } else {
            None
        };
    }
    if !subject.starts_with("Order ") {
        return None;
    }
    [
        ("received", Stage::Created),
        ("is ready to ship", Stage::ReadyToShip),
        ("is with the courier", Stage::Shipping),
        ("shipped", Stage::Shipped),
        ("delivered", Stage::Delivered),
    ]
    .into_iter()
    .find(|(ending, _)| subject.ends_with(ending))
    .map(|(_, stage)| stage)
}

fn millis(value: &Value) -> Option<i64> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shop_events::{
        Customer, DeliveryId, Event, EventType, LineItem, Money, OrderCreated, OrderDeliveryProgressed, OrderId,
        OrderReadyToShip, PaymentCreated, PaymentId, PaymentMade,
    };

    use super::*;

    fn at(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// One delivered order as the services show it, every time an offset in milliseconds.
    fn sample() -> Evidence {
        let history = [Stage::Created, Stage::PaymentCreated]
            .iter()
            .map(|s| (*s, 0))
            .chain([
                (Stage::PaymentMade, 40),
                (Stage::ReadyToShip, 40),
                (Stage::Shipping, 70),
                (Stage::Shipped, 130),
                (Stage::Delivered, 190),
            ])
            .map(|(stage, ms)| json!({"stage": stage.as_str(), "at": at(ms)}))
            .collect::<Vec<_>>();
        let audit = [
            ("order.created", 0),
            ("payment.created", 1),
            ("payment.made", 12),
            ("order.readyToShip", 40),
            ("delivery.opened", 55),
            ("order.shipping", 70),
            ("delivery.shipped", 110),
            ("order.shipped", 130),
            ("delivery.delivered", 170),
            ("order.delivered", 190),
        ]
        .map(|(action, ms)| json!({"action": action, "occurredAt": at(ms)}));
        let pushes = Stage::ALL
            .iter()
            .enumerate()
            .map(|(i, stage)| json!({"stage": stage.as_str(), "receivedAt": at(300 + i as i64)}));
        let subjects = [
            "Order 1A2B3C4D received",
            "Payment of 20.00 ready",
            "Payment of 20.00 received",
            "Order 1A2B3C4D is ready to ship",
            "Order 1A2B3C4D is with the courier",
            "Order 1A2B3C4D shipped",
            "Order 1A2B3C4D delivered",
        ];
        let emails = subjects.iter().enumerate().map(|(i, s)| json!({"subject": s, "receivedAt": at(400 + i as i64)}));
        Evidence::from_json(
            &json!({"status": "delivered", "history": history}),
            &json!({"status": "made", "paidAt": at(12)}),
            &json!(audit),
            &json!(pushes.collect::<Vec<_>>()),
            &json!(emails.collect::<Vec<_>>()),
        )
    }

    #[test]
    fn service_hops_subtract_the_producers_time_from_the_consumers_effect() {
        let service_hops = service_hops();
        let hops: HashMap<_, _> = sample().hops(&service_hops).into_iter().collect();
        assert_eq!(hops["payments-made → order readyToShip"], 28, "paidAt 12 → readyToShip 40");
        assert_eq!(hops["orders-ready-to-ship → delivery opened"], 15);
        assert_eq!(hops["delivery-shipping → order shipping"], 15);
        assert_eq!(hops["delivery-shipped → order shipped"], 20);
        assert_eq!(hops["delivery-delivered → order delivered"], 20);
    }

    #[test]
    fn every_stage_has_a_push_hop_and_an_email_hop() {
        let evidence = sample();
        let all = all();
        let hops: HashMap<_, _> = evidence.hops(&all).into_iter().collect();
        assert_eq!(hops.len(), 5 + 14);
        assert_eq!(hops["orders-created → push"], 300);
        assert_eq!(hops["payments-created → push"], 301 - 1, "produced when payment.created was audited");
        assert_eq!(hops["payments-made → email"], 402 - 12, "produced when paid");
        assert_eq!(hops["orders-delivered → email"], 406 - 190);
        assert_eq!(evidence.counts(), (10, 7, 7));
    }

    #[test]
    fn a_hop_whose_effect_is_missing_is_left_out() {
        let evidence = Evidence::from_json(
            &json!({"history": [{"stage": Stage::ReadyToShip.as_str(), "at": at(40)}]}),
            &json!({"paidAt": null}),
            &Value::Null,
            &Value::Null,
            &Value::Null,
        );
        assert!(evidence.hops(&all()).is_empty());
    }

    /// The report's labels (docs/performance.md and the JSON reports in docs/ name them): each
    /// is the topic of the record, then its consumer's effect; the stage hops follow
    /// `Stage::ALL`, each named after `stage.topic()`.
    #[test]
    fn each_hop_is_named_after_its_topic_and_its_effect() {
        let names: Vec<String> = all().into_iter().map(|hop| hop.name).collect();
        assert_eq!(
            names,
            [
                "payments-made → order readyToShip",
                "orders-ready-to-ship → delivery opened",
                "delivery-shipping → order shipping",
                "delivery-shipped → order shipped",
                "delivery-delivered → order delivered",
                "orders-created → push",
                "payments-created → push",
                "payments-made → push",
                "orders-ready-to-ship → push",
                "orders-shipping → push",
                "orders-shipped → push",
                "orders-delivered → push",
                "orders-created → email",
                "payments-created → email",
                "payments-made → email",
                "orders-ready-to-ship → email",
                "orders-shipping → email",
                "orders-shipped → email",
                "orders-delivered → email",
            ]
        );
        let stage_hops = &all()[service_hops().len()..];
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            let (push, email) = (&stage_hops[i], &stage_hops[Stage::ALL.len() + i]);
            assert!(push.name.starts_with(stage.topic().name()), "{}", push.name);
            assert!(email.name.starts_with(stage.topic().name()), "{}", email.name);
            assert_eq!((push.from, push.to), (produced(stage), Source::Push(stage)));
            assert_eq!((email.from, email.to), (produced(stage), Source::Email(stage)));
        }
    }

    #[test]
    fn mail_subjects_name_their_stage() {
        assert_eq!(email_stage("Order ABC received"), Some(Stage::Created));
        assert_eq!(email_stage("Payment of 9.99 ready"), Some(Stage::PaymentCreated));
        assert_eq!(email_stage("Payment of 9.99 received"), Some(Stage::PaymentMade));
        assert_eq!(email_stage("Order ABC is ready to ship"), Some(Stage::ReadyToShip));
        assert_eq!(email_stage("Order ABC is with the courier"), Some(Stage::Shipping));
        assert_eq!(email_stage("Order ABC shipped"), Some(Stage::Shipped));
        assert_eq!(email_stage("Order ABC delivered"), Some(Stage::Delivered));
        assert_eq!(email_stage("Hello"), None);
    }

    /// The event that announces `stage`, as its producer would write it.
    fn stage_event(stage: Stage) -> Event {
        let customer = Customer::parse("Grace Hopper", "grace@example.com", "+1 555 0100").unwrap();
        let amount = Money::from_cents(2000).unwrap();
        let items = vec![LineItem { sku: "TEA-01".to_owned(), quantity: 1, unit_price: amount }];
        let payment_id = PaymentId::new();
        let payment_url = "http://localhost:8082/pay/1".to_owned();
        let progressed = OrderDeliveryProgressed { customer: customer.clone(), delivery_id: DeliveryId::new() };
        let event = match stage.event_type() {
            EventType::OrderCreated => {
                Event::OrderCreated(OrderCreated { customer, items, total: amount, payment_id, payment_url })
            }
            EventType::PaymentCreated => {
                Event::PaymentCreated(PaymentCreated { payment_id, amount, payment_url, customer })
            }
            EventType::PaymentMade => Event::PaymentMade(PaymentMade { payment_id, amount, customer }),
            EventType::OrderReadyToShip => {
                Event::OrderReadyToShip(OrderReadyToShip { customer, items, total: amount, payment_id })
            }
            EventType::OrderShipping => Event::OrderShipping(progressed),
            EventType::OrderShipped => Event::OrderShipped(progressed),
            EventType::OrderDelivered => Event::OrderDelivered(progressed),
            other => panic!("{other} announces no stage"),
        };
        assert_eq!(event.stage().map(|(announced, _)| announced), Some(stage));
        event
    }

    /// The subjects are notification's (`shop_notification::notice`), read back here.
    #[test]
    fn the_subject_of_each_stages_mail_names_that_stage() {
        for stage in Stage::ALL {
            let notice = shop_notification::notice(OrderId::new(), &stage_event(stage)).expect("a stage has a notice");
            assert_eq!(notice.stage, stage);
            assert_eq!(email_stage(&notice.title), Some(stage), "{:?}", notice.title);
        }
    }
}
