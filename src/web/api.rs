//! The REST resources (documented at `/api/openapi.json`): persons, cases, orders, devices, alerts, audit.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight, MASK};
use super::AppState;
use crate::directory::Index;
use crate::domain::geo::{zone_from_geojson, zone_to_geojson};
use crate::domain::{
    now_ms, parse_rfc3339, rfc3339, Address, Alert, AlertState, Case, DeviceKind, DeviceStatus,
    Order, OrderKind, Outcome, Person, Position, Relative, Restrained, Risk,
};
use crate::metrics::Metrics;
use crate::protocol::{self, DeviceKey, Feedback};
use crate::store::{CasePatch, DeviceHealth, DeviceRecord, HistoryEntry, Role};

fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn text(field: &str, v: &str, max: usize) -> ApiResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(t.to_owned())
}

fn optional_text(field: &str, v: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => text(field, t, max).map(Some),
    }
}

// ---------------------------------------------------------------- persons

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    #[serde(default)]
    pub protected_identity: bool,
    /// The region that owns the person, one of `GET /api/regions` (by name or code,
    /// ignoring case); defaults to the coordinator's own.
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PersonOut {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub protected_identity: bool,
    /// True when name, phone and address were withheld (protected identity, no reason given).
    pub masked: bool,
    pub region: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ReasonQuery {
    /// Why the protected details are needed; logged with who asked.
    pub reason: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct AlertRevealQuery {
    /// Why the protected details are needed; logged with who asked.
    pub reason: Option<String>,
    /// `true`: the caller is the officer who acknowledged this alert and is handling it;
    /// the server checks that and logs the reveal as "handling alert N". No typed reason.
    pub handling: Option<bool>,
}

#[utoipa::path(post, path = "/api/persons", tag = "persons", request_body = NewPerson,
    responses((status = 201, body = PersonOut), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_person(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewPerson>,
) -> ApiResult<(StatusCode, Json<PersonOut>)> {
    caller.require(&[Role::Coordinator])?;
    // One of the list, spelled as the list spells it: the officers of the region see it.
    let region = match optional_text("region", req.region.as_deref(), 100)? {
        Some(r) => {
            let r = super::regions::region_in_list(&s, &r).await?;
            if !caller.covers(Some(&r)) {
                return Err(ApiError::invalid("region", "outside your region"));
            }
            Some(r)
        }
        None => caller.region.clone(),
    };
    if let Some(a) = &req.address {
        text("address.text", &a.text, 300)?;
        if Position::new(a.lat, a.lon, None).is_none() {
            return Err(ApiError::invalid(
                "address.lat",
                "latitude -90..90 and longitude -180..180",
            ));
        }
        // Zones are drawn around this position and alarms measured from it: a position
        // outside the country is a typing error (swapped or truncated coordinates).
        let bounds = &s.config.zone_bounds;
        if !bounds.contains((a.lat, a.lon)) {
            let field = if (bounds.min_lat..=bounds.max_lat).contains(&a.lat) {
                "address.lon"
            } else {
                "address.lat"
            };
            return Err(ApiError::invalid(
                field,
                format!(
                    "the position lies outside the area served (latitude {}..{}, longitude {}..{}); are latitude and longitude swapped?",
                    bounds.min_lat, bounds.max_lat, bounds.min_lon, bounds.max_lon
                ),
            ));
        }
    }
    let person = Person {
        id: new_id("p"),
        name: text("name", &req.name, 200)?,
        phone: optional_text("phone", req.phone.as_deref(), 40)?,
        address: req.address,
        protected_identity: req.protected_identity,
        region,
    };
    let now = now_ms();
    s.store.insert_person(&person, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "person_created",
            Some(&person.id),
            None,
            None,
            now,
        )
        .await?;
    // The answer holds what the request held, nothing more.
    Ok((
        StatusCode::CREATED,
        Json(mask::person(&person, Sight::Full)),
    ))
}

#[utoipa::path(get, path = "/api/persons", tag = "persons", responses((status = 200, body = [PersonOut])))]
pub async fn list_persons(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PersonOut>>> {
    caller.require(&[Role::Coordinator])?;
    let persons = s.store.persons().await?;
    Ok(Json(
        persons
            .iter()
            .filter(|p| caller.covers(p.region.as_deref()))
            .map(|p| mask::person(p, Sight::of(p.protected_identity, false)))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/persons/{id}", tag = "persons", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = PersonOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_person(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<PersonOut>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let p = s.store.person(&id).await?;
    caller
        .require_region(p.region.as_deref())
        .map_err(|_| ApiError::NotFound)?;
    let sight = reveal(&s, &caller, q.reason.as_deref(), &p, None, true).await?;
    Ok(Json(mask::person(&p, sight)))
}

/// Decides what the caller sees of a person's case (see `mask`): with a stated reason,
/// everything, and the reveal is logged with the reason; without one, a protected person's
/// data is masked. A view that shows the person (`shows_person`) is logged either way.
async fn reveal(
    s: &AppState,
    caller: &Caller,
    reason: Option<&str>,
    p: &Person,
    case_id: Option<&str>,
    shows_person: bool,
) -> ApiResult<Sight> {
    let reason = optional_text("reason", reason, 500)?;
    let revealed = p.protected_identity && reason.is_some();
    if revealed || shows_person {
        let action = if revealed {
            "person_revealed"
        } else {
            "person_viewed"
        };
        s.store
            .audit(
                Some(&caller.username),
                action,
                Some(&p.id),
                case_id,
                reason.as_deref(),
                now_ms(),
            )
            .await?;
    }
    Ok(Sight::of(p.protected_identity, reason.is_some()))
}

/// What the caller sees of a case whose person is not part of the answer (its orders, the
/// answer to a change): masked for a protected person unless a reason is stated.
async fn case_sight(
    s: &AppState,
    caller: &Caller,
    reason: Option<&str>,
    case: &Case,
) -> ApiResult<Sight> {
    let person = s.store.person(&case.person_id).await?;
    reveal(s, caller, reason, &person, Some(&case.id), false).await
}

// ---------------------------------------------------------------- cases

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub reference: String,
    pub person_id: String,
    pub risk: Risk,
    /// One of `GET /api/regions`, by name or code, ignoring case; the person's region when
    /// left out.
    #[serde(default)]
    pub region: Option<String>,
    pub response_plan: Option<String>,
    #[serde(default)]
    pub relatives: Vec<Relative>,
}

fn relatives(list: Vec<Relative>) -> ApiResult<Vec<Relative>> {
    if list.len() > 20 {
        return Err(ApiError::invalid("relatives", "at most 20"));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("relatives[{i}].name");
            if r.name.trim() == MASK {
                // A masked case sent back unchanged would overwrite the names it withheld.
                return Err(ApiError::invalid(
                    &field,
                    "a withheld name: reveal the case before changing its relatives",
                ));
            }
            Ok(Relative {
                name: text(&field, &r.name, 200)?,
                relation: optional_text(
                    &format!("relatives[{i}].relation"),
                    r.relation.as_deref(),
                    100,
                )?,
                phone: optional_text(&format!("relatives[{i}].phone"), r.phone.as_deref(), 40)?,
            })
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct CaseOut {
    pub id: String,
    pub reference: String,
    pub person_id: String,
    pub risk: Risk,
    pub region: String,
    /// Null when there is none, or when `masked`.
    pub response_plan: Option<String>,
    /// Names are `***` and phones null when `masked`.
    pub relatives: Vec<Relative>,
    /// True when the response plan and the relatives' names and phones were withheld: the
    /// case of a person with a protected identity, and no reason given (`?reason=` on the
    /// case or alert detail shows them, and is logged).
    pub masked: bool,
    pub closed_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseOut,
    pub person: PersonOut,
    pub orders: Vec<OrderOut>,
    pub devices: Vec<DeviceOut>,
}

#[utoipa::path(post, path = "/api/cases", tag = "cases", request_body = NewCase,
    responses((status = 201, body = CaseOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_case(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewCase>,
) -> ApiResult<(StatusCode, Json<CaseOut>)> {
    caller.require(&[Role::Coordinator])?;
    let given = match optional_text("region", req.region.as_deref(), 100)? {
        Some(r) => {
            let r = super::regions::region_in_list(&s, &r).await?;
            if !caller.covers(Some(&r)) {
                return Err(ApiError::invalid("region", "outside your region"));
            }
            Some(r)
        }
        None => None,
    };
    let person = match s.store.person(&req.person_id).await {
        Ok(p) => p,
        Err(crate::store::StoreError::NotFound) => {
            return Err(ApiError::invalid("person_id", "no such person"))
        }
        Err(e) => return Err(e.into()),
    };
    if !caller.covers(person.region.as_deref()) {
        return Err(ApiError::invalid("person_id", "no such person"));
    }
    // A case left without a region is where its person is, so the same officers see both.
    let region = match (given, &person.region) {
        (Some(r), _) => r,
        (None, Some(r)) => super::regions::region_in_list(&s, r).await?,
        (None, None) => {
            return Err(ApiError::invalid(
                "region",
                "required: the person has no region to take",
            ))
        }
    };
    let case = Case {
        id: new_id("c"),
        reference: text("reference", &req.reference, 100)?,
        person_id: person.id,
        risk: req.risk,
        region,
        response_plan: optional_text("response_plan", req.response_plan.as_deref(), 4000)?,
        relatives: relatives(req.relatives)?,
        closed_at: None,
    };
    let now = now_ms();
    s.store.insert_case(&case, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "case_created",
            Some(&case.id),
            Some(&case.id),
            None,
            now,
        )
        .await?;
    s.refresh_directory().await;
    // The answer holds what the request held, nothing more.
    Ok((StatusCode::CREATED, Json(mask::case(&case, Sight::Full))))
}

#[utoipa::path(get, path = "/api/cases", tag = "cases", responses((status = 200, body = [CaseOut])))]
pub async fn list_cases(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CaseOut>>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let cases = s.store.cases().await?;
    let protected: std::collections::HashSet<String> = s
        .store
        .persons()
        .await?
        .into_iter()
        .filter(|p| p.protected_identity)
        .map(|p| p.id)
        .collect();
    // A list takes no reason: protected cases are revealed one at a time, on their detail.
    Ok(Json(
        cases
            .iter()
            .filter(|c| caller.covers(Some(&c.region)))
            .map(|c| mask::case(c, Sight::of(protected.contains(&c.person_id), false)))
            .collect(),
    ))
}

async fn case_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Case> {
    let case = s.store.case(id).await?;
    // Another region's case is not there for this caller.
    caller
        .require_region(Some(&case.region))
        .map_err(|_| ApiError::NotFound)?;
    Ok(case)
}

#[utoipa::path(get, path = "/api/cases/{id}", tag = "cases", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = CaseDetail), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_case(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<CaseDetail>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let case = case_in_region(&s, &caller, &id).await?;
    let person = s.store.person(&case.person_id).await?;
    let sight = reveal(
        &s,
        &caller,
        q.reason.as_deref(),
        &person,
        Some(&case.id),
        true,
    )
    .await?;
    let orders = s.store.orders_of_case(&case.id).await?;
    let devices = s.store.devices().await?;
    let now = now_ms();
    Ok(Json(CaseDetail {
        person: mask::person(&person, sight),
        orders: orders.iter().map(|o| mask::order(o, sight, now)).collect(),
        devices: devices
            .iter()
            .filter(|d| d.case_id.as_deref() == Some(case.id.as_str()))
            .map(|d| device_out(&s, d, now))
            .collect(),
        case: mask::case(&case, sight),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseChange {
    pub risk: Option<Risk>,
    /// A string sets the plan; `null` clears it; leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub response_plan: Option<Option<String>>,
    /// Replaces the list when given.
    pub relatives: Option<Vec<Relative>>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in PATCH bodies.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/api/cases/{id}", tag = "cases", params(("id" = String, Path)), request_body = CaseChange,
    responses((status = 200, body = CaseOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_case(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<CaseChange>,
) -> ApiResult<Json<CaseOut>> {
    caller.require(&[Role::Coordinator])?;
    case_in_region(&s, &caller, &id).await?;
    let plan = match req.response_plan {
        Some(Some(p)) => Some(optional_text("response_plan", Some(&p), 4000)?),
        Some(None) => Some(None),
        None => None,
    };
    let case = s
        .store
        .update_case(
            &id,
            &CasePatch {
                risk: req.risk,
                response_plan: plan,
                relatives: req.relatives.map(relatives).transpose()?,
            },
        )
        .await?;
    s.store
        .audit(
            Some(&caller.username),
            "case_changed",
            Some(&id),
            Some(&id),
            None,
            now_ms(),
        )
        .await?;
    s.refresh_directory().await;
    let sight = case_sight(&s, &caller, None, &case).await?;
    Ok(Json(mask::case(&case, sight)))
}

#[utoipa::path(post, path = "/api/cases/{id}/close", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn close_case(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CaseOut>> {
    caller.require(&[Role::Coordinator])?;
    case_in_region(&s, &caller, &id).await?;
    let now = now_ms();
    let case = s.store.close_case(&id, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "case_closed",
            Some(&id),
            Some(&id),
            None,
            now,
        )
        .await?;
    s.refresh_directory().await;
    let sight = case_sight(&s, &caller, None, &case).await?;
    Ok(Json(mask::case(&case, sight)))
}

// ---------------------------------------------------------------- orders

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
    s.store.insert_order(&order, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "order_created",
            Some(&order.id),
            Some(&case.id),
            None,
            now,
        )
        .await?;
    s.refresh_directory().await;
    // The answer holds what the request held, nothing more.
    Ok((
        StatusCode::CREATED,
        Json(mask::order(&order, Sight::Full, now)),
    ))
}

/// Checks an order as the API receives it, for creating or replacing one.
async fn validate_order(
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
            Ok(d) if !device_visible(caller, &s.directory.snapshot(), &d) => {
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

async fn order_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Order> {
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
    s.store.update_order(&order).await?;
    s.store
        .audit(
            Some(&caller.username),
            "order_changed",
            Some(&order.id),
            Some(&order.case_id),
            None,
            now_ms(),
        )
        .await?;
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

// ---------------------------------------------------------------- devices

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

fn hb_interval(v: Option<u32>) -> ApiResult<Option<u32>> {
    match v {
        Some(hb) if !(1..=86_400).contains(&hb) => {
            Err(ApiError::invalid("hb_interval_s", "1 to 86400 seconds"))
        }
        other => Ok(other),
    }
}

fn supervision_class(s: &AppState, v: Option<&str>) -> ApiResult<String> {
    match v {
        None => Ok("standard".to_owned()),
        Some(c) if s.config.supervision.classes.contains_key(c) => Ok(c.to_owned()),
        Some(_) => Err(ApiError::invalid(
            "supervision_class",
            format!(
                "one of {}",
                s.config
                    .supervision
                    .classes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn alarm_kind() -> DeviceKind {
    DeviceKind::Alarm
}

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

/// The interval the backend holds a device to: the coordinator's, else the device's own.
pub fn effective_hb(s: &AppState, d: &DeviceRecord) -> u32 {
    d.hb_interval_s
        .or(d.health.hello_hb_s)
        .unwrap_or(s.config.default_hb_s)
}

pub fn connection_state(h: &DeviceHealth, hb_s: u32, grace_s: u64, now: i64) -> &'static str {
    match h.last_heard_at {
        None => "never_heard",
        Some(t) if now - t > (hb_s as i64 * 2 + grace_s as i64) * 1000 => "silent",
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
            connection: match &s.supervision {
                Some(sup) if sup.is_silent(&d.id) => "silent".into(),
                _ => connection_state(&d.health, hb, s.config.grace_for(&d.supervision_class), now)
                    .into(),
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
    caller.require(&[Role::Coordinator])?;
    let out = add_device(&s, &req, Some(&caller.username)).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Shared by the API and `vakt device add`.
pub async fn add_device(
    s: &AppState,
    req: &NewDevice,
    actor: Option<&str>,
) -> ApiResult<NewDeviceOut> {
    match protocol::new_device_id(&req.id, &s.config.backend_identities()) {
        Ok(_) => {}
        Err(protocol::ProtocolError::ReservedDeviceId) => {
            // A device under the backend's name could take the backend's place on the broker:
            // worth an administrator's look even though it is refused.
            Metrics::inc(&s.metrics.security_events_total);
            let detail = format!(
                "{} tried to add a device with the reserved id {:?}",
                actor.unwrap_or("the command line"),
                req.id
            );
            tracing::warn!(detail, "security event: reserved device id refused");
            if let Err(e) = s
                .store
                .security_event(None, "reserved_device_id", &detail, now_ms())
                .await
            {
                tracing::error!(error = %e, "could not store a security event");
            }
            return Err(ApiError::invalid(
                "id",
                "reserved: ids starting with `vakt-`, and the backend's own broker names, are the backend's",
            ));
        }
        Err(_) => return Err(ApiError::invalid("id", "3 to 64 of A-Z a-z 0-9 _ -")),
    }
    hb_interval(req.hb_interval_s)?;
    let class = supervision_class(s, req.supervision_class.as_deref())?;
    let key = DeviceKey::generate();
    let now = now_ms();
    let record = DeviceRecord {
        model: optional_text("model", req.model.as_deref(), 100)?,
        hb_interval_s: req.hb_interval_s,
        supervision_class: class,
        ..DeviceRecord::in_stock(
            &req.id,
            req.kind,
            s.directory.vault().seal(&key, &req.id),
            now,
        )
    };
    s.store.insert_device(&record).await?;
    s.store
        .audit(actor, "device_added", Some(&record.id), None, None, now)
        .await?;
    s.refresh_device(&record.id).await;
    Ok(NewDeviceOut {
        id: record.id,
        key: key.to_hex(),
        kind: record.kind,
        status: record.status,
    })
}

#[utoipa::path(get, path = "/api/devices", tag = "devices", responses((status = 200, body = [DeviceOut])))]
pub async fn list_devices(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeviceOut>>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let index = s.directory.snapshot();
    let now = now_ms();
    let devices = s.store.devices().await?;
    Ok(Json(
        devices
            .iter()
            .filter(|d| device_visible(&caller, &index, d))
            .map(|d| device_out(&s, d, now))
            .collect(),
    ))
}

/// Devices in stock belong to no region: every coordinator sees the shared stock, to issue
/// from it. Issued (and returned, lost) ones belong to their case's region.
fn device_visible(caller: &Caller, index: &Index, d: &DeviceRecord) -> bool {
    match &d.case_id {
        None => caller.role != Role::Officer,
        Some(_) => caller.covers(device_region(index, d)),
    }
}

/// The region a device belongs to: its case's; none while in stock.
fn device_region<'a>(index: &'a Index, d: &DeviceRecord) -> Option<&'a str> {
    d.case_id
        .as_ref()
        .and_then(|c| index.cases.get(c))
        .map(|c| c.region.as_str())
}

#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceOut>> {
    caller.require(&[Role::Coordinator, Role::Officer])?;
    let d = s.store.device(&id).await?;
    if !device_visible(&caller, &s.directory.snapshot(), &d) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(device_out(&s, &d, now_ms())))
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

#[utoipa::path(patch, path = "/api/devices/{id}", tag = "devices", params(("id" = String, Path)), request_body = DeviceChange,
    responses((status = 200, body = DeviceOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<DeviceChange>,
) -> ApiResult<Json<DeviceOut>> {
    caller.require(&[Role::Coordinator])?;
    let current = s.store.device(&id).await?;
    if !device_visible(&caller, &s.directory.snapshot(), &current) {
        return Err(ApiError::NotFound);
    }
    let hb = match req.hb_interval_s {
        Some(v) => hb_interval(v)?,
        None => current.hb_interval_s,
    };
    let class = match req.supervision_class.as_deref() {
        Some(c) => supervision_class(&s, Some(c))?,
        None => current.supervision_class.clone(),
    };
    let d = s.store.update_device_settings(&id, hb, &class).await?;
    let now = now_ms();
    let detail = format!("hb_interval_s={hb:?} supervision_class={class}");
    s.store
        .audit(
            Some(&caller.username),
            "device_changed",
            Some(&id),
            d.case_id.as_deref(),
            Some(&detail),
            now,
        )
        .await?;
    s.refresh_device(&id).await;
    // The device learns its new interval from the signed, retained configuration.
    if let (Some(_), Some(downlink)) = (hb, &s.downlink) {
        downlink.config(&d.id).await;
    }
    Ok(Json(device_out(&s, &d, now)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub case_id: String,
    pub holder_person_id: String,
}

#[utoipa::path(post, path = "/api/devices/{id}/issue", tag = "devices", params(("id" = String, Path)), request_body = IssueRequest,
    responses((status = 200, body = DeviceOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn issue_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<IssueRequest>,
) -> ApiResult<Json<DeviceOut>> {
    caller.require(&[Role::Coordinator])?;
    let case = match s.store.case(&req.case_id).await {
        Ok(c) if caller.covers(Some(&c.region)) => c,
        Ok(_) | Err(crate::store::StoreError::NotFound) => {
            return Err(ApiError::invalid("case_id", "no such case"))
        }
        Err(e) => return Err(e.into()),
    };
    if case.closed_at.is_some() {
        return Err(ApiError::invalid("case_id", "the case is closed"));
    }
    // A person or device of another region is answered exactly as one that does not exist:
    // the answer tells nothing about other regions.
    match s.store.person(&req.holder_person_id).await {
        Ok(p) if caller.covers(p.region.as_deref()) => {}
        Ok(_) | Err(crate::store::StoreError::NotFound) => {
            return Err(ApiError::invalid("holder_person_id", "no such person"))
        }
        Err(e) => return Err(e.into()),
    }
    let current = s.store.device(&id).await?;
    if !device_visible(&caller, &s.directory.snapshot(), &current) {
        return Err(ApiError::NotFound);
    }
    let now = now_ms();
    let d = s
        .store
        .issue_device(&id, &case.id, &req.holder_person_id, now)
        .await?;
    s.store
        .audit(
            Some(&caller.username),
            "device_issued",
            Some(&id),
            Some(&case.id),
            None,
            now,
        )
        .await?;
    s.refresh_device(&id).await;
    if let (Some(_), Some(downlink)) = (d.hb_interval_s, &s.downlink) {
        downlink.config(&d.id).await;
    }
    Ok(Json(device_out(&s, &d, now)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub reason: String,
    /// True when the device was lost rather than handed back.
    #[serde(default)]
    pub lost: bool,
}

#[utoipa::path(post, path = "/api/devices/{id}/return", tag = "devices", params(("id" = String, Path)), request_body = ReturnRequest,
    responses((status = 200, body = DeviceOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn return_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReturnRequest>,
) -> ApiResult<Json<DeviceOut>> {
    caller.require(&[Role::Coordinator])?;
    let current = s.store.device(&id).await?;
    if !device_visible(&caller, &s.directory.snapshot(), &current) {
        return Err(ApiError::NotFound);
    }
    let reason = text("reason", &req.reason, 500)?;
    let status = if req.lost {
        DeviceStatus::Lost
    } else {
        DeviceStatus::Returned
    };
    let now = now_ms();
    let d = s.store.return_device(&id, status, &reason, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "device_returned",
            Some(&id),
            current.case_id.as_deref(),
            Some(&reason),
            now,
        )
        .await?;
    s.refresh_device(&id).await;
    Ok(Json(device_out(&s, &d, now)))
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
    caller.require(&[Role::Coordinator])?;
    let current = s.store.device(&id).await?;
    let index = s.directory.snapshot();
    if !device_visible(&caller, &index, &current) {
        return Err(ApiError::NotFound);
    }
    // The new key is shown to the caller: only someone of the device's region may see it.
    // A device in stock belongs to no region yet, so only a national coordinator re-keys
    // it; a regional one would otherwise keep the key of a device issued elsewhere later.
    caller.require_region(device_region(&index, &current))?;
    let (d, key) = rotate_key(&s, &id, Some(&caller.username)).await?;
    Ok(Json(RotatedKeyOut {
        id: d.id.clone(),
        key: key.to_hex(),
        device: device_out(&s, &d, now_ms()),
    }))
}

/// Shared by the API and `vakt device rotate-key`: stores the sealed next key and, when this
/// process talks to the broker, announces it at once; otherwise a running vakt announces it
/// within seconds (`announce_key_rotations`).
pub async fn rotate_key(
    s: &AppState,
    id: &str,
    actor: Option<&str>,
) -> ApiResult<(DeviceRecord, DeviceKey)> {
    let key = DeviceKey::generate();
    let now = now_ms();
    let sealed = s.directory.vault().seal(&key, id);
    let mut d = s.store.begin_key_rotation(id, &sealed, now).await?;
    s.store
        .audit(
            actor,
            "device_key_rotation_started",
            Some(id),
            d.case_id.as_deref(),
            None,
            now,
        )
        .await?;
    s.refresh_device(id).await;
    if let Some(downlink) = &s.downlink {
        if downlink.config(id).await {
            s.store.key_rotation_announced(id, &sealed, now).await?;
            d.key_rotation.announced_at = Some(now);
        }
    }
    Ok((d, key))
}

/// Publishes the `cfg` of rotations started elsewhere (the command line, another instance
/// whose broker link was down) and records that they went out.
pub async fn announce_key_rotations(s: &AppState) -> Result<usize, crate::store::StoreError> {
    let Some(downlink) = &s.downlink else {
        return Ok(0);
    };
    let mut announced = 0;
    for id in s.store.key_rotations_to_announce().await? {
        s.directory.refresh_device(&s.store, &id).await?;
        let Some((_, sealed)) = s.directory.device(&id).and_then(|e| e.next_key) else {
            continue;
        };
        if downlink.config(&id).await {
            s.store
                .key_rotation_announced(&id, &sealed, now_ms())
                .await?;
            announced += 1;
        }
    }
    Ok(announced)
}

// ---------------------------------------------------------------- alerts

#[derive(Serialize, ToSchema, Clone)]
pub struct AlertOut {
    pub id: i64,
    pub priority: u8,
    pub kind: crate::domain::AlertKind,
    pub state: AlertState,
    pub case_id: Option<String>,
    pub case_reference: Option<String>,
    pub risk: Option<Risk>,
    pub region: Option<String>,
    pub device_id: Option<String>,
    pub first_at: String,
    pub last_at: String,
    pub count: i64,
    pub position: Option<Position>,
    /// Why this priority, in English words, in order: what happened, then the case, the
    /// orders in force and where the position lies.
    pub reasons: Vec<String>,
    /// The same reasons with a code and their facts, for a client that words them itself.
    pub reason_details: Vec<crate::domain::Reason>,
    /// What the holder's device has been told about this alarm (`received`, `accepted`,
    /// `resolved`); absent when no device message opened the alert.
    #[schema(value_type = Option<String>, example = "received")]
    pub feedback: Option<&'static str>,
    /// The position and the reasons that place it are withheld: a resolved alert of a
    /// person with a protected identity is position history. `?reason=` on the detail
    /// shows them (and is logged).
    pub position_masked: bool,
    /// Reasons were withheld: for a protected person without a reason, the distances from
    /// the position to the registered address and to the zones around it (which, over a
    /// few alarms, would locate the address); once resolved, every reason that places it.
    pub reasons_masked: bool,
    pub overdue: bool,
    /// For a silence alert: the device has been heard again for two intervals.
    pub back_online: bool,
    pub cancel_pressed: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub outcome: Option<Outcome>,
    /// The nearest listed town or district to the position (offline, GeoNames), and how
    /// far and which way the position lies from it; absent without a position, abroad or
    /// more than 50 km from every listed place.
    pub place: Option<crate::domain::place::NearestPlace>,
    /// From the registered address to the position, e.g. 1500 m W: "1.5 km W of home".
    /// Absent without a position or an address on file, and withheld for a protected
    /// person (the position plus this is the address; docs/location.md).
    pub from_home: Option<crate::domain::place::Vector>,
}

/// Where an alert's position lies, in the words and numbers an officer passes on.
#[derive(Serialize, ToSchema)]
pub struct LocationOut {
    /// WGS84 degrees, as the device reported.
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<u32>,
    pub sweref99tm: crate::domain::place::Sweref99Tm,
    pub place: Option<crate::domain::place::NearestPlace>,
    /// From the registered address to the position; absent without an address, and
    /// withheld for a protected person without a stated reason (`measures_masked`).
    pub from_home: Option<crate::domain::place::Vector>,
    /// The zone of an order in force the position is inside of, or else the nearest one.
    pub from_nearest_zone: Option<crate::domain::place::FromZone>,
    /// The way from the address and the distance to the zone were withheld: with the
    /// position they would give the protected address away. `?reason=` shows them.
    pub measures_masked: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct AlertQuery {
    /// `open`, `acknowledged` or `resolved`; several separated by commas. Default: open and
    /// acknowledged.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = [AlertOut], description = "In queue order: priority, then oldest first"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_alerts(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<Vec<AlertOut>>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    let states = match q.state.as_deref() {
        None | Some("") => vec![AlertState::Open, AlertState::Acknowledged],
        Some(list) => list
            .split(',')
            .map(|s| {
                AlertState::parse(s.trim())
                    .ok_or_else(|| ApiError::invalid("state", "open, acknowledged or resolved"))
            })
            .collect::<ApiResult<Vec<_>>>()?,
    };
    let alerts = s.store.alerts(&states).await?;
    let index = s.directory.snapshot();
    Ok(Json(
        alerts
            .iter()
            .filter(|a| caller.covers(a.region.as_deref()))
            .map(|a| unrevealed_alert(a, &index))
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct AlertDetail {
    pub alert: AlertOut,
    pub case: Option<CaseOut>,
    pub person: Option<PersonOut>,
    pub device: Option<DeviceOut>,
    pub orders: Vec<OrderOut>,
    pub history: Vec<HistoryEntry>,
    /// Other unresolved alerts of the same case (e.g. a second device).
    pub linked_alert_ids: Vec<i64>,
    /// Where the position lies; absent when there is none or it is withheld.
    pub location: Option<LocationOut>,
}

async fn alert_in_region(s: &AppState, caller: &Caller, id: i64) -> ApiResult<Alert> {
    let alert = s.store.alert(id).await?;
    caller
        .require_region(alert.region.as_deref())
        .map_err(|_| ApiError::NotFound)?;
    Ok(alert)
}

#[utoipa::path(get, path = "/api/alerts/{id}", tag = "alerts", params(("id" = i64, Path), AlertRevealQuery),
    responses((status = 200, body = AlertDetail), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<AlertRevealQuery>,
) -> ApiResult<Json<AlertDetail>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    let alert = alert_in_region(&s, &caller, id).await?;
    let reason = alert_reveal_reason(&caller, &alert, &q)?;
    let index = s.directory.snapshot();
    let case = match &alert.case_id {
        Some(id) => Some(s.store.case(id).await?),
        None => None,
    };
    // An alert without a case points to nobody: there is nothing to withhold.
    let mut sight = Sight::Full;
    let mut home = None;
    let person = match &case {
        Some(c) => {
            let p = s.store.person(&c.person_id).await?;
            sight = reveal(&s, &caller, reason.as_deref(), &p, Some(&c.id), true).await?;
            home = p.address.clone();
            Some(mask::person(&p, sight))
        }
        None => None,
    };
    let now = now_ms();
    let orders = match &case {
        Some(c) => s
            .store
            .orders_of_case(&c.id)
            .await?
            .into_iter()
            .filter(|o| o.in_force_at(now))
            .collect(),
        None => Vec::new(),
    };
    let device = match &alert.device_id {
        Some(d) => s
            .store
            .device(d)
            .await
            .ok()
            .map(|d| device_out(&s, &d, now)),
        None => None,
    };
    let linked = match &alert.case_id {
        Some(case_id) => s
            .store
            .alerts(&[AlertState::Open, AlertState::Acknowledged])
            .await?
            .into_iter()
            .filter(|a| a.case_id.as_deref() == Some(case_id) && a.id != alert.id)
            .map(|a| a.id)
            .collect(),
        None => Vec::new(),
    };
    s.store
        .audit(
            Some(&caller.username),
            "alert_viewed",
            Some(&alert.id.to_string()),
            alert.case_id.as_deref(),
            None,
            now,
        )
        .await?;
    let alert_out = mask::alert(&alert, &index, sight);
    Ok(Json(AlertDetail {
        history: s.store.alert_history(alert.id).await?,
        location: mask::location(&alert_out, home.as_ref(), &orders, sight),
        alert: alert_out,
        case: case.as_ref().map(|c| mask::case(c, sight)),
        person,
        device,
        orders: orders.iter().map(|o| mask::order(o, sight, now)).collect(),
        linked_alert_ids: linked,
    }))
}

/// The street address at an alert's position, from the configured geocoder.
#[derive(Serialize, ToSchema)]
pub struct StreetAddressOut {
    /// `found`; `none` (the geocoder knows no address there); `unavailable` (no answer
    /// within 2 s); `not_configured` (no `geocoder_url`); `no_position` (the alert has
    /// none, or it is withheld).
    #[schema(value_type = String, example = "found")]
    pub status: &'static str,
    pub text: Option<String>,
}

/// Asked by the console after it has shown the detail, so a slow or absent geocoder never
/// holds up an alert; the position is the one the list shows (a resolved protected
/// person's is withheld, and so is its address).
#[utoipa::path(get, path = "/api/alerts/{id}/street-address", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = StreetAddressOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn street_address(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<StreetAddressOut>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    let alert = alert_in_region(&s, &caller, id).await?;
    let out = |status, text| Ok(Json(StreetAddressOut { status, text }));
    let Some(p) = unrevealed_alert(&alert, &s.directory.snapshot()).position else {
        return out("no_position", None);
    };
    let Some(geocoder) = &s.geocoder else {
        return out("not_configured", None);
    };
    match geocoder.street_address(p.lat, p.lon).await {
        crate::geocode::Lookup::Found(text) => out("found", Some(text)),
        crate::geocode::Lookup::NoAddress => out("none", None),
        crate::geocode::Lookup::Unavailable => out("unavailable", None),
    }
}

/// The reason an alert's detail is asked with: the caller's own words, or, for the officer
/// handling the alert (`?handling=true`), one the server words after checking that the
/// caller is the one who acknowledged it. A client never supplies the handling reason.
fn alert_reveal_reason(
    caller: &Caller,
    alert: &Alert,
    q: &AlertRevealQuery,
) -> ApiResult<Option<String>> {
    if q.handling != Some(true) {
        return Ok(q.reason.clone());
    }
    if q.reason.as_deref().is_some_and(|r| !r.trim().is_empty()) {
        return Err(ApiError::invalid(
            "handling",
            "either a reason or handling, not both",
        ));
    }
    mask::handling_reason(alert, &caller.username)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "handling",
                "only the officer who acknowledged this alert, while it is acknowledged, reveals by handling it; state a reason instead",
            )
        })
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/api/alerts/{id}/ack", tag = "alerts", params(("id" = i64, Path)), request_body = Option<AckRequest>,
    responses((status = 200, body = AlertOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn ack_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AlertOut>> {
    caller.require(&[Role::Officer])?;
    alert_in_region(&s, &caller, id).await?;
    // The body is optional: an empty one acknowledges without a note.
    let req: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        super::json::parse(&body)?
    };
    let note = optional_text("note", req.note.as_deref(), 2000)?;
    let change = s
        .store
        .acknowledge(id, &caller.username, note.as_deref(), now_ms())
        .await?;
    let out = unrevealed_alert(&change.alert, &s.directory.snapshot());
    tell_device(&s, &change.alert, Feedback::Accepted).await;
    s.hub.publish(change);
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: Outcome,
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/api/alerts/{id}/resolve", tag = "alerts", params(("id" = i64, Path)), request_body = ResolveRequest,
    responses((status = 200, body = AlertOut), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn resolve_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Body(req): Body<ResolveRequest>,
) -> ApiResult<Json<AlertOut>> {
    caller.require(&[Role::Officer])?;
    alert_in_region(&s, &caller, id).await?;
    let note = optional_text("note", req.note.as_deref(), 2000)?;
    let change = s
        .store
        .resolve(id, &caller.username, req.outcome, note.as_deref(), now_ms())
        .await?;
    let out = unrevealed_alert(&change.alert, &s.directory.snapshot());
    tell_device(&s, &change.alert, Feedback::Resolved).await;
    s.hub.publish(change);
    Ok(Json(out))
}

/// An alert as sent without a stated reason: lists, answers to changes, the live stream.
pub fn unrevealed_alert(a: &Alert, index: &Index) -> AlertOut {
    mask::alert(a, index, Sight::unrevealed(index, a.case_id.as_deref()))
}

async fn tell_device(s: &AppState, alert: &Alert, st: Feedback) {
    if let (Some(device), Some(origin), Some(downlink)) =
        (&alert.device_id, alert.origin, &s.downlink)
    {
        downlink.feedback(device, origin, st).await;
    }
}

// ---------------------------------------------------------------- audit

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

// ---------------------------------------------------------------- users

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewUserOut {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
    /// For admins and coordinators: the `otpauth://` URI of their second factor, shown once.
    pub totp_uri: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
    /// None: national. Otherwise one of `GET /api/regions`, by name or code, ignoring case.
    pub region: Option<String>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = [UserOut]), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<UserOut>>> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let users = s.store.users().await?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserOut {
                username: u.username,
                role: u.role,
                region: u.region,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<NewUserOut>)> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let username = text("username", &req.username, 64)?;
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "._-@".contains(c))
    {
        return Err(ApiError::invalid(
            "username",
            "letters, digits and . _ - @ only",
        ));
    }
    if req.password.chars().count() < 12 {
        return Err(ApiError::invalid("password", "at least 12 characters"));
    }
    let region = match optional_text("region", req.region.as_deref(), 100)? {
        Some(r) => Some(super::regions::region_in_list(&s, &r).await?),
        None => None,
    };
    // Admins and coordinators log in with a second factor; the secret is shown this once.
    let totp_secret =
        matches!(req.role, Role::Admin | Role::Coordinator).then(super::totp::new_secret);
    let user = crate::store::User {
        username: username.clone(),
        role: req.role,
        region: region.clone(),
        password_hash: super::auth::hash_password(&req.password),
        totp_secret: totp_secret
            .as_ref()
            .map(|t| s.directory.vault().seal_totp(t, &username)),
    };
    let now = now_ms();
    s.store.insert_user(&user, now).await?;
    s.store
        .audit(
            Some(&caller.username),
            "user_added",
            Some(&username),
            None,
            Some(req.role.as_str()),
            now,
        )
        .await?;
    let totp_uri = totp_secret.map(|s| super::totp::uri(&username, &s));
    Ok((
        StatusCode::CREATED,
        Json(NewUserOut {
            username,
            role: req.role,
            region,
            totp_uri,
        }),
    ))
}

// ---------------------------------------------------------------- console support

#[derive(Serialize, ToSchema)]
pub struct ConsoleConfig {
    /// XYZ tile URL template for street maps beneath the situation map; null: geometry only.
    pub tile_url: Option<String>,
}

#[utoipa::path(get, path = "/api/console-config", tag = "console", responses((status = 200, body = ConsoleConfig)))]
pub async fn console_config(State(s): State<AppState>, _caller: Caller) -> Json<ConsoleConfig> {
    Json(ConsoleConfig {
        tile_url: s.config.map_tile_url.clone(),
    })
}

#[utoipa::path(get, path = "/api/status", tag = "console", responses((status = 200, body = super::Status)))]
pub async fn status(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<super::Status>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    Ok(Json(super::status_for(&s, &caller).await))
}
