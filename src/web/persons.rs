//! The persons the police protect: registered by coordinators, seen masked unless a
//! reason is stated (and then on the audit trail).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::AppState;
use crate::app::persons::{self, NewPerson};
use crate::domain::{Address, Case, Person};

#[derive(Serialize, ToSchema)]
pub struct PersonOut {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub protected_identity: bool,
    /// True when name, phone and address were withheld: a protected identity, or any person
    /// for an investigator, and no reason given.
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
    let person = persons::register(&s.app(), &caller.actor(), req).await?;
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
    let actor = caller.actor();
    let list = persons::list(&s.app(), &actor).await?;
    Ok(Json(
        list.iter()
            .map(|p| {
                mask::person(
                    p,
                    Sight::of(actor.needs_reason(p.protected_identity), false),
                )
            })
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
    let p = persons::get(&s.app(), &caller.actor(), &id).await?;
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
    let actor = caller.actor();
    let given = persons::consult(&s.app(), &actor, reason, p, case_id, shows_person).await?;
    Ok(Sight::of(actor.needs_reason(p.protected_identity), given))
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
