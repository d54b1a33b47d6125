//! `/api/regions`: the list of police regions and their local police areas that persons,
//! cases and users are placed in. Every logged-in user reads it (forms offer it as a
//! choice); admins add, rename and retire (`app::regions`, where each change is audited).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::auth::Caller;
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::AppState;
use crate::app::regions::{self, NewLocalArea, NewRegion, RegionChange};
use crate::regions::{LocalArea, Region};

#[utoipa::path(get, path = "/api/regions", tag = "regions",
    responses((status = 200, body = [Region], description = "Every region with its local police areas, retired ones included, by name"), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_regions(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Region>>> {
    Ok(Json(regions::list(&s.app(), &caller.actor()).await?))
}

#[utoipa::path(post, path = "/api/regions", tag = "regions", request_body = NewRegion,
    responses((status = 201, body = Region), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_region(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewRegion>,
) -> ApiResult<(StatusCode, Json<Region>)> {
    let region = regions::add(&s.app(), &caller.actor(), &req).await?;
    Ok((StatusCode::CREATED, Json(region)))
}

#[utoipa::path(patch, path = "/api/regions/{code}", tag = "regions", request_body = RegionChange, params(("code" = String, Path)),
    responses((status = 200, body = Region, description = "A new name is carried to the persons, cases, users and alerts that held the old one"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_region(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Body(req): Body<RegionChange>,
) -> ApiResult<Json<Region>> {
    Ok(Json(
        regions::change(&s.app(), &caller.actor(), &code, &req).await?,
    ))
}

#[utoipa::path(post, path = "/api/regions/{code}/local-areas", tag = "regions", request_body = NewLocalArea, params(("code" = String, Path)),
    responses((status = 201, body = LocalArea), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_local_area(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Body(req): Body<NewLocalArea>,
) -> ApiResult<(StatusCode, Json<LocalArea>)> {
    let area = regions::add_local_area(&s.app(), &caller.actor(), &code, &req).await?;
    Ok((StatusCode::CREATED, Json(area)))
}

#[utoipa::path(patch, path = "/api/regions/{code}/local-areas/{area}", tag = "regions", request_body = RegionChange,
    params(("code" = String, Path), ("area" = String, Path, description = "The local area's code")),
    responses((status = 200, body = LocalArea), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_local_area(
    State(s): State<AppState>,
    caller: Caller,
    Path((code, area)): Path<(String, String)>,
    Body(req): Body<RegionChange>,
) -> ApiResult<Json<LocalArea>> {
    Ok(Json(
        regions::change_local_area(&s.app(), &caller.actor(), &code, &area, &req).await?,
    ))
}
