//! Persons the police protect: registered by coordinators in a region; every view of one
//! is on the audit trail, and a protected person's details are shown only for a stated
//! reason.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{new_id, optional_text, region_in_list, text, Actor, AppError, AppResult, Ctx};
use crate::domain::{now_ms, Address, Person, Position};
use crate::store::{Audit, Role};

/// The marker in place of a withheld name.
pub const MASK: &str = "***";

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

/// A region typed by the actor: one of the list, spelled as the list spells it, and one
/// the actor covers, so the officers of the region see what is placed there.
pub(super) async fn region_of_actor(
    ctx: &Ctx,
    actor: &Actor,
    typed: Option<&str>,
) -> AppResult<Option<String>> {
    match optional_text("region", typed, 100)? {
        Some(r) => {
            let r = region_in_list(ctx, &r).await?;
            if !actor.covers(Some(&r)) {
                return Err(AppError::invalid("region", "outside your region"));
            }
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

pub async fn register(ctx: &Ctx, actor: &Actor, req: NewPerson) -> AppResult<Person> {
    actor.require(&[Role::Coordinator])?;
    let region = match region_of_actor(ctx, actor, req.region.as_deref()).await? {
        Some(r) => Some(r),
        None => actor.home_region().map(str::to_owned),
    };
    if let Some(a) = &req.address {
        text("address.text", &a.text, 300)?;
        if Position::new(a.lat, a.lon, None).is_none() {
            return Err(AppError::invalid(
                "address.lat",
                "latitude -90..90 and longitude -180..180",
            ));
        }
        // Zones are drawn around this position and alarms measured from it: a position
        // outside the country is a typing error (swapped or truncated coordinates).
        let bounds = &ctx.config.zone_bounds;
        if !bounds.contains((a.lat, a.lon)) {
            let field = if (bounds.min_lat..=bounds.max_lat).contains(&a.lat) {
                "address.lon"
            } else {
                "address.lat"
            };
            return Err(AppError::invalid(
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
    let audit = Audit::new(actor.name(), "person_created").subject(&person.id);
    ctx.store.insert_person(&person, now_ms(), &audit).await?;
    Ok(person)
}

/// The persons of the actor's regions.
pub async fn list(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<Person>> {
    actor.require(&[Role::Coordinator, Role::Investigator])?;
    let mut persons = ctx.store.persons().await?;
    persons.retain(|p| actor.covers(p.region.as_deref()));
    Ok(persons)
}

/// One person of the actor's regions; another region's is not found.
pub async fn get(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<Person> {
    actor.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
    let p = ctx.store.person(id).await?;
    actor
        .require_region(p.region.as_deref())
        .map_err(|_| AppError::NotFound)?;
    Ok(p)
}

/// Records a consultation of `p` (of the case `case_id`, if any): with a stated reason a
/// protected person is revealed, and that is logged with the reason; a view that shows the
/// person (`shows_person`) is logged either way. Whether a reason was stated.
pub async fn consult(
    ctx: &Ctx,
    actor: &Actor,
    reason: Option<&str>,
    p: &Person,
    case_id: Option<&str>,
    shows_person: bool,
) -> AppResult<bool> {
    let reason = optional_text("reason", reason, 500)?;
    let revealed = actor.needs_reason(p.protected_identity) && reason.is_some();
    if revealed || shows_person {
        let action = if revealed {
            "person_revealed"
        } else {
            "person_viewed"
        };
        ctx.store
            .audit(
                actor.name(),
                action,
                Some(&p.id),
                case_id,
                reason.as_deref(),
                now_ms(),
            )
            .await?;
    }
    Ok(reason.is_some())
}
