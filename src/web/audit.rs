//! The audit trail and the security events, for admins.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiResult, Problem};
use super::AppState;
use crate::app::audit::{self as trail, AuditQuery};

#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [crate::store::AuditEntry]), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<crate::store::AuditEntry>>> {
    Ok(Json(trail::entries(&s.app(), &caller.actor(), q).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct LimitQuery {
    /// At most this many, newest first (default 500, at most 10000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/security-events", tag = "audit", params(LimitQuery),
    responses((status = 200, body = [crate::store::SecurityEvent]), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn security_events(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<crate::store::SecurityEvent>>> {
    let events = trail::security_events(&s.app(), &caller.actor(), q.limit).await?;
    Ok(Json(events))
}

#[utoipa::path(get, path = "/api/audit/verify", tag = "audit",
    responses((status = 200, body = crate::audit::Verdict), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn verify_audit(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<crate::audit::Verdict>> {
    Ok(Json(trail::verify(&s.app(), &caller.actor()).await?))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(verify_audit))
        .routes(routes!(security_events))
}
