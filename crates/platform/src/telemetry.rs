//! Tracing set up once per process: human-readable lines by default (coloured on a terminal),
//! JSON lines with `LOG_FORMAT=json`, levels from `RUST_LOG`; and OpenTelemetry spans.
//!
//! Spans become OpenTelemetry spans (`tracing-opentelemetry`), exported over OTLP
//! (HTTP/protobuf), when the standard variables ask for it: `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, and neither `OTEL_SDK_DISABLED=true` nor
//! `OTEL_TRACES_EXPORTER=none`; trace context then flows through HTTP, the outbox and Kafka
//! headers (`trace`). Otherwise the OpenTelemetry layer is not installed at all: the spans
//! are only the log lines' context, no context is sent on, and tracing costs nothing more.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

const DEFAULT_FILTER: &str =
    "info,rdkafka=warn,sqlx=warn,tansu=warn,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tower_http=warn";

/// Keeps the span exporter of the process, if any; dropping it sends what is still buffered.
#[must_use = "spans still buffered are lost unless the guard lives until the process ends"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(Err(error)) = self.provider.as_ref().map(SdkTracerProvider::shutdown) {
            eprintln!("spans not all exported: {error}");
        }
    }
}

/// Whether the environment asks for spans to be exported (see the module's documentation).
pub fn exporting() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// Sets up logging and spans for this process, which is `service` (`OTEL_SERVICE_NAME`
/// overrides it) and instance `instance`.
pub fn init(service: &str, instance: Option<&str>) -> Guard {
    let mut failed = None;
    let provider = if exporting() {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => Some(provider(service, instance).with_batch_exporter(exporter).build()),
            Err(error) => {
                failed = Some(error);
                None
            }
        }
    } else {
        None
    };
    let spans = provider.as_ref().map(|provider| {
        crate::trace::enable();
        tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")).with_tracked_inactivity(false)
    });

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let lines = if json {
        // tracing-subscriber's JSON lines and, where spans are exported, the trace and span
        // id of the span each line was written in (`"openTelemetry":{"traceId","spanId"}`).
        json_subscriber::fmt::layer().with_target(false).with_opentelemetry_ids(spans.is_some()).boxed()
    } else {
        fmt::layer().with_target(false).with_ansi(colours()).boxed()
    };
    // A second init (tests in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(lines).with(spans).try_init();
    if let Some(error) = failed {
        tracing::warn!(%error, "Cannot export spans over OTLP; tracing stays local");
    }
    Guard { provider }
}

/// Whether the human-readable lines are coloured: when they go to a terminal, or when
/// `FORCE_COLOR` asks (`shop up` does, for the services whose lines it shows on its terminal),
/// and never with `NO_COLOR` set (https://no-color.org). Lines going to a file or a log
/// collector carry no escape codes, and cost less to write: the colours are written into every
/// field of every span, logged or not.
fn colours() -> bool {
    use std::io::IsTerminal;
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    !set("NO_COLOR") && (set(FORCE_COLOR) || std::io::stdout().is_terminal())
}

/// Set (non-empty) to colour the lines even though they do not go to a terminal.
pub const FORCE_COLOR: &str = "FORCE_COLOR";

/// Spans of `service` (`OTEL_SERVICE_NAME` overrides it), replica `instance`.
fn provider(service: &str, instance: Option<&str>) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.trim().is_empty()).unwrap_or(service.into());
    let mut resource = Resource::builder().with_service_name(service);
    if let Some(instance) = instance {
        resource = resource.with_attribute(opentelemetry::KeyValue::new("service.instance.id", instance.to_owned()));
    }
    SdkTracerProvider::builder().with_resource(resource.build())
}

/// As the services run with spans exported, but to nowhere: for tests of trace context.
#[doc(hidden)]
pub fn init_for_tests() {
    let provider = provider("test", None).build();
    crate::trace::enable();
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    let _ = tracing_subscriber::registry().with(spans).try_init();
}
