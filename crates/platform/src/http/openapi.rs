//! Each service's OpenAPI 3.1 description, made from its handlers' own types with utoipa, and
//! its router made from the same description: [`Api`] takes routes only as `routes!` of
//! handlers documented with `#[utoipa::path]`, so the router serves nothing the document does
//! not describe, and the document describes nothing the router does not serve.
//!
//! A handler documents what is its own (its body, its answers, the role it needs, its own
//! errors); [`describe`] adds what the platform answers for every route of a kind, the same
//! way everywhere: 401 and 403 where a role is needed, 400, 413, 415 and 422 for bodies and
//! parameters the extractors refuse, 408 after the request timeout, 500 and 503.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
pub use utoipa::openapi::OpenApi;
use utoipa::openapi::{ContentBuilder, InfoBuilder, Ref, RefOr, ResponseBuilder, Tag};
use utoipa::{PartialSchema, ToSchema};
pub use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
pub use utoipa_axum::routes;

/// The security scheme every protected operation names, with the roles it takes as the
/// requirement's list: `customer`, `courier`, `operator`, or `service:<name>` for a service's
/// own credential.
pub const BEARER: &str = "bearer";

/// The body of every error answer: what was wrong, and on a server-side failure the request
/// id to quote (the log line's).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a description of `super::ErrorBody`, never built
pub struct ErrorBody {
    /// What was wrong, for a person to read.
    error: String,
    /// The request's id (as in `x-request-id`), on a server-side failure only.
    #[schema(rename = "requestId")]
    request_id: Option<String>,
}

/// A service's routes, each one documented (see the module's description).
pub struct Api<S = ()>(OpenApiRouter<S>);

impl<S: Clone + Send + Sync + 'static> Default for Api<S> {
    fn default() -> Self {
        Self(OpenApiRouter::default())
    }
}

impl<S: Clone + Send + Sync + 'static> Api<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves and documents the handlers of `routes!(…)` (one path, any methods).
    pub fn routes(self, routes: UtoipaMethodRouter<S>) -> Self {
        Self(self.0.routes(routes))
    }

    pub fn merge(self, other: Api<S>) -> Self {
        Self(self.0.merge(other.0))
    }

    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Api<S2> {
        Api(self.0.with_state(state))
    }

    /// The router and the operations it serves.
    pub fn split(self) -> (Router<S>, OpenApi) {
        self.0.split_for_parts()
    }
}

/// The whole description of `service`: its operations (`api`'s) and the platform's (health,
/// metrics, assets, this description), with the answers every route of a kind gets.
pub fn describe(service: &str, mut document: OpenApi) -> OpenApi {
    document.openapi = utoipa::openapi::OpenApiVersion::Version31;
    document.info = InfoBuilder::new()
        .title(format!("Shop {service} API"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "The HTTP API of Shop's {service} service. Errors answer `application/json` \
             `{{\"error\": \"…\"}}`. Protected operations take a bearer token (`Authorization: \
             Bearer <JWT>`) of the role their security requirement names."
        )))
        .build();
    document.tags = Some(vec![Tag::new(service)]);
    let components = document.components.get_or_insert_with(Default::default);
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An EdDSA-signed JWT: people sign in at mobile (`/auth/sign-in`, \
                     `/auth/staff/sign-in`); services sign their own. The requirement's list \
                     names the roles that may call: customer, courier, operator, \
                     service:<name>.",
                ))
                .build(),
        ),
    );
    for (name, description) in STANDARD {
        components.responses.insert(
            (*name).to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build(),
                    )
                    .build(),
            ),
        );
    }
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation.tags = Some(vec![service.to_owned()]);
            let protected = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = operation.request_body.is_some();
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut add = |status: &str, name: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            };
            if has_body || has_parameters {
                add("400", "BadRequest");
            }
            if protected {
                add("401", "Unauthorized");
                add("403", "Forbidden");
            }
            add("408", "Timeout");
            if has_body {
                add("413", "TooLarge");
                add("415", "UnsupportedMediaType");
                add("422", "Unprocessable");
            }
            add("500", "Internal");
            add("503", "Unavailable");
        }
    }
    document
}

/// The answers the platform gives on any route of a kind (see [`describe`]).
const STANDARD: &[(&str, &str)] = &[
    ("BadRequest", "The body is not JSON, or a path or query parameter is malformed."),
    (
        "Unauthorized",
        "No bearer token, or one that is not valid (expired, not for this service, badly \
         signed); `WWW-Authenticate` says which.",
    ),
    ("Forbidden", "The token's role may not do this."),
    ("Timeout", "The request took longer than 15 s."),
    ("TooLarge", "The body is larger than 64 KiB."),
    ("UnsupportedMediaType", "The body is not sent as `Content-Type: application/json`."),
    ("Unprocessable", "The body is JSON but not what this operation takes; the error says why."),
    ("Internal", "A failure of this service; the error carries the request id its log line has."),
    ("Unavailable", "A dependency (its storage, the broker) is busy or down: try again."),
];

/// `GET /openapi.json`: this description.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "This service's OpenAPI 3.1 description.", content_type = "application/json",
        body = Object),
))]
pub(crate) async fn openapi_json(
    axum::extract::State(document): axum::extract::State<Described>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = document.0.get().cloned().unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A service's description as `/openapi.json` answers it: made once when its router is (the
/// router's own route is in it), each answer sharing those bytes.
#[derive(Clone, Default)]
pub(crate) struct Described(pub(crate) std::sync::Arc<std::sync::OnceLock<axum::body::Bytes>>);

/// The description as the committed files hold it: pretty JSON ending in a newline.
pub fn to_pretty_json(document: &OpenApi) -> String {
    let mut text = document.to_pretty_json().expect("an OpenAPI document serializes");
    text.push('\n');
    text
}
