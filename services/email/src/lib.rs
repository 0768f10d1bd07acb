//! The email service: the customers' mailbox. It receives mail over real SMTP (port 2525)
//! from the shop's authenticated sender only, and shows it over HTTP (`GET /api/emails`, and
//! a mailbox page): to a customer the mails addressed to them, to the operator all mail.

mod mailbox;
mod smtp;

pub use smtp::MAX_MESSAGE;

use axum::extract::State;
use axum::response::Html;
use axum::Json;
use serde::{Deserialize, Serialize};
use shop_events::OrderId;
use shop_platform::auth::{Caller, Role};
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::{rfc3339, Pool};
use shop_platform::host::ServiceHost;
use shop_platform::http::{static_asset, ApiError, ApiQuery};
use shop_platform::{db, http as web, Shutdown};
use sqlx::Row;
use tokio::net::TcpListener;

use crate::mailbox::Mailbox;

pub const SERVICE: &str = shop_events::service::EMAIL;

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, api())
}

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned(), secrets::SMTP_PASSWORD.to_owned()]
}

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the mailbox.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8086)]
    pub http_port: u16,
    /// Port the SMTP server receives mail on.
    #[arg(long = "smtp-port", env = "SMTP_PORT", default_value_t = 2525)]
    pub smtp_port: u16,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}

pub struct Service {
    host: ServiceHost,
    smtp_port: u16,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let secrets = config.storage.secrets();
        let web = web::Web::new(&config.http, &secrets, SERVICE)?;
        let smtp_password = secrets.read_text(shop_platform::secrets::SMTP_PASSWORD)?;
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let router = web::finish(
            api().with_state(pool.clone()),
            vec![web::storage_check(pool.clone())],
            Default::default(),
            &web,
        );
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let smtp = TcpListener::bind((config.http.host.as_str(), config.smtp_port)).await?;
        let smtp_port = smtp.local_addr()?.port();
        let mailbox = Mailbox::new(pool);
        let sender = smtp::Sender { user: smtp::SENDER.to_owned(), password: smtp_password };
        let host =
            ServiceHost::new(listener, router).with_task(move |shutdown| smtp::serve(smtp, mailbox, sender, shutdown));
        Ok(Service { host, smtp_port })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}

/// The mailbox's API and page, documented (`/openapi.json`).
pub fn api() -> web::Api<Pool> {
    web::Api::new()
        .routes(web::routes!(mailbox_page))
        .routes(web::routes!(mailbox_script))
        .routes(web::routes!(mailbox_style))
        .routes(web::routes!(list_emails))
}

/// The mailbox's page (a shell: its data needs a sign-in).
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html; charset=utf-8", body = String)))]
async fn mailbox_page() -> Html<&'static str> {
    Html(include_str!("mailbox.html"))
}

/// The mailbox page's script.
#[utoipa::path(get, path = "/assets/mailbox.js",
    responses((status = 200, content_type = "text/javascript; charset=utf-8", body = String)))]
async fn mailbox_script() -> axum::response::Response {
    static_asset("text/javascript; charset=utf-8", include_str!("mailbox.js"))
}

/// The mailbox page's style.
#[utoipa::path(get, path = "/assets/mailbox.css",
    responses((status = 200, content_type = "text/css; charset=utf-8", body = String)))]
async fn mailbox_style() -> axum::response::Response {
    static_asset("text/css; charset=utf-8", include_str!("mailbox.css"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct EmailQuery {
    /// Only the mails about this order (oldest first).
    order_id: Option<OrderId>,
}

/// A mail the mailbox received.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Email {
    message_id: String,
    /// The order it is about (its `X-Shop-Order-Id` header), if any.
    order_id: Option<String>,
    from: String,
    to: String,
    subject: String,
    body: String,
    /// RFC 3339.
    received_at: String,
}

/// The mails.
///
/// Mails about one order (oldest first), or the latest 200 (newest first): a customer's own
/// (addressed to them), or, for the operator, everyone's.
#[utoipa::path(get, path = "/api/emails", security(("bearer" = ["customer"]), ("bearer" = ["operator"])),
    params(EmailQuery), responses((status = 200, body = Vec<Email>)))]
async fn list_emails(
    State(pool): State<Pool>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EmailQuery>,
) -> Result<Json<Vec<Email>>, ApiError> {
    const COLUMNS: &str = "e.message_id, e.order_id, e.sender, e.recipients, e.subject, e.body, e.received_at";
    let (owner, order) = match caller.role() {
        Role::Customer => (Some(caller.customer()?.email), query.order_id),
        Role::Operator => (None, query.order_id),
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "the mailbox is for customers and the operator",
            ))
        }
    };
    let recipient = "JOIN mail_recipients r ON r.message_id = e.message_id AND r.address = $1";
    let rows = match (owner, order) {
        (Some(owner), Some(order_id)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM emails e {recipient} WHERE e.order_id = $2 ORDER BY e.received_at, e.message_id"
            ))
            .bind(owner)
            .bind(order_id.to_string())
            .fetch_all(&pool)
            .await?
        }
        (Some(owner), None) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM emails e {recipient} ORDER BY e.received_at DESC, e.message_id DESC LIMIT 200"
            ))
            .bind(owner)
            .fetch_all(&pool)
            .await?
        }
        (None, Some(order_id)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM emails e WHERE e.order_id = $1 ORDER BY e.received_at, e.message_id"
            ))
            .bind(order_id.to_string())
            .fetch_all(&pool)
            .await?
        }
        (None, None) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM emails e ORDER BY e.received_at DESC, e.message_id DESC LIMIT 200"
            ))
            .fetch_all(&pool)
            .await?
        }
    };
    let emails = rows
        .into_iter()
        .map(|row| {
            Ok(Email {
                message_id: row.try_get("message_id")?,
                order_id: row.try_get("order_id")?,
                from: row.try_get("sender")?,
                to: row.try_get("recipients")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                received_at: rfc3339(row.try_get("received_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(emails))
}
