//! Cases: a protected person, a risk, a region, a response plan and relatives.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::devices::{device_out, DeviceOut};
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::orders::OrderOut;
use super::persons::{case_sight, reveal, PersonOut, ReasonQuery};
use super::AppState;
use crate::app::assessments::{self, AssessmentRequest};
use crate::app::cases::{self, CaseChange, NewCase};
use crate::domain::{now_ms, AssessmentMethod, Case, Relative, Risk};
use crate::store::Role;

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

/// One structured threat and risk assessment of a case.
#[derive(Serialize, ToSchema)]
pub struct AssessmentOut {
    pub id: i64,
    pub case_id: String,
    pub method: AssessmentMethod,
    pub risk: Risk,
    /// The case's risk before this assessment.
    pub previous_risk: Risk,
    /// Empty when `masked`, and for a risk set on the case without an assessment.
    pub factors: Vec<String>,
    /// Null when there is none, or when `masked`.
    pub summary: Option<String>,
    /// `YYYY-MM-DD`; null only for a risk set on the case before any assessment gave a
    /// date.
    pub next_review: Option<String>,
    pub assessed_by: Option<String>,
    pub assessed_at: String,
    /// True when the factors and summary were withheld: the case of a person with a
    /// protected identity, and no reason given (`?reason=` shows them, and is logged).
    pub masked: bool,
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
    let case = cases::open(&s.app(), &caller.actor(), req).await?;
    // The answer holds what the request held, nothing more.
    Ok((StatusCode::CREATED, Json(mask::case(&case, Sight::Full))))
}

#[utoipa::path(get, path = "/api/cases", tag = "cases", responses((status = 200, body = [CaseOut])))]
pub async fn list_cases(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CaseOut>>> {
    let actor = caller.actor();
    let list = cases::list(&s.app(), &actor).await?;
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
        list.iter()
            .map(|c| {
                let needs_reason = actor.needs_reason(protected.contains(&c.person_id));
                mask::case(c, Sight::of(needs_reason, false))
            })
            .collect(),
    ))
}

/// One case of the caller's regions, for the requests about it.
pub(super) async fn case_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Case> {
    Ok(cases::in_region(&s.app(), &caller.actor(), id).await?)
}

#[utoipa::path(get, path = "/api/cases/{id}", tag = "cases", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = CaseDetail), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_case(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<CaseDetail>> {
    caller.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
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

#[utoipa::path(patch, path = "/api/cases/{id}", tag = "cases", params(("id" = String, Path)), request_body = CaseChange,
    responses((status = 200, body = CaseOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_case(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<CaseChange>,
) -> ApiResult<Json<CaseOut>> {
    let case = cases::change(&s.app(), &caller.actor(), &id, req).await?;
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
    let case = cases::close(&s.app(), &caller.actor(), &id).await?;
    let sight = case_sight(&s, &caller, None, &case).await?;
    Ok(Json(mask::case(&case, sight)))
}

#[utoipa::path(post, path = "/api/cases/{id}/assessments", tag = "cases", params(("id" = String, Path)), request_body = AssessmentRequest,
    responses((status = 201, body = AssessmentOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_assessment(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<AssessmentRequest>,
) -> ApiResult<(StatusCode, Json<AssessmentOut>)> {
    let a = assessments::record(&s.app(), &caller.actor(), &id, req).await?;
    // The answer holds what the request held, nothing more.
    Ok((StatusCode::CREATED, Json(mask::assessment(&a, Sight::Full))))
}

#[utoipa::path(get, path = "/api/cases/{id}/assessments", tag = "cases", params(("id" = String, Path), ReasonQuery),
    responses((status = 200, body = [AssessmentOut]), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_assessments(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<Json<Vec<AssessmentOut>>> {
    let list = assessments::history(&s.app(), &caller.actor(), &id).await?;
    let case = s.store.case(&id).await?;
    // One case's assessments: a reason here reveals that one case, like its detail.
    let sight = case_sight(&s, &caller, q.reason.as_deref(), &case).await?;
    Ok(Json(
        list.iter().map(|a| mask::assessment(a, sight)).collect(),
    ))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_case, list_cases))
        .routes(routes!(get_case, patch_case))
        .routes(routes!(close_case))
        .routes(routes!(create_assessment, list_assessments))
}
