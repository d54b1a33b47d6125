//! Cases: a protected person, a risk, a region, a response plan and relatives; opened,
//! changed and closed by coordinators of the region.

use serde::Deserialize;
use utoipa::ToSchema;

use super::persons::{region_of_actor, MASK};
use super::{
    new_id, optional_text, present, region_in_list, text, Actor, AppError, AppResult, Ctx,
};
use crate::domain::{now_ms, Case, Relative, Risk};
use crate::store::{Audit, CasePatch, Role, StoreError};

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseChange {
    /// Kept as history: recorded as an assessment of method `other` with no factors, which
    /// keeps the latest assessment's review date. `POST /api/cases/{id}/assessments`
    /// records a structured one.
    pub risk: Option<Risk>,
    /// A string sets the plan; `null` clears it; leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub response_plan: Option<Option<String>>,
    /// Replaces the list when given.
    pub relatives: Option<Vec<Relative>>,
}

fn relatives(list: Vec<Relative>) -> AppResult<Vec<Relative>> {
    if list.len() > 20 {
        return Err(AppError::invalid("relatives", "at most 20"));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("relatives[{i}].name");
            if r.name.trim() == MASK {
                // A masked case sent back unchanged would overwrite the names it withheld.
                return Err(AppError::invalid(
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

pub async fn open(ctx: &Ctx, actor: &Actor, req: NewCase) -> AppResult<Case> {
    actor.require(&[Role::Coordinator])?;
    let given = region_of_actor(ctx, actor, req.region.as_deref()).await?;
    let person = match ctx.store.person(&req.person_id).await {
        Ok(p) => p,
        Err(StoreError::NotFound) => return Err(AppError::invalid("person_id", "no such person")),
        Err(e) => return Err(e.into()),
    };
    if !actor.covers(person.region.as_deref()) {
        return Err(AppError::invalid("person_id", "no such person"));
    }
    // A case left without a region is where its person is, so the same officers see both.
    let region = match (given, &person.region) {
        (Some(r), _) => r,
        (None, Some(r)) => region_in_list(ctx, r).await?,
        (None, None) => {
            return Err(AppError::invalid(
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
    let audit = Audit::new(actor.name(), "case_created")
        .subject(&case.id)
        .case(Some(&case.id));
    ctx.store.insert_case(&case, now_ms(), &audit).await?;
    ctx.refresh_case(&case.id).await;
    Ok(case)
}

/// The cases of the actor's regions.
pub async fn list(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<Case>> {
    actor.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
    let mut cases = ctx.store.cases().await?;
    cases.retain(|c| actor.covers(Some(&c.region)));
    Ok(cases)
}

/// One case of the actor's regions; another region's is not there for this actor.
pub async fn in_region(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<Case> {
    let case = ctx.store.case(id).await?;
    actor
        .require_region(Some(&case.region))
        .map_err(|_| AppError::NotFound)?;
    Ok(case)
}

/// Changes the case's risk, response plan or relatives. A new risk is kept as history like
/// an assessment's (see `assessments::risk_set_on_case`), so the case's risk is always its
/// latest assessment's.
pub async fn change(ctx: &Ctx, actor: &Actor, id: &str, req: CaseChange) -> AppResult<Case> {
    actor.require(&[Role::Coordinator])?;
    let current = in_region(ctx, actor, id).await?;
    let plan = match req.response_plan {
        Some(Some(p)) => Some(optional_text("response_plan", Some(&p), 4000)?),
        Some(None) => Some(None),
        None => None,
    };
    let assessment = match req.risk {
        Some(risk) => {
            super::assessments::risk_set_on_case(ctx, actor, id, current.risk, risk).await?
        }
        None => None,
    };
    let patch = CasePatch {
        assessment,
        response_plan: plan,
        relatives: req.relatives.map(relatives).transpose()?,
    };
    let audit = Audit::new(actor.name(), "case_changed")
        .subject(id)
        .case(Some(id));
    let (case, changes) = ctx.store.update_case(id, &patch, now_ms(), &audit).await?;
    ctx.refresh_case(id).await;
    for change in changes {
        ctx.hub.publish(change);
    }
    Ok(case)
}

pub async fn close(ctx: &Ctx, actor: &Actor, id: &str) -> AppResult<Case> {
    actor.require(&[Role::Coordinator])?;
    in_region(ctx, actor, id).await?;
    let audit = Audit::new(actor.name(), "case_closed")
        .subject(id)
        .case(Some(id));
    let case = ctx.store.close_case(id, now_ms(), &audit).await?;
    ctx.refresh_case(id).await;
    Ok(case)
}
