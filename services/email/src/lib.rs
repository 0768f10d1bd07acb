//! The email service: the customer's mailbox. It receives mail over real SMTP (port 2525)
//! and shows it over HTTP (`GET /api/emails?orderId=`, and a mailbox page).

mod mailbox;
mod smtp;

pub use mailbox::ORDER_HEADER;

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shop_events::OrderId;
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::{rfc3339, Pool};
use shop_platform::host::ServiceHost;
use shop_platform::http::{ApiError, ApiQuery};
use shop_platform::{db, http as web, Shutdown};
use sqlx::Row;
use tokio::net::TcpListener;

use crate::mailbox::Mailbox;

pub const SERVICE: &str = "email";

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
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let router = web::finish(router(pool.clone()), vec![web::storage_check(pool.clone())]);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let smtp = TcpListener::bind((config.http.host.as_str(), config.smtp_port)).await?;
        let smtp_port = smtp.local_addr()?.port();
        let mailbox = Mailbox { pool };
        let host = ServiceHost::new(listener, router).with_task(move |shutdown| smtp::serve(smtp, mailbox, shutdown));
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

/// Mails about one order (oldest first), or the latest 200 (newest first).
async fn list_emails(
    State(pool): State<Pool>,
    ApiQuery(query): ApiQuery<EmailQuery>,
) -> Result<Json<Vec<Email>>, ApiError> {
    const COLUMNS: &str = "message_id, order_id, sender, recipients, subject, body, received_at";
    let rows = match query.order_id {
        Some(order_id) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM emails WHERE order_id = $1 ORDER BY received_at, message_id"))
                .bind(order_id.to_string())
                .fetch_all(&pool)
                .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM emails ORDER BY received_at DESC, message_id DESC LIMIT 200"))
                .fetch_all(&pool)
                .await?
        }
    };
    let emails = rows
        .into_iter()
        .map(|row| {
            Ok(Email {
                message_id: row.try_get(0)?,
                order_id: row.try_get(1)?,
                from: row.try_get(2)?,
                to: row.try_get(3)?,
                subject: row.try_get(4)?,
                body: row.try_get(5)?,
                received_at: rfc3339(row.try_get(6)?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(emails))
}
