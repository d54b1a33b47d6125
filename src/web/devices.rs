//! Devices: the shared stock, issued to a case's person, their health and keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::AppState;
use crate::app::devices::{self, DeviceChange, IssueRequest, NewDevice, ReturnRequest};
use crate::domain::{now_ms, rfc3339, DeviceKind, DeviceStatus};
use crate::store::{DeviceHealth, DeviceRecord};

#[derive(Serialize, ToSchema)]
pub struct NewDeviceOut {
    pub id: String,
    /// The device key, 64 hex characters: shown this once, never again.
    pub key: String,
    pub kind: DeviceKind,
    pub status: DeviceStatus,
}

#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    /// `online`, `connection_lost`, `silent` or `never_heard`.
    pub connection: String,
    pub last_heard_at: Option<String>,
    pub battery: Option<u8>,
    pub charging: Option<bool>,
    pub rssi: Option<i32>,
    pub fw: Option<String>,
    pub reported_model: Option<String>,
    pub hb_interval_s: u32,
    pub last_test_at: Option<String>,
    /// Messages of the device that never arrived (seqs it skipped), since it was created.
    pub messages_missing: u64,
    /// Alarms taken in after their seq had counted as missing: the device repeated them
    /// until it heard `received`.
    pub messages_late: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceOut {
    pub id: String,
    pub kind: DeviceKind,
    pub model: Option<String>,
    pub status: DeviceStatus,
    /// The interval a coordinator set (wins over the device's own), if any.
    pub hb_interval_s: Option<u32>,
    pub supervision_class: String,
    pub case_id: Option<String>,
    pub holder_person_id: Option<String>,
    pub issued_at: Option<String>,
    pub health: HealthOut,
    /// Present while a new key waits for the device to take it up.
    pub key_rotation: Option<KeyRotationOut>,
    /// When the device last switched to a new key.
    pub key_rotated_at: Option<String>,
}

/// A key rotation under way: `requested` until the signed `cfg` carrying the new key is
/// published, then `announced` until the device signs a message with the new key.
#[derive(Serialize, ToSchema)]
pub struct KeyRotationOut {
    /// `requested` or `announced`.
    pub state: &'static str,
    pub requested_at: Option<String>,
    pub announced_at: Option<String>,
}

/// The interval the backend holds a device to (`policy::silence`).
pub fn effective_hb(s: &AppState, d: &DeviceRecord) -> u32 {
    crate::domain::policy::silence::effective_interval_s(
        d.hb_interval_s,
        d.health.hello_hb_s,
        s.config.default_hb_s,
    )
}

pub fn connection_state(h: &DeviceHealth, hb_s: u32, grace_s: u64, now: i64) -> &'static str {
    match h.last_heard_at {
        None => "never_heard",
        Some(t)
            if now - t
                > crate::domain::policy::silence::silence_window(
                    hb_s as i64 * 1000,
                    grace_s as i64 * 1000,
                ) =>
        {
            "silent"
        }
        Some(_) if h.online == Some(false) => "connection_lost",
        Some(_) => "online",
    }
}

pub fn device_out(s: &AppState, d: &DeviceRecord, now: i64) -> DeviceOut {
    let hb = effective_hb(s, d);
    DeviceOut {
        id: d.id.clone(),
        kind: d.kind,
        model: d.model.clone(),
        status: d.status,
        hb_interval_s: d.hb_interval_s,
        supervision_class: d.supervision_class.clone(),
        case_id: d.case_id.clone(),
        holder_person_id: d.holder_person_id.clone(),
        issued_at: d.issued_at.map(rfc3339),
        health: HealthOut {
            connection: if s.supervision.is_silent(&d.id) {
                "silent".into()
            } else {
                connection_state(&d.health, hb, s.config.grace_for(&d.supervision_class), now)
                    .into()
            },
            last_heard_at: d.health.last_heard_at.map(rfc3339),
            battery: d.health.battery,
            charging: d.health.charging,
            rssi: d.health.rssi,
            fw: d.health.fw.clone(),
            reported_model: d.health.reported_model.clone(),
            hb_interval_s: hb,
            last_test_at: d.health.last_test_at.map(rfc3339),
            messages_missing: d.health.messages_missing,
            messages_late: d.health.messages_late,
        },
        key_rotation: d
            .key_rotation
            .next_key_hex
            .as_ref()
            .map(|_| KeyRotationOut {
                state: if d.key_rotation.announced_at.is_some() {
                    "announced"
                } else {
                    "requested"
                },
                requested_at: d.key_rotation.requested_at.map(rfc3339),
                announced_at: d.key_rotation.announced_at.map(rfc3339),
            }),
        key_rotated_at: d.key_rotation.rotated_at.map(rfc3339),
    }
}

