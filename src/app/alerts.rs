//! Alerts as duty officers handle them: acknowledged, then resolved with an outcome. Each
//! change reaches the consoles (the hub) and, for an alarm, the device that raised it.

use super::{optional_text, Actor, AppError, AppResult, Ctx};
use crate::domain::{now_ms, Alert, AlertState, Outcome};
use crate::protocol::Feedback;
use crate::store::{AlertChange, Role};

/// The alerts of the actor's regions in `states` (a comma-separated list; open and
/// acknowledged ones when none is given), in queue order.
pub async fn queue(ctx: &Ctx, actor: &Actor, states: Option<&str>) -> AppResult<Vec<Alert>> {
    actor.require(&[Role::Officer, Role::Coordinator, Role::Investigator])?;
    let states = match states {
        None | Some("") => vec![AlertState::Open, AlertState::Acknowledged],
        Some(list) => list
            .split(',')
            .map(|s| {
                AlertState::parse(s.trim())
                    .ok_or_else(|| AppError::invalid("state", "open, acknowledged or resolved"))
            })
            .collect::<AppResult<Vec<_>>>()?,
    };
    let mut alerts = ctx.store.alerts(&states).await?;
    alerts.retain(|a| actor.covers(a.region.as_deref()));
    Ok(alerts)
}

/// The alert, if the actor may handle it: an officer (or admin) of its region; another
/// region's alert is not found.
pub async fn to_handle(ctx: &Ctx, actor: &Actor, id: i64) -> AppResult<Alert> {
    actor.require(&[Role::Officer])?;
    in_region(ctx, actor, id).await
}

/// One alert of the actor's regions; another region's is not found.
pub async fn in_region(ctx: &Ctx, actor: &Actor, id: i64) -> AppResult<Alert> {
    let alert = ctx.store.alert(id).await?;
    actor
        .require_region(alert.region.as_deref())
        .map_err(|_| AppError::NotFound)?;
    Ok(alert)
}

/// The actor takes the alert; the device that raised it hears `accepted`.
pub async fn acknowledge(
    ctx: &Ctx,
    actor: &Actor,
    id: i64,
    note: Option<&str>,
) -> AppResult<Alert> {
    to_handle(ctx, actor, id).await?;
    let note = optional_text("note", note, 2000)?;
    let by = actor.name().unwrap_or_default();
    let change = ctx
        .store
        .acknowledge(id, by, note.as_deref(), now_ms())
        .await?;
    ctx.metrics.acknowledged(&change.alert);
    Ok(announce(ctx, change, Feedback::Accepted).await)
}

/// The actor closes the alert with its outcome; the device that raised it hears
/// `resolved`.
pub async fn resolve(
    ctx: &Ctx,
    actor: &Actor,
    id: i64,
    outcome: Outcome,
    note: Option<&str>,
) -> AppResult<Alert> {
    to_handle(ctx, actor, id).await?;
    let note = optional_text("note", note, 2000)?;
    let by = actor.name().unwrap_or_default();
    let change = ctx
        .store
        .resolve(id, by, outcome, note.as_deref(), now_ms())
        .await?;
    ctx.metrics.resolved(&change.alert);
    Ok(announce(ctx, change, Feedback::Resolved).await)
}

/// Tells the device that raised the alert, then the consoles.
async fn announce(ctx: &Ctx, change: AlertChange, st: Feedback) -> Alert {
    let alert = change.alert.clone();
    if let (Some(device), Some(origin)) = (&alert.device_id, alert.origin) {
        ctx.devices.feedback(device, origin, st).await;
    }
    ctx.hub.publish(change);
    alert
}
