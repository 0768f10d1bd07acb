//! Every event type round-trips through JSON and matches its published schema.
//! Run with `UPDATE_SCHEMAS=1` to regenerate `schemas/` after a deliberate contract change.

use std::path::PathBuf;

use shop_events::*;

fn customer() -> Customer {
    Customer::parse("Ada Lovelace", "ada@example.com", "+44 20 7946 0000").unwrap()
}

fn sample(event_type: EventType) -> Event {
    let payment_id = PaymentId::new();
    let items = vec![LineItem { sku: "TEA-01".into(), quantity: 2, unit_price: Money::from_cents(1250).unwrap() }];
    let total = Money::from_cents(2500).unwrap();
    let url = format!("http://localhost:8082/pay/{payment_id}");
    let progressed = || OrderDeliveryProgressed {
        customer: customer(),
        delivery_id: DeliveryId::parse("DLV-0000000000D1").unwrap(),
    };
    let courier = || DeliveryProgressed { delivery_id: DeliveryId::parse("DLV-0000000000D1").unwrap() };
    match event_type {
        EventType::OrderCreated => {
            Event::OrderCreated(OrderCreated { customer: customer(), items, total, payment_id, payment_url: url })
        }
        EventType::PaymentCreated => {
            Event::PaymentCreated(PaymentCreated { payment_id, amount: total, payment_url: url, customer: customer() })
        }
        EventType::PaymentMade => Event::PaymentMade(PaymentMade { payment_id, amount: total, customer: customer() }),
        EventType::OrderReadyToShip => {
            Event::OrderReadyToShip(OrderReadyToShip { customer: customer(), items, total, payment_id })
        }
        EventType::DeliveryOpened => Event::DeliveryOpened(courier()),
        EventType::OrderShipping => Event::OrderShipping(progressed()),
        EventType::DeliveryShipped => Event::DeliveryShipped(courier()),
        EventType::OrderShipped => Event::OrderShipped(progressed()),
        EventType::DeliveryDelivered => Event::DeliveryDelivered(courier()),
        EventType::OrderDelivered => Event::OrderDelivered(progressed()),
        EventType::AuditRecorded => Event::AuditRecorded(AuditRecorded {
            action: "order.created".into(),
            message: "Order created".into(),
            instance: "order-1".into(),
        }),
    }
}

fn schema_path(event_type: EventType) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas").join(schema::file_name(event_type))
}

#[test]
fn every_event_round_trips_through_its_envelope() {
    for event_type in EventType::ALL {
        let event = sample(event_type);
        let envelope = RawEnvelope::wrap(OrderId::new(), "test", &event);
        let decoded = RawEnvelope::decode(event_type.topic().name(), &envelope.to_bytes()).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.event().unwrap(), event, "{event_type} changed on the way");
    }
}

#[test]
fn published_schemas_are_the_ones_the_types_generate() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for event_type in EventType::ALL {
        let generated = serde_json::to_string_pretty(&schema::for_event(event_type)).unwrap() + "\n";
        let path = schema_path(event_type);
        if update {
            std::fs::write(&path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run with UPDATE_SCHEMAS=1", path.display()));
        assert_eq!(published, generated, "{} is stale; run with UPDATE_SCHEMAS=1", path.display());
    }
}

#[test]
fn every_event_matches_its_published_schema() {
    for event_type in EventType::ALL {
        let text = std::fs::read_to_string(schema_path(event_type)).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let envelope = RawEnvelope::wrap(OrderId::new(), "test", &sample(event_type));
        let instance = serde_json::to_value(&envelope).unwrap();
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{event_type} breaks its schema: {errors:?}");
    }
}

#[test]
fn a_schema_rejects_an_event_of_another_type_or_with_a_missing_field() {
    let text = std::fs::read_to_string(schema_path(EventType::PaymentMade)).unwrap();
    let validator = jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap();
    let other = RawEnvelope::wrap(OrderId::new(), "test", &sample(EventType::OrderCreated));
    assert!(!validator.is_valid(&serde_json::to_value(&other).unwrap()));
    let mut missing =
        serde_json::to_value(RawEnvelope::wrap(OrderId::new(), "test", &sample(EventType::PaymentMade))).unwrap();
    missing["payload"].as_object_mut().unwrap().remove("paymentId");
    assert!(!validator.is_valid(&missing));
}

#[test]
fn a_record_on_the_wrong_topic_or_from_the_future_is_refused() {
    let envelope = RawEnvelope::wrap(OrderId::new(), "test", &sample(EventType::PaymentMade));
    assert!(matches!(RawEnvelope::decode("orders-created", &envelope.to_bytes()), Err(DecodeError::WrongTopic { .. })));
    let mut future = envelope.clone();
    future.version = 99;
    assert!(matches!(future.event(), Err(DecodeError::UnsupportedVersion { .. })));
    assert!(matches!(RawEnvelope::decode("payments-made", b"not json"), Err(DecodeError::Envelope(_))));
}
