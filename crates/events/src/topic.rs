//! The 11 topics and the consumer groups of the design, as names services refer to.

use serde::{Deserialize, Serialize};

use crate::Stage;

/// One of the 11 Kafka topics of the system. Every record on every topic is keyed by orderId.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    OrdersCreated,
    OrdersReadyToShip,
    OrdersShipping,
    OrdersShipped,
    OrdersDelivered,
    PaymentsCreated,
    PaymentsMade,
    DeliveryShipping,
    DeliveryShipped,
    DeliveryDelivered,
    LoggingEvents,
}

impl Topic {
    /// Every topic, in the order of the journey.
    pub const ALL: [Topic; 11] = [
        Topic::OrdersCreated,
        Topic::PaymentsCreated,
        Topic::PaymentsMade,
        Topic::OrdersReadyToShip,
        Topic::DeliveryShipping,
        Topic::OrdersShipping,
        Topic::DeliveryShipped,
        Topic::OrdersShipped,
        Topic::DeliveryDelivered,
        Topic::OrdersDelivered,
        Topic::LoggingEvents,
    ];

    /// The seven topics that each mark a stage the customer is told about, in journey order.
    pub const STAGES: [Topic; 7] = {
        let mut topics = [Topic::OrdersCreated; 7];
        let mut i = 0;
        while i < topics.len() {
            topics[i] = Stage::ALL[i].topic();
            i += 1;
        }
        topics
    };

    pub const fn name(self) -> &'static str {
        match self {
            Topic::OrdersCreated => "orders-created",
            Topic::OrdersReadyToShip => "orders-ready-to-ship",
            Topic::OrdersShipping => "orders-shipping",
            Topic::OrdersShipped => "orders-shipped",
            Topic::OrdersDelivered => "orders-delivered",
            Topic::PaymentsCreated => "payments-created",
            Topic::PaymentsMade => "payments-made",
            Topic::DeliveryShipping => "delivery-shipping",
            Topic::DeliveryShipped => "delivery-shipped",
            Topic::DeliveryDelivered => "delivery-delivered",
            Topic::LoggingEvents => "logging-events",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }

    /// Where records of this topic that cannot be handled are set aside.
    pub fn dead_letter_name(self) -> String {
        dead_letter_topic(self.name())
    }
}

/// Where records of the topic named `source` that cannot be handled are set aside: by name,
/// since such a record may come from a topic this code does not know.
pub fn dead_letter_topic(source: &str) -> String {
    format!("{source}.dlq")
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Consumer groups. Replicas of one service share a group; the two notification channels
/// are separate groups so each keeps its own offsets.
pub mod group {
    pub const ORDER_SERVICE: &str = "order-service";
    pub const DELIVERY_SERVICE: &str = "delivery-service";
    pub const NOTIFICATION_MOBILE: &str = "notification-mobile";
    pub const NOTIFICATION_EMAIL: &str = "notification-email";
    pub const LOGGING_SERVICE: &str = "logging-service";

    pub const ALL: [&str; 5] =
        [ORDER_SERVICE, DELIVERY_SERVICE, NOTIFICATION_MOBILE, NOTIFICATION_EMAIL, LOGGING_SERVICE];

    use super::Topic;

    /// What each group consumes: the services subscribe to it, and lag is measured on it.
    pub const SUBSCRIPTIONS: [(&str, &[Topic]); 5] = [
        (
            ORDER_SERVICE,
            &[Topic::PaymentsMade, Topic::DeliveryShipping, Topic::DeliveryShipped, Topic::DeliveryDelivered],
        ),
        (DELIVERY_SERVICE, &[Topic::OrdersReadyToShip]),
        (NOTIFICATION_MOBILE, &Topic::STAGES),
        (NOTIFICATION_EMAIL, &Topic::STAGES),
        (LOGGING_SERVICE, &[Topic::LoggingEvents]),
    ];

    /// The topics `group` consumes (none for a name that is no group of the system).
    pub fn topics(group: &str) -> &'static [Topic] {
        SUBSCRIPTIONS.iter().find(|(name, _)| *name == group).map_or(&[], |(_, topics)| topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_exactly_eleven_distinct_topics() {
        let names: std::collections::BTreeSet<_> = Topic::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), 11);
        for topic in Topic::ALL {
            assert_eq!(Topic::from_name(topic.name()), Some(topic));
        }
    }

    #[test]
    fn every_group_consumes_topics_and_every_topic_is_consumed() {
        for name in group::ALL {
            assert!(!group::topics(name).is_empty(), "{name}");
        }
        for topic in Topic::ALL {
            assert!(group::SUBSCRIPTIONS.iter().any(|(_, topics)| topics.contains(&topic)), "{topic}");
        }
    }

    #[test]
    fn dead_letter_topics_are_named_after_their_source() {
        assert_eq!(Topic::PaymentsMade.dead_letter_name(), "payments-made.dlq");
    }
}
