//! `/api/regions`: the list of police regions and their local police areas that persons,
//! cases and users are placed in. Every logged-in user reads it (forms offer it as a
//! choice); admins add, rename and retire, and each change is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::AppState;
use crate::domain::now_ms;
use crate::regions::{self, LocalArea, Region};
use crate::store::{Audit, RegionPatch};

/// A name as typed: trimmed, 1–100 characters, no control characters.
fn name_field(field: &str, v: &str) -> ApiResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > 100 {
        return Err(ApiError::invalid(field, "at most 100 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "no control characters"));
    }
    Ok(t.to_owned())
}

/// The code given, or one made from the name.
fn code_field(given: Option<&str>, name: &str) -> ApiResult<String> {
    let code = match given.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => regions::code_of(name),
    };
    if !regions::is_code(&code) {
        return Err(ApiError::invalid(
            "code",
            "lower-case letters a–z, digits and dashes, at most 64",
        ));
    }
    Ok(code)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegion {
    pub name: String,
    /// Made from the name when left out ("Öst" → `ost`).
    pub code: Option<String>,
    /// Names of its local police areas.
    #[serde(default)]
    pub local_areas: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLocalArea {
    pub name: String,
    pub code: Option<String>,
}

/// A rename, a retirement (`true`) or a return into force (`false`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionChange {
    pub name: Option<String>,
    pub retired: Option<bool>,
}

#[utoipa::path(get, path = "/api/regions", tag = "regions",
    responses((status = 200, body = [Region], description = "Every region with its local police areas, retired ones included, by name"), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_regions(
    State(s): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Vec<Region>>> {
    Ok(Json(s.store.regions().await?))
}

#[utoipa::path(post, path = "/api/regions", tag = "regions", request_body = NewRegion,
    responses((status = 201, body = Region), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_region(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewRegion>,
) -> ApiResult<(StatusCode, Json<Region>)> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let name = name_field("name", &req.name)?;
    let code = code_field(req.code.as_deref(), &name)?;
    let list = s.store.regions().await?;
    // Names are matched ignoring case, so two may not differ by case alone.
    if list
        .iter()
        .any(|r| r.name.to_lowercase() == name.to_lowercase() || r.code == code)
    {
        return Err(ApiError::Conflict(
            "a region with that name or code exists".into(),
        ));
    }
    let mut local_areas: Vec<LocalArea> = Vec::new();
    for (i, a) in req.local_areas.iter().enumerate() {
        let field = format!("local_areas[{i}]");
        let name = name_field(&field, a)?;
        let code = code_field(None, &name).map_err(|_| ApiError::invalid(&field, "no letters"))?;
        if local_areas.iter().any(|o| o.code == code) {
            return Err(ApiError::invalid(&field, "named twice"));
        }
        local_areas.push(LocalArea {
            code,
            name,
            retired: false,
        });
    }
    let region = Region {
        code,
        name,
        retired: false,
        local_areas,
    };
    let now = now_ms();
    let audit = Audit::new(Some(&caller.username), "region_added")
        .subject(&region.code)
        .detail(&region.name);
    s.store.insert_region(&region, now, &audit).await?;
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
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let list = s.store.regions().await?;
    let current = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(ApiError::NotFound)?;
    let name = req
        .name
        .as_deref()
        .map(|n| name_field("name", n))
        .transpose()?;
    if let Some(n) = &name {
        let taken = list
            .iter()
            .any(|r| r.code != code && r.name.to_lowercase() == n.to_lowercase());
        if taken {
            return Err(ApiError::Conflict("a region with that name exists".into()));
        }
    }
    let patch = RegionPatch {
        name,
        retired: req.retired,
    };
    let detail = change_detail(&current.name, current.retired, &patch);
    let now = now_ms();
    let audit = Audit::new(Some(&caller.username), "region_changed")
        .subject(&code)
        .detail(&detail);
    let region = s.store.update_region(&code, &patch, now, &audit).await?;
    if region.name != current.name {
        // The ingest's index holds each case's region.
        s.refresh_directory().await;
    }
    Ok(Json(region))
}

#[utoipa::path(post, path = "/api/regions/{code}/local-areas", tag = "regions", request_body = NewLocalArea, params(("code" = String, Path)),
    responses((status = 201, body = LocalArea), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_local_area(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Body(req): Body<NewLocalArea>,
) -> ApiResult<(StatusCode, Json<LocalArea>)> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let list = s.store.regions().await?;
    let region = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(ApiError::NotFound)?;
    let name = name_field("name", &req.name)?;
    let area = LocalArea {
        code: code_field(req.code.as_deref(), &name)?,
        name,
        retired: false,
    };
    let taken = region
        .local_areas
        .iter()
        .any(|a| a.name.to_lowercase() == area.name.to_lowercase());
    if taken {
        return Err(ApiError::Conflict(
            "the region has a local area of that name".into(),
        ));
    }
    let now = now_ms();
    let detail = format!("{} in {}", area.name, region.name);
    let audit = Audit::new(Some(&caller.username), "local_area_added")
        .subject(&area.code)
        .detail(&detail);
    s.store.insert_local_area(&code, &area, now, &audit).await?;
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
    if !caller.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let list = s.store.regions().await?;
    let region = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(ApiError::NotFound)?;
    let current = region
        .local_areas
        .iter()
        .find(|a| a.code == area)
        .ok_or(ApiError::NotFound)?;
    let name = req
        .name
        .as_deref()
        .map(|n| name_field("name", n))
        .transpose()?;
    if let Some(n) = &name {
        let taken = region
            .local_areas
            .iter()
            .any(|a| a.code != area && a.name.to_lowercase() == n.to_lowercase());
        if taken {
            return Err(ApiError::Conflict(
                "the region has a local area of that name".into(),
            ));
        }
    }
    let patch = RegionPatch {
        name,
        retired: req.retired,
    };
    let detail = change_detail(&current.name, current.retired, &patch);
    let now = now_ms();
    let audit = Audit::new(Some(&caller.username), "local_area_changed")
        .subject(&area)
        .detail(&detail);
    let changed = s
        .store
        .update_local_area(&code, &area, &patch, now, &audit)
        .await?;
    Ok(Json(changed))
}

/// The audit line of a change: what it was called and became, retired or back in force.
fn change_detail(old_name: &str, was_retired: bool, patch: &RegionPatch) -> String {
    let mut parts = Vec::new();
    if let Some(n) = patch.name.as_ref().filter(|n| *n != old_name) {
        parts.push(format!("renamed \"{old_name}\" to \"{n}\""));
    }
    match patch.retired {
        Some(true) if !was_retired => parts.push(format!("retired \"{old_name}\"")),
        Some(false) if was_retired => parts.push(format!("put \"{old_name}\" back in force")),
        _ => {}
    }
    if parts.is_empty() {
        format!("\"{old_name}\" unchanged")
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_line_says_what_a_region_was_called_and_what_became_of_it() {
        let rename = RegionPatch {
            name: Some("Östra".into()),
            retired: Some(true),
        };
        assert_eq!(
            change_detail("Öst", false, &rename),
            "renamed \"Öst\" to \"Östra\"; retired \"Öst\""
        );
        let back = RegionPatch {
            name: None,
            retired: Some(false),
        };
        assert_eq!(
            change_detail("Mitt", true, &back),
            "put \"Mitt\" back in force"
        );
        assert_eq!(change_detail("Mitt", false, &back), "\"Mitt\" unchanged");
    }
}
