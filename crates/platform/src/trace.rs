//! W3C trace context (`traceparent`): started at the HTTP edge, stored with each outbox row,
//! carried in a Kafka header, and continued by the consumer that handles the record.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
}

impl TraceParent {
    /// A new trace, for work that starts here (an HTTP request).
    pub fn root() -> Self {
        Self { trace_id: uuid::Uuid::new_v4().as_u128(), span_id: new_span_id() }
    }

    /// The next step of the same trace.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: new_span_id() }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else is no context.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self { trace_id, span_id })
    }

    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

fn new_span_id() -> u64 {
    let id = uuid::Uuid::new_v4().as_u64_pair().0;
    id.max(1)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_survives_its_text_form_and_children_keep_the_trace() {
        let root = TraceParent::root();
        assert_eq!(TraceParent::parse(&root.to_string()), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child, root);
        assert_eq!(TraceParent::parse("garbage"), None);
    }
}
