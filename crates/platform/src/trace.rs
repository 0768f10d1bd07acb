//! Trace context across the system, with OpenTelemetry's standard W3C propagator
//! (`traceparent`): an HTTP request continues the trace its caller sent (or starts one); a
//! stored outbox row keeps the context of the work that wrote it; the relay's publish span
//! carries it on in the Kafka record's header; the consumer's span for that record continues
//! it; a call or a mail from there sends it on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP, Kafka, mail) that carries the context.
pub use shop_events::TRACEPARENT_HEADER as TRACEPARENT;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans of this process are OpenTelemetry spans (exported): where they are not, spans
/// made only to carry trace context (a request's, a publish's) are not made at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.0
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Makes `span` continue the trace that a received `traceparent` names; a missing or malformed
/// one leaves `span` where it is (the root of a new trace, or under the span it was made in).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&One(traceparent));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` to send for work done under `span`; None when it has no valid context.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the span this code runs in.
pub fn current() -> Option<String> {
    traceparent(&tracing::Span::current())
}

/// The trace id of `span` (32 hex digits), None when it has no valid context.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans become OpenTelemetry spans, as in a service that exports them.
    fn with_spans() {
        crate::telemetry::init_for_tests();
    }

    #[test]
    fn a_span_continues_a_received_trace_and_sends_on_its_own_context() {
        with_spans();
        let received = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("work");
        continue_from(&span, Some(received));
        let sent = traceparent(&span).expect("a span in a trace has a context to send");
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {sent}");
        assert!(!sent.contains("00f067aa0ba902b7"), "its own span id, not the caller's: {sent}");
        assert_eq!(trace_id(&span).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));

        let child = span.in_scope(|| tracing::info_span!("step"));
        assert_eq!(trace_id(&child), trace_id(&span), "a span made inside another is in its trace");

        for malformed in [None, Some("garbage"), Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")] {
            let root = tracing::info_span!("root");
            continue_from(&root, malformed);
            let id = trace_id(&root).expect("a new trace");
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736", "{malformed:?} starts a new trace");
        }
    }
}
