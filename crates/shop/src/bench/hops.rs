//! Event hops, derived without touching the services: every effect a consumer commits leaves
//! a time the services already show (order history, payment `paidAt`, the audit trail,
//! pushes and mails as received), and so does the moment the record was produced (the
//! producing transaction's time, which is also the envelope's `occurredAt`). A hop is the
//! difference between the two, read from one machine's clock. docs/performance.md lists
//! exactly which two times each hop subtracts.

use std::collections::HashMap;

use chrono::DateTime;
use serde_json::Value;

/// Where a time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `GET /orders/{id}` → `history[stage].at`: order wrote the stage in its transaction.
    History(&'static str),
    /// `GET /payments/{id}` → `paidAt`: payment's transaction that made the payment and wrote
    /// `payments-made` into its outbox.
    PaidAt,
    /// `GET /logs?orderId=` → `occurredAt` of the action: the envelope time of the audit record
    /// that the acting service wrote in the same transaction as its effect and its event.
    Audit(&'static str),
    /// `GET /api/notifications?orderId=` → `receivedAt` of the stage's push, stored by mobile.
    Push(&'static str),
    /// `GET /api/emails?orderId=` → `receivedAt` of the stage's mail, stored by the mailbox
    /// when the SMTP transaction ended.
    Email(&'static str),
}

/// One hop: a record produced at `from`, its consumer's effect at `to`.
#[derive(Clone, Copy, Debug)]
pub struct Hop {
    pub name: &'static str,
    pub from: Source,
    pub to: Source,
}

/// A stage, when the record on the topic that announces it was produced, and the names of
/// its two notification hops (named after that topic).
#[derive(Clone, Copy, Debug)]
pub struct StageTopic {
    pub stage: &'static str,
    pub produced: Source,
    pub push_hop: &'static str,
    pub email_hop: &'static str,
}

macro_rules! stage_topic {
    ($stage:literal, $topic:literal, $produced:expr) => {
        StageTopic {
            stage: $stage,
            produced: $produced,
            push_hop: concat!($topic, " → push"),
            email_hop: concat!($topic, " → email"),
        }
    };
}

/// The seven stages in journey order.
pub const STAGES: [StageTopic; 7] = [
    stage_topic!("created", "orders-created", Source::History("created")),
    stage_topic!("paymentCreated", "payments-created", Source::Audit("payment.created")),
    stage_topic!("paymentMade", "payments-made", Source::PaidAt),
    stage_topic!("readyToShip", "orders-ready-to-ship", Source::History("readyToShip")),
    stage_topic!("shipping", "orders-shipping", Source::History("shipping")),
    stage_topic!("shipped", "orders-shipped", Source::History("shipped")),
    stage_topic!("delivered", "orders-delivered", Source::History("delivered")),
];

/// The hops between services that move the order on.
pub const SERVICE_HOPS: [Hop; 5] = [
    Hop { name: "payments-made → order readyToShip", from: Source::PaidAt, to: Source::History("readyToShip") },
    Hop {
        name: "orders-ready-to-ship → delivery opened",
        from: Source::History("readyToShip"),
        to: Source::Audit("delivery.opened"),
    },
    Hop {
        name: "delivery-shipping → order shipping",
        from: Source::Audit("delivery.opened"),
        to: Source::History("shipping"),
    },
    Hop {
        name: "delivery-shipped → order shipped",
        from: Source::Audit("delivery.shipped"),
        to: Source::History("shipped"),
    },
    Hop {
        name: "delivery-delivered → order delivered",
        from: Source::Audit("delivery.delivered"),
        to: Source::History("delivered"),
    },
];

/// Every hop in report order: the five between services, then each stage topic to a push,
/// then to a mail.
pub fn all() -> Vec<Hop> {
    let pushes = STAGES.iter().map(|s| Hop { name: s.push_hop, from: s.produced, to: Source::Push(s.stage) });
    let emails = STAGES.iter().map(|s| Hop { name: s.email_hop, from: s.produced, to: Source::Email(s.stage) });
    SERVICE_HOPS.into_iter().chain(pushes).chain(emails).collect()
}

/// What the services show of one order, as times in milliseconds since the epoch.
#[derive(Debug, Default)]
pub struct Evidence {
    history: HashMap<String, i64>,
    paid_at: Option<i64>,
    audit: HashMap<String, i64>,
    pushes: HashMap<String, i64>,
    emails: HashMap<String, i64>,
}

impl Evidence {
    /// Reads the answers of `GET /orders/{id}`, `GET /payments/{id}`, `GET /logs?orderId=`,
    /// `GET /api/notifications?orderId=` and `GET /api/emails?orderId=` (any may be `Null`).
    pub fn from_json(order: &Value, payment: &Value, audit: &Value, pushes: &Value, emails: &Value) -> Evidence {
        let times = |list: &Value, key: &dyn Fn(&Value) -> Option<String>, at: &str| -> HashMap<String, i64> {
            let mut found = HashMap::new();
            for item in list.as_array().into_iter().flatten() {
                if let (Some(key), Some(time)) = (key(item), millis(&item[at])) {
                    // Keep the first time each was seen: a redelivery must not move it.
                    found.entry(key).and_modify(|t: &mut i64| *t = (*t).min(time)).or_insert(time);
                }
            }
            found
        };
        let field = |name: &'static str| move |item: &Value| item[name].as_str().map(str::to_owned);
        Evidence {
            history: times(&order["history"], &field("stage"), "at"),
            paid_at: millis(&payment["paidAt"]),
            audit: times(audit, &field("action"), "occurredAt"),
            pushes: times(pushes, &field("stage"), "receivedAt"),
            emails: times(
                emails,
                &|item: &Value| item["subject"].as_str().and_then(email_stage).map(str::to_owned),
                "receivedAt",
            ),
        }
    }

    pub fn time(&self, source: Source) -> Option<i64> {
        match source {
            Source::History(stage) => self.history.get(stage).copied(),
            Source::PaidAt => self.paid_at,
            Source::Audit(action) => self.audit.get(action).copied(),
            Source::Push(stage) => self.pushes.get(stage).copied(),
            Source::Email(stage) => self.emails.get(stage).copied(),
        }
    }

    /// How many audit records, pushes and mails are there so far.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.audit.len(), self.pushes.len(), self.emails.len())
    }

    /// Each hop whose two ends are known, in milliseconds (negative only if clocks disagree).
    pub fn hops(&self, hops: &[Hop]) -> Vec<(&'static str, i64)> {
        hops.iter().filter_map(|hop| Some((hop.name, self.time(hop.to)? - self.time(hop.from)?))).collect()
    }
}

/// The stage a notification mail is about, from its subject (services/notification's
/// `messages.rs` words them; mails carry no stage header).
pub fn email_stage(subject: &str) -> Option<&'static str> {
    let subject = subject.trim();
    if subject.starts_with("Payment of") {
        return if subject.ends_with("ready") {
            Some("paymentCreated")
        } else if subject.ends_with("received") {
            Some("paymentMade")
        } else {
            None
        };
    }
    if !subject.starts_with("Order ") {
        return None;
    }
    [
        ("received", "created"),
        ("is ready to ship", "readyToShip"),
        ("is with the courier", "shipping"),
        ("shipped", "shipped"),
        ("delivered", "delivered"),
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

    use super::*;

    fn at(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// One delivered order as the services show it, every time an offset in milliseconds.
    fn sample() -> Evidence {
        let history = ["created", "paymentCreated"]
            .iter()
            .map(|s| (*s, 0))
            .chain([("paymentMade", 40), ("readyToShip", 40), ("shipping", 70), ("shipped", 130), ("delivered", 190)])
            .map(|(stage, ms)| json!({"stage": stage, "at": at(ms)}))
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
        let pushes =
            STAGES.iter().enumerate().map(|(i, s)| json!({"stage": s.stage, "receivedAt": at(300 + i as i64)}));
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
        let hops: HashMap<_, _> = sample().hops(&SERVICE_HOPS).into_iter().collect();
        assert_eq!(hops["payments-made → order readyToShip"], 28, "paidAt 12 → readyToShip 40");
        assert_eq!(hops["orders-ready-to-ship → delivery opened"], 15);
        assert_eq!(hops["delivery-shipping → order shipping"], 15);
        assert_eq!(hops["delivery-shipped → order shipped"], 20);
        assert_eq!(hops["delivery-delivered → order delivered"], 20);
    }

    #[test]
    fn every_stage_has_a_push_hop_and_an_email_hop() {
        let evidence = sample();
        let hops: HashMap<_, _> = evidence.hops(&all()).into_iter().collect();
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
            &json!({"history": [{"stage": "readyToShip", "at": at(40)}]}),
            &json!({"paidAt": null}),
            &Value::Null,
            &Value::Null,
            &Value::Null,
        );
        assert!(evidence.hops(&all()).is_empty());
    }

    #[test]
    fn mail_subjects_name_their_stage() {
        assert_eq!(email_stage("Order ABC received"), Some("created"));
        assert_eq!(email_stage("Payment of 9.99 ready"), Some("paymentCreated"));
        assert_eq!(email_stage("Payment of 9.99 received"), Some("paymentMade"));
        assert_eq!(email_stage("Order ABC is ready to ship"), Some("readyToShip"));
        assert_eq!(email_stage("Order ABC is with the courier"), Some("shipping"));
        assert_eq!(email_stage("Order ABC shipped"), Some("shipped"));
        assert_eq!(email_stage("Order ABC delivered"), Some("delivered"));
        assert_eq!(email_stage("Hello"), None);
    }
}
