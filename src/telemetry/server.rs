//! The HTTP side of telemetry: `/metrics` (Prometheus text), `/healthz`, `/readyz`, the status
//! page at `/` and the JSON it draws from at `/api/status`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use super::Observer;
use super::status::{Sample, Status};

/// The status page: one self-contained file, no scripts or styles from elsewhere.
const STATUS_PAGE: &str = include_str!("status.html");

#[derive(Clone)]
struct Shared {
    observer: Arc<Observer>,
    registry: prometheus::Registry,
}

pub(super) fn spawn(
    listener: tokio::net::TcpListener,
    observer: Arc<Observer>,
    registry: prometheus::Registry,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { observer, registry });
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "the telemetry server stopped");
        }
    })
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        STATUS_PAGE,
    )
        .into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let families = shared.registry.gather();
    let mut text = Vec::new();
    match encoder.encode(&families, &mut text) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Alive and not wedged.
async fn healthz(State(shared): State<Shared>) -> Response {
    let healthy = shared.observer.healthy();
    verdict(healthy.ok, &healthy.reasons)
}

/// Partitions assigned, storage writable, checkpoints recent.
async fn readyz(State(shared): State<Shared>) -> Response {
    let ready = shared.observer.ready();
    verdict(ready.ok, &ready.reasons)
}

fn verdict(ok: bool, reasons: &[String]) -> Response {
    let mut body = String::from(if ok { "ok\n" } else { "not ok\n" });
    for reason in reasons {
        body.push_str(reason);
        body.push('\n');
    }
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct StatusWithHistory {
    #[serde(flatten)]
    status: Status,
    /// Points taken after `?since=` (epoch milliseconds), oldest first.
    history: Vec<Sample>,
}

async fn status(State(shared): State<Shared>, uri: Uri) -> Response {
    let since = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    let body = StatusWithHistory {
        status: shared.observer.status(),
        history: shared.observer.history(since),
    };
    match serde_json::to_vec(&body) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
