//! The audit trail and the security events, for admins.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::AppState;
use crate::domain::{now_ms, parse_rfc3339};

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    pub case_id: Option<String>,
    /// Only what this user did or saw.
    pub user: Option<String>,
    /// RFC 3339; entries at or after.
    pub from: Option<String>,
    /// RFC 3339; entries before.
    pub to: Option<String>,
    /// At most this many, newest first (default 500, at most 10000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [crate::store::AuditEntry]), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<crate::store::AuditEntry>>> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let time = |field: &str, v: Option<&str>| match v {
        None => Ok(None),
        Some(t) => parse_rfc3339(t)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(field, "not an RFC 3339 time")),
    };
    let filter = crate::store::AuditFilter {
        case_id: q.case_id,
        actor: q.user,
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        limit: q.limit.unwrap_or(500).clamp(1, 10_000),
    };
    let entries = s.store.audit_entries(&filter).await?;
    // Reading the audit trail is itself a consultation worth a line.
    s.store
        .audit(
            Some(&caller.username),
            "audit_read",
            None,
            filter.case_id.as_deref(),
            None,
            now_ms(),
        )
        .await?;
    Ok(Json(entries))
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
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(
        s.store
            .security_events(q.limit.unwrap_or(500).clamp(1, 10_000))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/audit/verify", tag = "audit",
    responses((status = 200, body = crate::audit::Verdict), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn verify_audit(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<crate::audit::Verdict>> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(s.store.verify_audit().await?))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(verify_audit))
        .routes(routes!(security_events))
}
