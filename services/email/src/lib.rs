//! The email service: the customers' mailbox. It receives mail over real SMTP (port 2525)
//! from the shop's authenticated sender only, and shows it over HTTP (`GET /api/emails`, and
//! a mailbox page): to a customer the mails addressed to them, to the operator all mail.

mod mailbox;
mod smtp;

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
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
        let router =
            web::finish(router(pool.clone()), vec![web::storage_check(pool.clone())], Default::default(), &web);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let smtp = TcpListener::bind((config.http.host.as_str(), config.smtp_port)).await?;
        let smtp_port = smtp.local_addr()?.port();
        let mailbox = Mailbox { pool };
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

pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("mailbox.html")) }))
        .route(
            "/assets/mailbox.js",
            get(|| async { static_asset("text/javascript; charset=utf-8", include_str!("mailbox.js")) }),
        )
        .route(
            "/assets/mailbox.css",
            get(|| async { static_asset("text/css; charset=utf-8", include_str!("mailbox.css")) }),
        )
        .route("/api/emails", get(list_emails))
        .with_state(pool)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailQuery {
    order_id: Option<OrderId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Email {
    message_id: String,
    order_id: Option<String>,
    from: String,
    to: String,
    subject: String,
    body: String,
    received_at: String,
}

/// Mails about one order (oldest first), or the latest 200 (newest first): a customer's own
/// (addressed to them), or, for the operator, everyone's.
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
