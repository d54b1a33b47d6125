//! Devices: added to the shared stock, issued to a case's person, returned or lost, their
//! settings and keys changed. What a device must learn goes out in its signed
//! configuration.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{optional_text, present, text, Actor, AppError, AppResult, Ctx};
use crate::directory::Index;
use crate::domain::{now_ms, DeviceKind, DeviceStatus};
use crate::metrics::Metrics;
use crate::protocol::{self, DeviceKey};
use crate::store::{Audit, DeviceRecord, Role, StoreError};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub id: String,
    #[serde(default = "alarm_kind")]
    pub kind: DeviceKind,
    pub model: Option<String>,
    pub hb_interval_s: Option<u32>,
    /// The supervision class that sets the silence grace (`[supervision] classes`).
    pub supervision_class: Option<String>,
}

fn alarm_kind() -> DeviceKind {
    DeviceKind::Alarm
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceChange {
    /// Seconds; `null` hands the interval back to the device's own `hello`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub hb_interval_s: Option<Option<u32>>,
    pub supervision_class: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub case_id: String,
    pub holder_person_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub reason: String,
    /// True when the device was lost rather than handed back.
    #[serde(default)]
    pub lost: bool,
}

fn hb_interval(v: Option<u32>) -> AppResult<Option<u32>> {
    match v {
        Some(hb) if !(1..=86_400).contains(&hb) => {
            Err(AppError::invalid("hb_interval_s", "1 to 86400 seconds"))
        }
        other => Ok(other),
    }
}

fn supervision_class(ctx: &Ctx, v: Option<&str>) -> AppResult<String> {
    let classes = &ctx.config.supervision.classes;
    match v {
        None => Ok("standard".to_owned()),
        Some(c) if classes.contains_key(c) => Ok(c.to_owned()),
        Some(_) => Err(AppError::invalid(
            "supervision_class",
            format!(
                "one of {}",
                classes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Devices in stock belong to no region: everyone but officers sees the shared stock, to
/// issue from it. Issued (and returned, lost) ones belong to their case's region.
pub fn visible(actor: &Actor, index: &Index, d: &DeviceRecord) -> bool {
    match &d.case_id {
        None => !actor.is_officer(),
        Some(_) => actor.covers(region_of(index, d)),
    }
}

/// The region a device belongs to: its case's; none while in stock.
pub fn region_of<'a>(index: &'a Index, d: &DeviceRecord) -> Option<&'a str> {
    d.case_id
        .as_ref()
        .and_then(|c| index.cases.get(c))
        .map(|c| c.region.as_str())
}

/// The devices the actor may see.
pub async fn list(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<DeviceRecord>> {
    actor.require(&[Role::Coordinator, Role::Officer])?;
    let index = ctx.directory.snapshot();
    let mut devices = ctx.store.devices().await?;
    devices.retain(|d| visible(actor, &index, d));
    Ok(devices)
}

/// One device the actor may see; one of another region is not found, like one that does
/// not exist.
pub async fn get(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<DeviceRecord> {
    actor.require(&[Role::Coordinator, Role::Officer])?;
    visible_device(ctx, actor, id).await
}

async fn visible_device(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<DeviceRecord> {
    let d = ctx.store.device(id).await?;
    if !visible(actor, &ctx.directory.snapshot(), &d) {
        return Err(AppError::NotFound);
    }
    Ok(d)
}

/// Adds a device to the stock with a new key, returned this once.
pub async fn add(
    ctx: &Ctx,
    actor: &Actor,
    req: &NewDevice,
) -> AppResult<(DeviceRecord, DeviceKey)> {
    actor.require(&[Role::Coordinator])?;
    match protocol::new_device_id(&req.id, &ctx.config.backend_identities()) {
        Ok(_) => {}
        Err(protocol::ProtocolError::ReservedDeviceId) => {
            // A device under the backend's name could take the backend's place on the broker:
            // worth an administrator's look even though it is refused.
            Metrics::inc(&ctx.metrics.security_events_total);
            let detail = format!(
                "{} tried to add a device with the reserved id {:?}",
                actor.name().unwrap_or("the command line"),
                req.id
            );
            tracing::warn!(detail, "security event: reserved device id refused");
            if let Err(e) = ctx
                .store
                .security_event(None, "reserved_device_id", &detail, now_ms())
                .await
            {
                tracing::error!(error = %e, "could not store a security event");
            }
            return Err(AppError::invalid(
                "id",
                "reserved: ids starting with `vakt-`, and the backend's own broker names, are the backend's",
            ));
        }
        Err(_) => return Err(AppError::invalid("id", "3 to 64 of A-Z a-z 0-9 _ -")),
    }
    hb_interval(req.hb_interval_s)?;
    let class = supervision_class(ctx, req.supervision_class.as_deref())?;
    let key = DeviceKey::generate();
    let record = DeviceRecord {
        model: optional_text("model", req.model.as_deref(), 100)?,
        hb_interval_s: req.hb_interval_s,
        supervision_class: class,
        ..DeviceRecord::in_stock(
            &req.id,
            req.kind,
            ctx.directory.vault().seal(&key, &req.id),
            now_ms(),
        )
    };
    let audit = Audit::new(actor.name(), "device_added").subject(&record.id);
    ctx.store.insert_device(&record, &audit).await?;
    ctx.refresh_device(&record.id).await;
    Ok((record, key))
}

/// Changes a device's heartbeat interval or supervision class; the device learns a new
/// interval from its signed configuration.
pub async fn change(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
    req: &DeviceChange,
) -> AppResult<DeviceRecord> {
    actor.require(&[Role::Coordinator])?;
    let current = visible_device(ctx, actor, id).await?;
    let hb = match req.hb_interval_s {
        Some(v) => hb_interval(v)?,
        None => current.hb_interval_s,
    };
    let class = match req.supervision_class.as_deref() {
        Some(c) => supervision_class(ctx, Some(c))?,
        None => current.supervision_class.clone(),
    };
    let detail = format!("hb_interval_s={hb:?} supervision_class={class}");
    let audit = Audit::new(actor.name(), "device_changed")
        .subject(id)
        .case(current.case_id.as_deref())
        .detail(&detail);
    let d = ctx
        .store
        .update_device_settings(id, hb, &class, now_ms(), &audit)
        .await?;
    ctx.refresh_device(id).await;
    if hb.is_some() {
        ctx.devices.config(&d.id).await;
    }
    Ok(d)
}

/// Issues a device of the stock to a person of an open case.
pub async fn issue(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
    req: &IssueRequest,
) -> AppResult<DeviceRecord> {
    actor.require(&[Role::Coordinator])?;
    let case = match ctx.store.case(&req.case_id).await {
        Ok(c) if actor.covers(Some(&c.region)) => c,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(AppError::invalid("case_id", "no such case"))
        }
        Err(e) => return Err(e.into()),
    };
    if case.closed_at.is_some() {
        return Err(AppError::invalid("case_id", "the case is closed"));
    }
    // A person or device of another region is answered exactly as one that does not exist:
    // the answer tells nothing about other regions.
    match ctx.store.person(&req.holder_person_id).await {
        Ok(p) if actor.covers(p.region.as_deref()) => {}
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(AppError::invalid("holder_person_id", "no such person"))
        }
        Err(e) => return Err(e.into()),
    }
    visible_device(ctx, actor, id).await?;
    let audit = Audit::new(actor.name(), "device_issued")
        .subject(id)
        .case(Some(&case.id));
    let d = ctx
        .store
        .issue_device(id, &case.id, &req.holder_person_id, now_ms(), &audit)
        .await?;
    ctx.refresh_device(id).await;
    if d.hb_interval_s.is_some() {
        ctx.devices.config(&d.id).await;
    }
    Ok(d)
}

/// Takes an issued device back, handed in or lost.
pub async fn take_back(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
    req: &ReturnRequest,
) -> AppResult<DeviceRecord> {
    actor.require(&[Role::Coordinator])?;
    let current = visible_device(ctx, actor, id).await?;
    let reason = text("reason", &req.reason, 500)?;
    let status = if req.lost {
        DeviceStatus::Lost
    } else {
        DeviceStatus::Returned
    };
    let audit = Audit::new(actor.name(), "device_returned")
        .subject(id)
        .case(current.case_id.as_deref())
        .detail(&reason);
    let d = ctx
        .store
        .return_device(id, status, &reason, now_ms(), &audit)
        .await?;
    ctx.refresh_device(id).await;
    Ok(d)
}

/// Gives a device a new key, returned this once. The old one stays valid until the device
/// signs a message with the new one, which it learns from a signed `cfg` (docs/protocol.md,
/// "Key rotation"): sent at once when this process talks to the broker, else by a running
/// vakt within seconds (`announce_key_rotations`).
pub async fn rotate_key(
    ctx: &Ctx,
    actor: &Actor,
    id: &str,
) -> AppResult<(DeviceRecord, DeviceKey)> {
    actor.require(&[Role::Coordinator])?;
    let current = visible_device(ctx, actor, id).await?;
    // The new key is shown to the actor: only someone of the device's region may see it.
    // A device in stock belongs to no region yet, so only a national coordinator re-keys
    // it; a regional one would otherwise keep the key of a device issued elsewhere later.
    actor.require_region(region_of(&ctx.directory.snapshot(), &current))?;
    let key = DeviceKey::generate();
    let now = now_ms();
    let sealed = ctx.directory.vault().seal(&key, id);
    let audit = Audit::new(actor.name(), "device_key_rotation_started")
        .subject(id)
        .case(current.case_id.as_deref());
    let mut d = ctx
        .store
        .begin_key_rotation(id, &sealed, now, &audit)
        .await?;
    ctx.refresh_device(id).await;
    if ctx.devices.config(id).await {
        ctx.store.key_rotation_announced(id, &sealed, now).await?;
        d.key_rotation.announced_at = Some(now);
    }
    Ok((d, key))
}

/// Publishes the `cfg` of rotations started elsewhere (the command line, another instance
/// whose broker link was down) and records that they went out; how many did.
pub async fn announce_key_rotations(ctx: &Ctx) -> Result<usize, StoreError> {
    let mut announced = 0;
    for id in ctx.store.key_rotations_to_announce().await? {
        ctx.directory.refresh_device(&ctx.store, &id).await?;
        let Some((_, sealed)) = ctx.directory.device(&id).and_then(|e| e.next_key) else {
            continue;
        };
        if ctx.devices.config(&id).await {
            ctx.store
                .key_rotation_announced(&id, &sealed, now_ms())
                .await?;
            announced += 1;
        }
    }
    Ok(announced)
}
