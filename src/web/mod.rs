//! HTTP: the API (its OpenAPI document is served at `/api/openapi.json`), the live stream,
//! the console, health and metrics. One module per resource, each with its router;
//! [`routes`] is the one list the server serves and the OpenAPI document describes.

pub mod access_log;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod cases;
pub mod console;
pub mod console_support;
pub mod consoles;
pub mod devices;
pub mod error;
pub mod json;
pub mod mask;
pub mod orders;
pub mod peer;
pub mod persons;
pub mod places;
pub mod regions;
pub mod scrape;
pub mod serve;
pub mod sse;
pub mod text;
pub mod throttle;
pub mod users;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::{Ctx, DeviceLink};
use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::metrics::{self, Metrics};
use crate::store::SharedStore;

/// Everything a request handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub directory: Directory,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// How the devices hear of changes: through this process's broker link.
    pub devices: DeviceLink,
    pub supervision: crate::supervise::Supervision,
    /// Whether the broker link and the store are working.
    pub readiness: crate::readiness::Readiness,
    pub throttle: Arc<auth::Throttle>,
    /// Logouts, for the live streams of the ended sessions.
    pub session_ends: auth::SessionEnds,
    /// The open live streams and what they share each tick.
    pub consoles: Arc<consoles::Consoles>,
    /// Turns `true` when the server stops: live streams end then, so shutdown does not
    /// wait on consoles that never hang up.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// The street-address geocoder, when `geocoder_url` is set.
    pub geocoder: Option<Arc<crate::geocode::Geocoder>>,
}

impl AppState {
    /// What the application's operations act on, for a request.
    pub fn app(&self) -> Ctx {
        Ctx {
            store: self.store.clone(),
            directory: self.directory.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            hub: self.hub.clone(),
            devices: self.devices.clone(),
        }
    }

    /// After a change to one device: only its entry is read again.
    pub async fn refresh_device(&self, id: &str) {
        self.app().refresh_device(id).await;
    }

    /// After changes made around the application (a seeded demo): everything is read again.
    pub async fn refresh_directory(&self) {
        self.app().refresh_directory().await;
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "vakt", description = "Backend for police victim-support alarm devices: cases, restraining orders, devices and prioritised alerts."),
    components(schemas(error::Problem)),
    tags((name = "alerts", description = "What duty officers see and act on"))
)]
pub struct ApiDoc;

/// Every route of the API with its OpenAPI operation: the one list the server serves and
/// the document describes, so no route is served undocumented.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(scrape::metrics))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::session))
        .merge(persons::router())
        .merge(cases::router())
        .merge(orders::router())
        .merge(devices::router())
        .merge(alerts::router())
        .merge(audit::router())
        .merge(users::router())
        .merge(console_support::router())
        .routes(routes!(places::check_address))
        .routes(routes!(regions::list_regions, regions::create_region))
        .routes(routes!(regions::patch_region))
        .routes(routes!(regions::create_local_area))
        .routes(routes!(regions::patch_local_area))
}

/// The API's document, as `/api/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let csp = content_security_policy(state.config.map_tile_url.as_deref());
    let body_timeout = std::time::Duration::from_secs(state.config.http_body_timeout_s);
    let (api, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    Router::new()
        .merge(console::router())
        .merge(api)
        .route(
            "/api/openapi.json",
            get(move || std::future::ready(Json(doc.clone()))),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            serve::body_deadline(body_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(text::refuse_control_in_uri))
        .layer(axum::middleware::map_response(problem_for_every_error))
        .layer(axum::middleware::map_response(move |resp| {
            security_headers(resp, csp.clone())
        }))
        .layer(axum::middleware::from_fn(access_log::access_log))
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
    Status {
        database: !s.readiness.store_failing() && s.store.ping().await.is_ok(),
        broker: s.readiness.broker_connected(),
        devices_silent: None,
        open_by_priority: None,
    }
}

/// The status strip of one officer: health plus counts in the officer's regions.
pub async fn status_for(s: &AppState, caller: &auth::Caller) -> Status {
    StatusCounts::read(s).await.for_caller(caller)
}

/// What the status strips of every region are made of, from one read of the store: a live
/// stream's strip is cut from the one read its tick shares with every other stream.
pub struct StatusCounts {
    database: bool,
    broker: bool,
    /// Issued alarm devices not heard within their deadline, by their case's region (a
    /// device without a case's region is no region's); none if the store did not answer.
    silent: Option<std::collections::HashMap<String, u64>>,
    /// Open and acknowledged alerts by region (none: the alert has no region) and priority
    /// (1 at index 0); none if the store did not answer.
    open: Option<std::collections::HashMap<Option<String>, [u64; metrics::PRIORITIES]>>,
}

impl StatusCounts {
    pub async fn read(s: &AppState) -> StatusCounts {
        let health = status(s).await;
        let now = crate::domain::now_ms();
        let index = s.directory.snapshot();
        let silent = s.store.devices().await.ok().map(|devices| {
            let mut by_region = std::collections::HashMap::new();
            for d in devices
                .iter()
                .filter(|d| d.kind == crate::domain::DeviceKind::Alarm)
                .filter(|d| d.status == crate::domain::DeviceStatus::Issued)
            {
                let Some(case) = d.case_id.as_ref().and_then(|c| index.cases.get(c)) else {
                    continue;
                };
                let hb = devices::effective_hb(s, d);
                let grace = s.config.grace_for(&d.supervision_class);
                if devices::connection_state(&d.health, hb, grace, now) == "silent" {
                    *by_region.entry(case.region.clone()).or_default() += 1;
                }
            }
            by_region
        });
        let states = [
            crate::domain::AlertState::Open,
            crate::domain::AlertState::Acknowledged,
        ];
        let open = s.store.alerts(&states).await.ok().map(|alerts| {
            let mut by_region = std::collections::HashMap::new();
            for a in alerts {
                let counts: &mut [u64; metrics::PRIORITIES] =
                    by_region.entry(a.region.clone()).or_default();
                if let Some(n) = counts.get_mut(usize::from(a.priority.get()).wrapping_sub(1)) {
                    *n += 1;
                }
            }
            by_region
        });
        StatusCounts {
            database: health.database,
            broker: health.broker,
            silent,
            open,
        }
    }

    /// What is known when the store did not answer in time.
    pub fn unanswered(broker: bool) -> StatusCounts {
        StatusCounts {
            database: false,
            broker,
            silent: None,
            open: None,
        }
    }

    /// The strip of one caller: the counts of the regions the caller covers, by the same
    /// rule as everything else the caller sees.
    pub fn for_caller(&self, caller: &auth::Caller) -> Status {
        let devices_silent = self.silent.as_ref().map(|by_region| {
            by_region
                .iter()
                .filter(|(region, _)| caller.covers(Some(region)))
                .map(|(_, n)| n)
                .sum()
        });
        let open_by_priority = self.open.as_ref().map(|by_region| {
            let mut total = [0u64; metrics::PRIORITIES];
            for (_, counts) in by_region
                .iter()
                .filter(|(region, _)| caller.covers(region.as_deref()))
            {
                for (t, n) in total.iter_mut().zip(counts) {
                    *t += n;
                }
            }
            (1..)
                .zip(total)
                .map(|(p, n): (usize, u64)| (p.to_string(), n))
                .collect()
        });
        Status {
            database: self.database,
            broker: self.broker,
            devices_silent,
            open_by_priority,
        }
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
