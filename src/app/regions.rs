//! The list of police regions and their local police areas that persons, cases and users
//! are placed in. Everyone reads it (forms offer it as a choice); admins add, rename and
//! retire, and the operator corrects stored data spelt in another case. Each change is
//! audited in its own transaction.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, AppError, AppResult, Ctx};
use crate::domain::now_ms;
use crate::regions::{self, Finding, LocalArea, Region};
use crate::store::{Audit, RegionPatch};

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

/// One correction of `fix_spelling`: the stored spelling, the list's, and how many
/// records changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respelt {
    pub from: String,
    pub to: String,
    pub records: u64,
}

/// Every region with its local areas, retired ones included, by name.
pub async fn list(ctx: &Ctx, _actor: &Actor) -> AppResult<Vec<Region>> {
    Ok(ctx.store.regions().await?)
}

pub async fn add(ctx: &Ctx, actor: &Actor, req: &NewRegion) -> AppResult<Region> {
    actor.require_admin()?;
    let name = name_field("name", &req.name)?;
    let code = code_field(req.code.as_deref(), &name)?;
    let list = ctx.store.regions().await?;
    // Names are matched ignoring case, so two may not differ by case alone.
    if list
        .iter()
        .any(|r| r.name.to_lowercase() == name.to_lowercase() || r.code == code)
    {
        return Err(AppError::Conflict(
            "a region with that name or code exists".into(),
        ));
    }
    let mut local_areas: Vec<LocalArea> = Vec::new();
    for (i, a) in req.local_areas.iter().enumerate() {
        let field = format!("local_areas[{i}]");
        let name = name_field(&field, a)?;
        let code = code_field(None, &name).map_err(|_| AppError::invalid(&field, "no letters"))?;
        if local_areas.iter().any(|o| o.code == code) {
            return Err(AppError::invalid(&field, "named twice"));
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
    let audit = Audit::new(actor.name(), "region_added")
        .subject(&region.code)
        .detail(&region.name);
    ctx.store.insert_region(&region, now_ms(), &audit).await?;
    Ok(region)
}

/// Renames, retires or puts back in force the region `code`. A new name is carried to the
/// persons, cases, users and alerts that held the old one.
pub async fn change(ctx: &Ctx, actor: &Actor, code: &str, req: &RegionChange) -> AppResult<Region> {
    actor.require_admin()?;
    let list = ctx.store.regions().await?;
    let current = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(AppError::NotFound)?;
    let siblings = list.iter().map(|r| (r.code.as_str(), r.name.as_str()));
    let patch = patch_of(req, code, siblings, "a region with that name exists")?;
    let detail = change_detail(&current.name, current.retired, &patch);
    let audit = Audit::new(actor.name(), "region_changed")
        .subject(code)
        .detail(&detail);
    let region = ctx
        .store
        .update_region(code, &patch, now_ms(), &audit)
        .await?;
    if region.name != current.name {
        // The ingest's index holds each case's region, and a rename reaches every case of
        // the region: an administrator's rare act, worth one full reload.
        ctx.refresh_directory().await;
    }
    Ok(region)
}

pub async fn add_local_area(
    ctx: &Ctx,
    actor: &Actor,
    code: &str,
    req: &NewLocalArea,
) -> AppResult<LocalArea> {
    actor.require_admin()?;
    let list = ctx.store.regions().await?;
    let region = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(AppError::NotFound)?;
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
        return Err(AppError::Conflict(
            "the region has a local area of that name".into(),
        ));
    }
    let detail = format!("{} in {}", area.name, region.name);
    let audit = Audit::new(actor.name(), "local_area_added")
        .subject(&area.code)
        .detail(&detail);
    ctx.store
        .insert_local_area(code, &area, now_ms(), &audit)
        .await?;
    Ok(area)
}

/// Renames, retires or puts back in force the local area `area` of the region `code`.
pub async fn change_local_area(
    ctx: &Ctx,
    actor: &Actor,
    code: &str,
    area: &str,
    req: &RegionChange,
) -> AppResult<LocalArea> {
    actor.require_admin()?;
    let list = ctx.store.regions().await?;
    let region = list
        .iter()
        .find(|r| r.code == code)
        .ok_or(AppError::NotFound)?;
    let current = region
        .local_areas
        .iter()
        .find(|a| a.code == area)
        .ok_or(AppError::NotFound)?;
    let siblings = region
        .local_areas
        .iter()
        .map(|a| (a.code.as_str(), a.name.as_str()));
    let patch = patch_of(
        req,
        area,
        siblings,
        "the region has a local area of that name",
    )?;
    let detail = change_detail(&current.name, current.retired, &patch);
    let audit = Audit::new(actor.name(), "local_area_changed")
        .subject(area)
        .detail(&detail);
    Ok(ctx
        .store
        .update_local_area(code, area, &patch, now_ms(), &audit)
        .await?)
}

/// The change `req` asks of the entry `code`: its new name checked, and refused when another
/// of its `siblings` (code, name) bears that name already, ignoring case.
fn patch_of<'a>(
    req: &RegionChange,
    code: &str,
    mut siblings: impl Iterator<Item = (&'a str, &'a str)>,
    taken: &str,
) -> AppResult<RegionPatch> {
    let name = req
        .name
        .as_deref()
        .map(|n| name_field("name", n))
        .transpose()?;
    if let Some(n) = &name {
        let n = n.to_lowercase();
        if siblings.any(|(c, other)| c != code && other.to_lowercase() == n) {
            return Err(AppError::Conflict(taken.into()));
        }
    }
    Ok(RegionPatch {
        name,
        retired: req.retired,
    })
}

/// The persons, cases and users whose region is not one of the list in force, and the
/// cases in another region than their person.
pub async fn check(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<Finding>> {
    actor.require_admin()?;
    Ok(regions::check_store(&*ctx.store).await?)
}

/// Gives every stored region that names a region of the list in another case (`nord`) the
/// list's spelling (`Nord`), one audited correction per spelling. The other findings of
/// [`check`] stay for a person to decide. Running instances read the change at their next
/// directory reload.
pub async fn fix_spelling(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<Respelt>> {
    let findings = check(ctx, actor).await?;
    let mut done = Vec::new();
    for (from, to) in regions::respellings(&findings) {
        let respelling = format!("\"{from}\" to \"{to}\"");
        let audit = Audit::new(actor.name(), "region_respelt").detail(&respelling);
        let records = ctx
            .store
            .respell_region(&from, &to, now_ms(), &audit)
            .await?;
        done.push(Respelt { from, to, records });
    }
    Ok(done)
}

/// A name as typed: trimmed, 1–100 characters, no control characters.
fn name_field(field: &str, v: &str) -> AppResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > 100 {
        return Err(AppError::invalid(field, "at most 100 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(AppError::invalid(field, "no control characters"));
    }
    Ok(t.to_owned())
}

/// The code given, or one made from the name.
fn code_field(given: Option<&str>, name: &str) -> AppResult<String> {
    let code = match given.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => regions::code_of(name),
    };
    if !regions::is_code(&code) {
        return Err(AppError::invalid(
            "code",
            "lower-case letters a–z, digits and dashes, at most 64",
        ));
    }
    Ok(code)
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
