//! HTTP: the API (its OpenAPI document is served at `/api/openapi.json`), the live stream, the console, health and metrics.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod json;
pub mod mask;
pub mod peer;
pub mod places;
pub mod regions;
pub mod serve;
pub mod sse;
pub mod text;
pub mod throttle;
pub mod totp;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::OpenApi;

use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt::Downlink;
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
    /// Absent likewise for commands that do not serve.
    pub supervision: Option<crate::supervise::Supervision>,
    /// Absent likewise: whether the broker link and the store are working.
    pub readiness: Option<crate::readiness::Readiness>,
    pub throttle: Arc<auth::Throttle>,
    /// Logouts, for the live streams of the ended sessions.
    pub session_ends: auth::SessionEnds,
    /// Turns `true` when the server stops: live streams end then, so shutdown does not
    /// wait on consoles that never hang up.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// The street-address geocoder, when `geocoder_url` is set.
    pub geocoder: Option<Arc<crate::geocode::Geocoder>>,
}

impl AppState {
    /// After a coordinator's change, the ingest sees the new cases, orders and devices.
    /// After a change to one device: only its entry is read again.
    pub async fn refresh_device(&self, id: &str) {
        if let Err(e) = self.directory.refresh_device(&self.store, id).await {
            tracing::error!(error = %e, "could not refresh the device in the directory");
        }
    }

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
        auth::login, auth::logout, auth::me, auth::session,
        api::create_person, api::list_persons, api::get_person,
        api::create_case, api::list_cases, api::get_case, api::patch_case, api::close_case,
        api::create_order, api::list_orders, api::get_order, api::patch_order,
        api::list_users, api::create_user, api::console_config, api::status,
        places::check_address,
        regions::list_regions, regions::create_region, regions::patch_region, regions::create_local_area, regions::patch_local_area,
        api::create_device, api::list_devices, api::get_device, api::patch_device, api::issue_device, api::return_device, api::rotate_device_key,
        api::list_alerts, api::get_alert, api::ack_alert, api::resolve_alert, api::street_address, sse::stream,
        api::audit, api::verify_audit, api::security_events, healthz, readyz, metrics,
    ),
    components(schemas(error::Problem)),
    tags((name = "alerts", description = "What duty officers see and act on"))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    let csp = content_security_policy(state.config.map_tile_url.as_deref());
    let body_timeout = std::time::Duration::from_secs(state.config.http_body_timeout_s);
    Router::new()
        .merge(console::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/session", get(auth::session))
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
        .route(
            "/api/devices/{id}",
            get(api::get_device).patch(api::patch_device),
        )
        .route("/api/devices/{id}/issue", post(api::issue_device))
        .route("/api/devices/{id}/return", post(api::return_device))
        .route("/api/devices/{id}/rotate-key", post(api::rotate_device_key))
        .route("/api/alerts", get(api::list_alerts))
        .route("/api/alerts/stream", get(sse::stream))
        .route("/api/alerts/{id}", get(api::get_alert))
        .route("/api/alerts/{id}/ack", post(api::ack_alert))
        .route("/api/alerts/{id}/resolve", post(api::resolve_alert))
        .route("/api/alerts/{id}/street-address", get(api::street_address))
        .route("/api/places/address-check", post(places::check_address))
        .route("/api/audit", get(api::audit))
        .route("/api/audit/verify", get(api::verify_audit))
        .route("/api/security-events", get(api::security_events))
        .route(
            "/api/orders/{id}",
            get(api::get_order).patch(api::patch_order),
        )
        .route("/api/users", get(api::list_users).post(api::create_user))
        .route(
            "/api/regions",
            get(regions::list_regions).post(regions::create_region),
        )
        .route("/api/regions/{code}", patch(regions::patch_region))
        .route(
            "/api/regions/{code}/local-areas",
            post(regions::create_local_area),
        )
        .route(
            "/api/regions/{code}/local-areas/{area}",
            patch(regions::patch_local_area),
        )
        .route("/api/console-config", get(api::console_config))
        .route("/api/status", get(api::status))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            serve::body_deadline(body_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(text::refuse_control_in_uri))
        .layer(axum::middleware::map_response(problem_for_every_error))
        .layer(axum::middleware::map_response(move |resp| {
            security_headers(resp, csp.clone())
        }))
        .with_state(state)
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound
}

/// Scripts, styles and connections only from here; images also from the tile server, when
/// one is configured for the situation map.
fn content_security_policy(tile_url: Option<&str>) -> HeaderValue {
    let tiles = tile_url
        .and_then(origin_of)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' data:{tiles}; style-src 'self'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

/// `https://tile.example:8443` of `https://tile.example:8443/{z}/{x}/{y}.png`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    ok.then(|| format!("{scheme}://{host}"))
}

/// Headers every response carries: no framing, no sniffing, scripts only from here.
async fn security_headers(
    mut resp: axum::response::Response,
    csp: HeaderValue,
) -> axum::response::Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Cases, persons and alerts must not linger in a browser's or a proxy's cache.
    let data = h.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json")
            || v.starts_with(b"application/problem+json")
            || v.starts_with(b"text/event-stream")
    });
    if data {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
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
    /// Issued alarm devices not heard within their deadline, in the caller's regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_silent: Option<u64>,
    /// Open and acknowledged alerts per priority, in the caller's regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub open_by_priority: Option<std::collections::BTreeMap<String, u64>>,
}

pub async fn status(s: &AppState) -> Status {
    let readiness = s.readiness.as_ref();
    Status {
        database: !readiness.is_some_and(|r| r.store_failing()) && s.store.ping().await.is_ok(),
        broker: readiness.is_some_and(|r| r.broker_connected()),
        devices_silent: None,
        open_by_priority: None,
    }
}

/// The status strip of one officer: health plus counts in the officer's regions.
pub async fn status_for(s: &AppState, caller: &auth::Caller) -> Status {
    let mut st = status(s).await;
    let now = crate::domain::now_ms();
    let index = s.directory.snapshot();
    if let Ok(devices) = s.store.devices().await {
        let silent = devices
            .iter()
            .filter(|d| d.kind == crate::domain::DeviceKind::Alarm)
            .filter(|d| d.status == crate::domain::DeviceStatus::Issued)
            .filter(|d| {
                let region = d
                    .case_id
                    .as_ref()
                    .and_then(|c| index.cases.get(c))
                    .map(|c| c.region.as_str());
                region.is_some() && caller.covers(region)
            })
            .filter(|d| {
                let hb = api::effective_hb(s, d);
                api::connection_state(&d.health, hb, s.config.grace_for(&d.supervision_class), now)
                    == "silent"
            })
            .count();
        st.devices_silent = Some(silent as u64);
    }
    let states = [
        crate::domain::AlertState::Open,
        crate::domain::AlertState::Acknowledged,
    ];
    if let Ok(alerts) = s.store.alerts(&states).await {
        let mut counts: std::collections::BTreeMap<String, u64> =
            (1..=4).map(|p| (p.to_string(), 0)).collect();
        for a in alerts.iter().filter(|a| caller.covers(a.region.as_deref())) {
            *counts.entry(a.priority.get().to_string()).or_default() += 1;
        }
        st.open_by_priority = Some(counts);
    }
    st
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
        s.metrics.render(crate::metrics::Gauges {
            broker_connected: s.readiness.as_ref().is_some_and(|r| r.broker_connected()),
            supervision_leader: s
                .supervision
                .as_ref()
                .is_some_and(|v| *v.leading().borrow()),
        }),
    )
}
