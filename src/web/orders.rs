//! Restraining orders of a case, with the zones the restrained person must keep out of.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::cases::case_in_region;
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::persons::{case_sight, ReasonQuery};
use super::AppState;
use crate::app::orders::{self, NewOrder, OrderChange};
use crate::domain::{now_ms, Order, OrderKind, Restrained};
use crate::store::Role;

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
    let order = orders::create(&s.app(), &caller.actor(), &case_id, req).await?;
    // The answer holds what the request held, nothing more.
    Ok((
        StatusCode::CREATED,
        Json(mask::order(&order, Sight::Full, now_ms())),
    ))
}

async fn order_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Order> {
    Ok(orders::in_region(&s.app(), &caller.actor(), id).await?)
}

#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = OrderOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<OrderOut>> {
    caller.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
    let order = order_in_region(&s, &caller, &id).await?;
    let case = s.store.case(&order.case_id).await?;
    let sight = case_sight(&s, &caller, q.reason.as_deref(), &case).await?;
    Ok(Json(mask::order(&order, sight, now_ms())))
}

#[utoipa::path(patch, path = "/api/orders/{id}", tag = "orders", params(("id" = String, Path)), request_body = OrderChange,
    responses((status = 200, body = OrderOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_order(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<OrderChange>,
) -> ApiResult<Json<OrderOut>> {
    let order = orders::change(&s.app(), &caller.actor(), &id, req).await?;
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
    caller.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
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
