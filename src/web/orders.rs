//! Restraining orders of a case, with the zones the restrained person must keep out of.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::cases::case_in_region;
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::persons::{case_sight, ReasonQuery};
use super::AppState;
use crate::app::devices;
use crate::app::{new_id, optional_text, present, text};
use crate::domain::geo::{zone_from_geojson, zone_to_geojson};
use crate::domain::{now_ms, parse_rfc3339, rfc3339, DeviceKind, Order, OrderKind, Restrained};
use crate::store::{Audit, Role};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrainedIn {
    pub name: String,
    pub description: Option<String>,
    pub vehicle: Option<String>,
    pub photo_ref: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct ZoneIo {
    pub name: String,
    /// A GeoJSON Polygon, or a Point with `radius_m` for a circle.
    #[schema(value_type = Object)]
    pub geometry: serde_json::Value,
    pub radius_m: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub kind: OrderKind,
    pub restrained: RestrainedIn,
    /// RFC 3339.
    pub valid_from: String,
    pub valid_to: String,
    #[serde(default)]
    pub zones: Vec<ZoneIo>,
    pub tag_device_id: Option<String>,
}

/// A zone as the API shows it. For a protected person's order without a reason, only its
/// name and shape: the geometry would show where the person lives.
#[derive(Serialize, ToSchema)]
pub struct ZoneOut {
    pub name: String,
    /// `circle` or `polygon`.
    #[schema(value_type = String, example = "circle")]
    pub shape: &'static str,
    /// A GeoJSON Polygon, or a Point with `radius_m` for a circle; absent when `masked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub geometry: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    pub masked: bool,
}

#[derive(Serialize, ToSchema)]
pub struct OrderOut {
    pub id: String,
    pub case_id: String,
    pub kind: OrderKind,
    pub restrained: Restrained,
    pub valid_from: String,
    pub valid_to: String,
    pub zones: Vec<ZoneOut>,
    /// True when the zones' geometry was withheld (a protected person's order, no reason
    /// given; `?reason=` shows it, and is logged).
    pub zones_masked: bool,
    pub tag_device_id: Option<String>,
    pub in_force: bool,
}

#[utoipa::path(post, path = "/api/cases/{id}/orders", tag = "orders", params(("id" = String, Path)), request_body = NewOrder,
    responses((status = 201, body = OrderOut), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn create_order(
    State(s): State<AppState>,
    caller: Caller,
    Path(case_id): Path<String>,
    Body(req): Body<NewOrder>,
) -> ApiResult<(StatusCode, Json<OrderOut>)> {
    caller.require(&[Role::Coordinator])?;
    let case = case_in_region(&s, &caller, &case_id).await?;
    let order = validate_order(&s, &caller, new_id("o"), case.id.clone(), req).await?;
    let now = now_ms();
    let audit = Audit::new(Some(&caller.username), "order_created")
        .subject(&order.id)
        .case(Some(&case.id));
    s.store.insert_order(&order, now, &audit).await?;
    s.refresh_directory().await;
    // The answer holds what the request held, nothing more.
    Ok((
        StatusCode::CREATED,
        Json(mask::order(&order, Sight::Full, now)),
    ))
}

/// Checks an order as the API receives it, for creating or replacing one.
pub(super) async fn validate_order(
    s: &AppState,
    caller: &Caller,
    id: String,
    case_id: String,
    req: NewOrder,
) -> ApiResult<Order> {
    let valid_from = parse_rfc3339(&req.valid_from)
        .ok_or_else(|| ApiError::invalid("valid_from", "not an RFC 3339 time"))?;
    let valid_to = parse_rfc3339(&req.valid_to)
        .ok_or_else(|| ApiError::invalid("valid_to", "not an RFC 3339 time"))?;
    if valid_to <= valid_from {
        return Err(ApiError::invalid("valid_to", "must be after valid_from"));
    }
    if req.zones.len() > 50 {
        return Err(ApiError::invalid("zones", "at most 50 zones"));
    }
    let mut zones = Vec::with_capacity(req.zones.len());
    for (i, z) in req.zones.iter().enumerate() {
        let name = text(&format!("zones[{i}].name"), &z.name, 100)?;
        let zone = zone_from_geojson(&name, &z.geometry, z.radius_m, &s.config.zone_bounds)
            .map_err(|e| ApiError::invalid(&format!("zones[{i}].geometry"), e.to_string()))?;
        zones.push(zone);
    }
    if let Some(tag) = &req.tag_device_id {
        if req.kind != OrderKind::SpecialExtended {
            return Err(ApiError::invalid(
                "tag_device_id",
                "only a special_extended order has a tag",
            ));
        }
        // Another region's devices are answered as if they did not exist.
        match s.store.device(tag).await {
            Ok(d) if !devices::visible(&caller.actor(), &s.directory.snapshot(), &d) => {
                return Err(ApiError::invalid("tag_device_id", "no such device"))
            }
            Ok(d) if d.kind == DeviceKind::Tag => {}
            Ok(_) => {
                return Err(ApiError::invalid(
                    "tag_device_id",
                    "that device is not a tag",
                ))
            }
            Err(crate::store::StoreError::NotFound) => {
                return Err(ApiError::invalid("tag_device_id", "no such device"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Order {
        id,
        case_id,
        kind: req.kind,
        restrained: Restrained {
            name: text("restrained.name", &req.restrained.name, 200)?,
            description: optional_text(
                "restrained.description",
                req.restrained.description.as_deref(),
                1000,
            )?,
            vehicle: optional_text("restrained.vehicle", req.restrained.vehicle.as_deref(), 200)?,
            photo_ref: optional_text(
                "restrained.photo_ref",
                req.restrained.photo_ref.as_deref(),
                500,
            )?,
        },
        valid_from,
        valid_to,
        zones,
        tag_device_id: req.tag_device_id,
    })
}

pub(super) async fn order_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Order> {
    let order = s.store.order(id).await?;
    case_in_region(s, caller, &order.case_id).await?;
    Ok(order)
}

#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = OrderOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<OrderOut>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let order = order_in_region(&s, &caller, &id).await?;
    let case = s.store.case(&order.case_id).await?;
    let sight = case_sight(&s, &caller, q.reason.as_deref(), &case).await?;
    Ok(Json(mask::order(&order, sight, now_ms())))
}

/// A change to an order: every member optional, the rest kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderChange {
    pub kind: Option<OrderKind>,
    pub restrained: Option<RestrainedIn>,
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub zones: Option<Vec<ZoneIo>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub tag_device_id: Option<Option<String>>,
}

#[utoipa::path(patch, path = "/api/orders/{id}", tag = "orders", params(("id" = String, Path)), request_body = OrderChange,
    responses((status = 200, body = OrderOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_order(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<OrderChange>,
) -> ApiResult<Json<OrderOut>> {
    caller.require(&[Role::Coordinator])?;
    let current = order_in_region(&s, &caller, &id).await?;
    let merged = NewOrder {
        kind: req.kind.unwrap_or(current.kind),
        restrained: req.restrained.unwrap_or(RestrainedIn {
            name: current.restrained.name.clone(),
            description: current.restrained.description.clone(),
            vehicle: current.restrained.vehicle.clone(),
            photo_ref: current.restrained.photo_ref.clone(),
        }),
        valid_from: req
            .valid_from
            .unwrap_or_else(|| rfc3339(current.valid_from)),
        valid_to: req.valid_to.unwrap_or_else(|| rfc3339(current.valid_to)),
        zones: req.zones.unwrap_or_else(|| {
            current
                .zones
                .iter()
                .map(|z| {
                    let (geometry, radius_m) = zone_to_geojson(z);
                    ZoneIo {
                        name: z.name.clone(),
                        geometry,
                        radius_m,
                    }
                })
                .collect()
        }),
        tag_device_id: req.tag_device_id.unwrap_or(current.tag_device_id.clone()),
    };
    let order = validate_order(
        &s,
        &caller,
        current.id.clone(),
        current.case_id.clone(),
        merged,
    )
    .await?;
    let audit = Audit::new(Some(&caller.username), "order_changed")
        .subject(&order.id)
        .case(Some(&order.case_id));
    s.store.update_order(&order, now_ms(), &audit).await?;
    s.refresh_directory().await;
    let case = s.store.case(&order.case_id).await?;
    let sight = case_sight(&s, &caller, None, &case).await?;
    Ok(Json(mask::order(&order, sight, now_ms())))
}

#[utoipa::path(get, path = "/api/cases/{id}/orders", tag = "orders", params(("id" = String, Path), ReasonQuery), responses((status = 200, body = [OrderOut]), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_orders(
    State(s): State<AppState>,
    caller: Caller,
    Path(case_id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<Vec<OrderOut>>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let case = case_in_region(&s, &caller, &case_id).await?;
    // One case's orders: a reason here reveals that one case, like its detail.
    let sight = case_sight(&s, &caller, q.reason.as_deref(), &case).await?;
    let now = now_ms();
    Ok(Json(
        s.store
            .orders_of_case(&case_id)
            .await?
            .iter()
            .map(|o| mask::order(o, sight, now))
            .collect(),
    ))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order, patch_order))
}
