//! Cases: a protected person, a risk, a region, a response plan and relatives.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::devices::{device_out, DeviceOut};
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight, MASK};
use super::orders::OrderOut;
use super::persons::{case_sight, reveal, PersonOut, ReasonQuery};
use super::AppState;
use crate::app::{new_id, optional_text, present, text};
use crate::domain::{now_ms, Case, Relative, Risk};
use crate::store::{Audit, CasePatch, Role};

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

pub(super) fn relatives(list: Vec<Relative>) -> ApiResult<Vec<Relative>> {
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
    let audit = Audit::new(Some(&caller.username), "case_created")
        .subject(&case.id)
        .case(Some(&case.id));
    s.store.insert_case(&case, now, &audit).await?;
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

pub(super) async fn case_in_region(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Case> {
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
    let patch = CasePatch {
        risk: req.risk,
        response_plan: plan,
        relatives: req.relatives.map(relatives).transpose()?,
    };
    let audit = Audit::new(Some(&caller.username), "case_changed")
        .subject(&id)
        .case(Some(&id));
    let case = s.store.update_case(&id, &patch, now_ms(), &audit).await?;
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
    let audit = Audit::new(Some(&caller.username), "case_closed")
        .subject(&id)
        .case(Some(&id));
    let case = s.store.close_case(&id, now, &audit).await?;
    s.refresh_directory().await;
    let sight = case_sight(&s, &caller, None, &case).await?;
    Ok(Json(mask::case(&case, sight)))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_case, list_cases))
        .routes(routes!(get_case, patch_case))
        .routes(routes!(close_case))
}
