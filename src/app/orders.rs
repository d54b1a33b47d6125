//! Restraining orders of a case, with the zones the restrained person must keep out of;
//! made and changed by coordinators of the case's region.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{devices, new_id, optional_text, present, text, Actor, AppError, AppResult, Ctx};
use crate::domain::geo::{zone_from_geojson, zone_to_geojson};
use crate::domain::{
    now_ms, parse_rfc3339, rfc3339, DeviceKind, Order, OrderKind, Restrained, Zone,
};
use crate::store::{Audit, Role, StoreError};

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

impl ZoneIo {
    /// A stored zone as a request would give it.
    pub fn of(zone: &Zone) -> ZoneIo {
        let (geometry, radius_m) = zone_to_geojson(zone);
        ZoneIo {
            name: zone.name.clone(),
            geometry,
            radius_m,
        }
    }
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

/// Checks an order as received, for creating or replacing one.
async fn validate(
    ctx: &Ctx,
    actor: &Actor,
    id: String,
    case_id: String,
    req: NewOrder,
) -> AppResult<Order> {
    let valid_from = parse_rfc3339(&req.valid_from)
        .ok_or_else(|| AppError::invalid("valid_from", "not an RFC 3339 time"))?;
    let valid_to = parse_rfc3339(&req.valid_to)
        .ok_or_else(|| AppError::invalid("valid_to", "not an RFC 3339 time"))?;
    if valid_to <= valid_from {
        return Err(AppError::invalid("valid_to", "must be after valid_from"));
    }
    if req.zones.len() > 50 {
        return Err(AppError::invalid("zones", "at most 50 zones"));
    }
    let mut zones = Vec::with_capacity(req.zones.len());
    for (i, z) in req.zones.iter().enumerate() {
        let name = text(&format!("zones[{i}].name"), &z.name, 100)?;
        let zone = zone_from_geojson(&name, &z.geometry, z.radius_m, &ctx.config.zone_bounds)
            .map_err(|e| AppError::invalid(&format!("zones[{i}].geometry"), e.to_string()))?;
        zones.push(zone);
    }
    if let Some(tag) = &req.tag_device_id {
        if req.kind != OrderKind::SpecialExtended {
            return Err(AppError::invalid(
                "tag_device_id",
                "only a special_extended order has a tag",
            ));
        }
        // Another region's devices are answered as if they did not exist.
        match ctx.store.device(tag).await {
            Ok(d) if !devices::visible(actor, &ctx.directory.snapshot(), &d) => {
                return Err(AppError::invalid("tag_device_id", "no such device"))
            }
            Ok(d) if d.kind == DeviceKind::Tag => {}
            Ok(_) => {
                return Err(AppError::invalid(
                    "tag_device_id",
                    "that device is not a tag",
                ))
            }
            Err(StoreError::NotFound) => {
                return Err(AppError::invalid("tag_device_id", "no such device"))
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

/// Adds an order to a case of the actor's regions.
pub async fn create(ctx: &Ctx, actor: &Actor, case_id: &str, req: NewOrder) -> AppResult<Order> {
    actor.require(&[Role::Coordinator])?;
    let case = super::cases::in_region(ctx, actor, case_id).await?;
    let order = validate(ctx, actor, new_id("o"), case.id.clone(), req).await?;
    let audit = Audit::new(actor.name(), "order_created")
        .subject(&order.id)
        .case(Some(&case.id));
    ctx.store.insert_order(&order, now_ms(), &audit).await?;
    ctx.refresh_case(&case.id).await;
    Ok(order)
}

/// One order of a case of the actor's regions; another region's is not found.
pub async fn in_region(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<Order> {
    let order = ctx.store.order(id).await?;
    super::cases::in_region(ctx, actor, &order.case_id).await?;
    Ok(order)
}

/// Changes what `req` names of an order, keeping the rest.
pub async fn change(ctx: &Ctx, actor: &Actor, id: &str, req: OrderChange) -> AppResult<Order> {
    actor.require(&[Role::Coordinator])?;
    let current = in_region(ctx, actor, id).await?;
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
        zones: req
            .zones
            .unwrap_or_else(|| current.zones.iter().map(ZoneIo::of).collect()),
        tag_device_id: req.tag_device_id.unwrap_or(current.tag_device_id.clone()),
    };
    let order = validate(
        ctx,
        actor,
        current.id.clone(),
        current.case_id.clone(),
        merged,
    )
    .await?;
    let audit = Audit::new(actor.name(), "order_changed")
        .subject(&order.id)
        .case(Some(&order.case_id));
    ctx.store.update_order(&order, now_ms(), &audit).await?;
    ctx.refresh_case(&order.case_id).await;
    Ok(order)
}