#[utoipa::path(post, path = "/api/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = NewDeviceOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_device(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewDevice>,
) -> ApiResult<(StatusCode, Json<NewDeviceOut>)> {
    let (d, key) = devices::add(&s.app(), &caller.actor(), &req).await?;
    let out = NewDeviceOut {
        id: d.id,
        key: key.to_hex(),
        kind: d.kind,
        status: d.status,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/devices", tag = "devices", responses((status = 200, body = [DeviceOut])))]
pub async fn list_devices(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeviceOut>>> {
    let now = now_ms();
    let list = devices::list(&s.app(), &caller.actor()).await?;
    Ok(Json(list.iter().map(|d| device_out(&s, d, now)).collect()))
}

#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceOut>> {
    let d = devices::get(&s.app(), &caller.actor(), &id).await?;
    Ok(Json(device_out(&s, &d, now_ms())))
}

#[utoipa::path(patch, path = "/api/devices/{id}", tag = "devices", params(("id" = String, Path)), request_body = DeviceChange,
    responses((status = 200, body = DeviceOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<DeviceChange>,
) -> ApiResult<Json<DeviceOut>> {
    let d = devices::change(&s.app(), &caller.actor(), &id, &req).await?;
    Ok(Json(device_out(&s, &d, now_ms())))
}

#[utoipa::path(post, path = "/api/devices/{id}/issue", tag = "devices", params(("id" = String, Path)), request_body = IssueRequest,
    responses((status = 200, body = DeviceOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn issue_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<IssueRequest>,
) -> ApiResult<Json<DeviceOut>> {
    let d = devices::issue(&s.app(), &caller.actor(), &id, &req).await?;
    Ok(Json(device_out(&s, &d, now_ms())))
}

#[utoipa::path(post, path = "/api/devices/{id}/return", tag = "devices", params(("id" = String, Path)), request_body = ReturnRequest,
    responses((status = 200, body = DeviceOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn return_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReturnRequest>,
) -> ApiResult<Json<DeviceOut>> {
    let d = devices::take_back(&s.app(), &caller.actor(), &id, &req).await?;
    Ok(Json(device_out(&s, &d, now_ms())))
}

#[derive(Serialize, ToSchema)]
pub struct RotatedKeyOut {
    pub id: String,
    /// The new key, 64 hex characters: shown this once, for re-provisioning a device that
    /// lost its memory. The device itself gets it in its signed `cfg`.
    pub key: String,
    pub device: DeviceOut,
}

/// Gives a device a new key. The old one stays valid until the device signs a message with
/// the new one, which it learns from a signed `cfg` (docs/protocol.md, "Key rotation").
#[utoipa::path(post, path = "/api/devices/{id}/rotate-key", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = RotatedKeyOut), (status = 403, body = Problem, content_type = "application/problem+json", description = "A device in stock, and the caller a regional coordinator"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_device_key(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RotatedKeyOut>> {
    let (d, key) = devices::rotate_key(&s.app(), &caller.actor(), &id).await?;
    Ok(Json(RotatedKeyOut {
        id: d.id.clone(),
        key: key.to_hex(),
        device: device_out(&s, &d, now_ms()),
    }))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(get_device, patch_device))
        .routes(routes!(issue_device))
        .routes(routes!(return_device))
        .routes(routes!(rotate_device_key))
}
