//! Structured threat and risk assessments of a case: recorded by the coordinators of its
//! region, kept as history, read like the case itself. The latest one sets the case's risk,
//! which the alerts raised from then on are prioritised by.

use serde::Deserialize;
use utoipa::ToSchema;

use super::cases::in_region;
use super::{optional_text, text, Actor, AppError, AppResult, Ctx};
use crate::domain::policy::assessment::review_date_refused;
use crate::domain::{day_of, now_ms, Assessment, AssessmentMethod, Day, Risk};
use crate::store::{Audit, NewAssessment, Role};

/// At most this many factors, each at most [`FACTOR_MAX_CHARS`] characters: a factor is a
/// few words ("threats to kill", "access to weapons"); the reasoning goes in the summary.
pub const FACTORS_MAX: usize = 30;
pub const FACTOR_MAX_CHARS: usize = 200;
pub const SUMMARY_MAX_CHARS: usize = 4000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentRequest {
    /// `PATRIARK`, `SARA`, `SRA` or `other`.
    pub method: AssessmentMethod,
    /// The risk the assessment concludes; becomes the case's risk.
    pub risk: Risk,
    /// The risk factors considered: 1 to 30 short texts of at most 200 characters each.
    pub factors: Vec<String>,
    /// At most 4000 characters.
    pub summary: Option<String>,
    /// The day of the next review, `YYYY-MM-DD` (a UTC day): not before today, at most two
    /// years ahead.
    #[schema(example = "2027-06-01")]
    pub next_review: String,
}

/// A day written `YYYY-MM-DD`, nothing else.
fn day(field: &str, v: &str) -> AppResult<Day> {
    let v = v.trim();
    let well_formed = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    match well_formed.then(|| v.parse::<Day>().ok()).flatten() {
        Some(d) => Ok(d),
        None => Err(AppError::invalid(field, "a date YYYY-MM-DD that exists")),
    }
}

fn factors(list: Vec<String>) -> AppResult<Vec<String>> {
    if list.is_empty() {
        return Err(AppError::invalid(
            "factors",
            "at least one: the factors the assessment considered",
        ));
    }
    if list.len() > FACTORS_MAX {
        return Err(AppError::invalid(
            "factors",
            format!("at most {FACTORS_MAX}"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| text(&format!("factors[{i}]"), f, FACTOR_MAX_CHARS))
        .collect()
}

/// Records an assessment of the case: a coordinator (or admin) of its region; the case's
/// risk becomes the assessment's, and the consoles see the line it writes on open alerts.
pub async fn record(
    ctx: &Ctx,
    actor: &Actor,
    case_id: &str,
    req: AssessmentRequest,
) -> AppResult<Assessment> {
    actor.require(&[Role::Coordinator])?;
    let case = in_region(ctx, actor, case_id).await?;
    let now = now_ms();
    let next_review = day("next_review", &req.next_review)?;
    if let Some(why) = review_date_refused(next_review, day_of(now)) {
        return Err(AppError::invalid("next_review", why));
    }
    let new = NewAssessment {
        case_id: case.id.clone(),
        method: req.method,
        risk: req.risk,
        factors: factors(req.factors)?,
        summary: optional_text("summary", req.summary.as_deref(), SUMMARY_MAX_CHARS)?,
        next_review: Some(next_review),
        assessed_by: actor.name().map(str::to_owned),
    };
    if case.closed_at.is_some() {
        return Err(AppError::Conflict(
            "the case is closed: its risk is no longer assessed".into(),
        ));
    }
    let detail = format!(
        "{} risk {} (was {}), next review {next_review}",
        new.method.as_str(),
        new.risk.as_str(),
        case.risk.as_str()
    );
    let audit = Audit::new(actor.name(), "assessment_recorded")
        .subject(&case.id)
        .case(Some(&case.id))
        .detail(&detail);
    let (assessment, changes) = ctx.store.record_assessment(&new, now, &audit).await?;
    ctx.refresh_case(&case.id).await;
    for change in changes {
        ctx.hub.publish(change);
    }
    Ok(assessment)
}

/// The case's assessments, newest first, for those who may read the case.
pub async fn history(ctx: &Ctx, actor: &Actor, case_id: &str) -> AppResult<Vec<Assessment>> {
    actor.require(&[Role::Coordinator, Role::Officer, Role::Investigator])?;
    let case = in_region(ctx, actor, case_id).await?;
    Ok(ctx.store.assessments(&case.id).await?)
}

/// A risk set on the case itself (`PATCH /api/cases/{id}`), kept as history too: an
/// assessment of method `other` with no factors, which keeps the review date the latest
/// assessment set. `None` when the risk stays what it is.
pub(super) async fn risk_set_on_case(
    ctx: &Ctx,
    actor: &Actor,
    case_id: &str,
    current: Risk,
    risk: Risk,
) -> AppResult<Option<NewAssessment>> {
    if risk == current {
        return Ok(None);
    }
    let latest = ctx.store.latest_assessment(case_id).await?;
    Ok(Some(NewAssessment {
        case_id: case_id.to_owned(),
        method: AssessmentMethod::Other,
        risk,
        factors: Vec::new(),
        summary: None,
        next_review: latest.and_then(|a| a.next_review),
        assessed_by: actor.name().map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_date_is_written_yyyy_mm_dd_and_exists() {
        assert_eq!(
            day("next_review", "2027-06-01").unwrap(),
            "2027-06-01".parse::<Day>().unwrap()
        );
        for bad in [
            "2027-6-1",
            "2027-02-30",
            "01/06/2027",
            "2027-06-01T00:00:00Z",
            "",
            "２０２７-06-01",
        ] {
            assert!(
                matches!(day("next_review", bad), Err(AppError::Invalid { ref field, .. }) if field == "next_review"),
                "{bad}"
            );
        }
    }

    #[test]
    fn factors_are_one_to_thirty_short_texts_each_named_when_wrong() {
        assert!(
            matches!(factors(vec![]), Err(AppError::Invalid { field, .. }) if field == "factors")
        );
        assert!(factors(vec!["x".into(); FACTORS_MAX]).is_ok());
        assert!(factors(vec!["x".into(); FACTORS_MAX + 1]).is_err());
        let long = "x".repeat(FACTOR_MAX_CHARS + 1);
        assert!(matches!(
            factors(vec!["threats".into(), long]),
            Err(AppError::Invalid { field, .. }) if field == "factors[1]"
        ));
        assert!(matches!(
            factors(vec!["  ".into()]),
            Err(AppError::Invalid { field, .. }) if field == "factors[0]"
        ));
        assert_eq!(
            factors(vec!["  threats to kill ".into()]).unwrap(),
            ["threats to kill"]
        );
    }
}
