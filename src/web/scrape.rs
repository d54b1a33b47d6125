//! `/metrics`, and the port of its own that `metrics_addr` gives it (with `/healthz` and
//! `/readyz`), so that the counters can be kept off the network the console is reached from;
//! behind a bearer token when `metrics_token` is set.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format"),
              (status = 401, description = "`metrics_token` is set and the request does not carry it as a bearer token"),
              (status = 404, description = "`metrics_addr` is set: /metrics is served there, not here")))]
pub async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if s.config.metrics_addr.is_some() {
        return ApiError::NotFound.into_response();
    }
    scrape(&s, &headers).await
}

/// The port of its own: `/metrics`, `/healthz` and `/readyz`, nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>, headers: HeaderMap| async move {
                scrape(&s, &headers).await
            }),
        )
        .route("/healthz", get(super::healthz))
        .route("/readyz", get(super::readyz))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn(super::access_log::access_log))
        .with_state(state)
}

async fn scrape(s: &AppState, headers: &HeaderMap) -> Response {
    if let Some(token) = s.config.metrics_token.as_ref().filter(|t| !t.0.is_empty()) {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| same_token(p, &token.0)) {
            let mut resp = ApiError::Unauthorized.into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return resp;
        }
    }
    let status = super::status(s).await;
    let text = s.metrics.render(crate::metrics::Gauges {
        broker_connected: s.readiness.broker_connected(),
        supervision_leader: *s.supervision.leading().borrow(),
        ready: status.database && status.broker,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Compares the digests, in time independent of where they differ: neither the token's
/// length nor its first right characters can be timed out of the comparison.
fn same_token(presented: &str, token: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_opens_the_metrics() {
        assert!(same_token("s3cret-token", "s3cret-token"));
        assert!(!same_token("s3cret-toke", "s3cret-token"));
        assert!(!same_token("s3cret-tokem", "s3cret-token"));
        assert!(!same_token("", "s3cret-token"));
    }
}
