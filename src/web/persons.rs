//! The persons the police protect: registered by coordinators, seen masked unless a
//! reason is stated (and then on the audit trail).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::AppState;
use crate::app::{new_id, optional_text, text};
use crate::domain::{now_ms, Address, Case, Person, Position};
use crate::store::{Audit, Role};

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
    let audit = Audit::new(Some(&caller.username), "person_created").subject(&person.id);
    s.store.insert_person(&person, now, &audit).await?;
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
pub(super) async fn reveal(
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
pub(super) async fn case_sight(
    s: &AppState,
    caller: &Caller,
    reason: Option<&str>,
    case: &Case,
) -> ApiResult<Sight> {
    let person = s.store.person(&case.person_id).await?;
    reveal(s, caller, reason, &person, Some(&case.id), false).await
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_person, list_persons))
        .routes(routes!(get_person))
}
