//! The audit trail and the security events: read by admins, and reading the trail is itself
//! on the trail.

use serde::Deserialize;
use utoipa::IntoParams;

use super::{Actor, AppError, AppResult, Ctx};
use crate::domain::{now_ms, parse_rfc3339};
use crate::store::{AuditEntry, AuditFilter, SecurityEvent};

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

/// How many entries a read gives: 500 unless asked, at most 10,000.
fn limit(asked: Option<i64>) -> i64 {
    asked.unwrap_or(500).clamp(1, 10_000)
}

pub async fn entries(ctx: &Ctx, actor: &Actor, q: AuditQuery) -> AppResult<Vec<AuditEntry>> {
    actor.require_admin()?;
    let time = |field: &str, v: Option<&str>| match v {
        None => Ok(None),
        Some(t) => parse_rfc3339(t)
            .map(Some)
            .ok_or_else(|| AppError::invalid(field, "not an RFC 3339 time")),
    };
    let filter = AuditFilter {
        case_id: q.case_id,
        actor: q.user,
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        limit: limit(q.limit),
    };
    let entries = ctx.store.audit_entries(&filter).await?;
    // Reading the audit trail is itself a consultation worth a line.
    ctx.store
        .audit(
            actor.name(),
            "audit_read",
            None,
            filter.case_id.as_deref(),
            None,
            now_ms(),
        )
        .await?;
    Ok(entries)
}

pub async fn security_events(
    ctx: &Ctx,
    actor: &Actor,
    asked: Option<i64>,
) -> AppResult<Vec<SecurityEvent>> {
    actor.require_admin()?;
    Ok(ctx.store.security_events(limit(asked)).await?)
}

/// Recomputes the hash chain from the first entry.
pub async fn verify(ctx: &Ctx, actor: &Actor) -> AppResult<crate::audit::Verdict> {
    actor.require_admin()?;
    Ok(ctx.store.verify_audit().await?)
}
