//! The HTTP server of every service: hyper with a deadline for each request's headers (so
//! half-sent requests and idle keep-alive connections cannot pile up) and a cap on open
//! connections below the process's file limit, so a flood is refused at the door while the
//! service keeps answering. On shutdown it stops accepting, lets requests in flight finish,
//! and drops what is still open after a deadline (a live stream may never end by itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::{Service, ServiceExt};

use crate::Shutdown;

/// A request's headers must arrive within this long, and so must the next request's on a
/// kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client of the services keeps an idle kept-alive connection: well under
/// [`HEADER_READ_TIMEOUT`], so that it never reuses a connection just as the service closes it
/// (the request would fail with a connection reset or an incomplete message).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(HEADER_READ_TIMEOUT.as_secs() / 2);
/// Connections open at once, at most; more are closed as soon as they are accepted. Fewer
/// when the process may open fewer files: half its limit, the rest for storage and Kafka.
pub const MAX_CONNECTIONS: usize = 2048;

fn connection_limit() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => MAX_CONNECTIONS.min(usize::try_from(soft / 2).unwrap_or(MAX_CONNECTIONS)).max(16),
        Err(_) => MAX_CONNECTIONS,
    }
}
/// How long requests in flight get to finish once the service stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) -> std::io::Result<()> {
    let limit = connection_limit();
    let permits = Arc::new(Semaphore::new(limit));
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let (stopping, stop) = watch::channel(false);
    let open = tokio_util::task::TaskTracker::new();
    let mut refused = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset while queued: wait, go on.
                    tracing::warn!(%error, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, refused, limit, "Too many open connections; closing new ones");
            }
            continue;
        };
        let service = make_service.call(peer).await.unwrap_or_else(|never| match never {});
        let service =
            TowerToHyperService::new(service.map_request(|request: Request<Incoming>| request.map(Body::new)));
        let mut stop = stop.clone();
        open.spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    _ = stop.changed(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(permit);
        });
    }
    let _ = stopping.send(true);
    open.close();
    if tokio::time::timeout(DRAIN, open.wait()).await.is_err() {
        tracing::info!(open = open.len(), "Connections still open after the drain; closing them");
    }
    Ok(())
}
