//! HTTP: the API of spec/api.md, the live stream, the console, health and metrics.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod json;
pub mod sse;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::OpenApi;

use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::ingest::Downlink;
use crate::metrics::Metrics;
use crate::store::SharedStore;

/// Everything a request handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub directory: Directory,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Absent only when no broker link exists (e.g. `vakt` commands that do not serve).
    pub downlink: Option<Downlink>,
    pub throttle: Arc<auth::Throttle>,
}

impl AppState {
    /// After a coordinator's change, the ingest sees the new cases, orders and devices.
    pub async fn refresh_directory(&self) {
        if let Err(e) = self.directory.reload(&self.store).await {
            tracing::error!(error = %e, "could not refresh the device directory");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "vakt", description = "Backend for police victim-support alarm devices: cases, restraining orders, devices and prioritised alerts."),
    paths(
        auth::login, auth::logout, auth::me,
        api::create_person, api::list_persons, api::get_person,
        api::create_case, api::list_cases, api::get_case, api::patch_case, api::close_case,
        api::create_order, api::list_orders,
        api::create_device, api::list_devices, api::get_device, api::issue_device, api::return_device,
        api::list_alerts, api::get_alert, api::ack_alert, api::resolve_alert, sse::stream,
        api::audit, healthz, readyz, metrics,
    ),
    components(schemas(error::Problem)),
    tags((name = "alerts", description = "What duty officers see and act on"))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/i18n.js", get(console::i18n))
        .route("/console.css", get(console::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route(
            "/api/persons",
            post(api::create_person).get(api::list_persons),
        )
        .route("/api/persons/{id}", get(api::get_person))
        .route("/api/cases", post(api::create_case).get(api::list_cases))
        .route("/api/cases/{id}", get(api::get_case).patch(api::patch_case))
        .route("/api/cases/{id}/close", post(api::close_case))
        .route(
            "/api/cases/{id}/orders",
            post(api::create_order).get(api::list_orders),
        )
        .route(
            "/api/devices",
            post(api::create_device).get(api::list_devices),
        )
        .route("/api/devices/{id}", get(api::get_device))
        .route("/api/devices/{id}/issue", post(api::issue_device))
        .route("/api/devices/{id}/return", post(api::return_device))
        .route("/api/alerts", get(api::list_alerts))
        .route("/api/alerts/stream", get(sse::stream))
        .route("/api/alerts/{id}", get(api::get_alert))
        .route("/api/alerts/{id}/ack", post(api::ack_alert))
        .route("/api/alerts/{id}/resolve", post(api::resolve_alert))
        .route("/api/audit", get(api::audit))
        .fallback(not_found)
        .layer(axum::middleware::map_response(problem_for_every_error))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound
}

/// Headers every response carries: no framing, no sniffing, scripts only from here.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Errors from axum's own extractors (a path id that is not a number, a bad query, a wrong
/// method) arrive as plain text; clients get problem+json for those too.
async fn problem_for_every_error(resp: axum::response::Response) -> axum::response::Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_owned();
    let problem = error::Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail: if detail.is_empty() {
            status.to_string()
        } else {
            detail
        },
        field: None,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(problem).into_response().into_body(),
    )
        .into_response()
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    pub database: bool,
    pub broker: bool,
}

pub async fn status(s: &AppState) -> Status {
    Status {
        database: s.store.ping().await.is_ok(),
        broker: s
            .metrics
            .broker_connected
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status, description = "Database and broker reachable"), (status = 503, body = Status)))]
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let st = status(&s).await;
    let code = if st.database && st.broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(st))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
