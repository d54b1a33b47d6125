//! `/api/places`: the offline place list put to the coordinators' use. A home position is
//! checked against its address text before it is saved, since zones are drawn around it
//! and alarms measured from it.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::AppState;
use crate::domain::place::{self, AddressCheck};
use crate::store::Role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressToCheck {
    /// The address as it will be registered, e.g. `Storgatan 1, 903 26 Umeå`.
    pub text: String,
    pub lat: f64,
    pub lon: f64,
}

/// Whether the address text names the town or municipality its position lies in. Changes
/// nothing and logs nothing: the text and position are the caller's own, not yet stored.
#[utoipa::path(post, path = "/api/places/address-check", tag = "persons", request_body = AddressToCheck,
    responses((status = 200, body = AddressCheck), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn check_address(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<AddressToCheck>,
) -> ApiResult<Json<AddressCheck>> {
    caller.require(&[Role::Coordinator])?;
    if req.text.trim().is_empty() || req.text.chars().count() > 300 {
        return Err(ApiError::invalid("text", "1 to 300 characters"));
    }
    if !s.config.zone_bounds.contains((req.lat, req.lon)) {
        return Err(ApiError::invalid(
            "lat",
            "the position lies outside the area served",
        ));
    }
    Ok(Json(place::check_address(&req.text, (req.lat, req.lon))))
}
