//! The structured threat and risk assessment of a case: the review dates an assessment may
//! set, what a change of risk writes on the case's unresolved alerts, and the reminder when
//! the latest assessment's review date has passed.

use super::Decision;
use crate::domain::correlate;
use crate::domain::{AlertKind, Assessment, AssessmentMethod, Case, Day, Priority, Reason, Risk};

/// A review is set at most this many months ahead: an assessment older than that no longer
/// describes the threat.
pub const REVIEW_WITHIN_MONTHS: u32 = 24;

/// Why `next_review` cannot be the date of the next review of an assessment made on
/// `today`: in the past, or more than [`REVIEW_WITHIN_MONTHS`] ahead. A review due today is
/// allowed (it is due, not passed).
pub fn review_date_refused(next_review: Day, today: Day) -> Option<String> {
    if next_review < today {
        return Some(format!("{next_review} has passed; today is {today} (UTC)"));
    }
    let latest = today
        .checked_add_months(chrono::Months::new(REVIEW_WITHIN_MONTHS))
        .unwrap_or(Day::MAX);
    if next_review > latest {
        return Some(format!(
            "at most {REVIEW_WITHIN_MONTHS} months ahead, {latest} at the latest"
        ));
    }
    None
}

/// The history line each unresolved alert of the case gets when an assessment changes its
/// risk; `None` when the risk stays. The alert's priority stays what it was: the new risk
/// counts for alerts raised from then on.
pub fn risk_changed(from: Risk, to: Risk, method: AssessmentMethod) -> Option<Reason> {
    if from == to {
        return None;
    }
    Some(
        Reason::new(
            "risk_changed",
            format!(
                "Case risk changed from {} to {} ({} assessment); alerts raised from now on take the new risk",
                from.as_str(),
                to.as_str(),
                method.as_str()
            ),
        )
        .with("from", from.as_str())
        .with("to", to.as_str())
        .with("method", method.as_str()),
    )
}

/// The latest assessment of a case whose review date has passed (it is before `today`):
/// one priority-4 reminder for the case's coordinators. A closed case, or an assessment
/// still within its date, raises nothing; so does a newer assessment's own future date,
/// which is why only the latest assessment is asked about.
pub fn review_due(latest: &Assessment, case: &Case, today: Day) -> Decision {
    let Some(due) = latest.next_review else {
        return Decision::Nothing;
    };
    if due >= today || case.closed_at.is_some() || latest.case_id != case.id {
        return Decision::Nothing;
    }
    Decision::Raise {
        kind: AlertKind::ReviewDue,
        priority: Priority::P4,
        position: None,
        trigger: vec![Reason::new(
            "review_due",
            format!(
                "The risk assessment ({}, risk {}) was due for review on {due}",
                latest.method.as_str(),
                latest.risk.as_str()
            ),
        )
        .with("method", latest.method.as_str())
        .with("risk", latest.risk.as_str())
        .with("next_review", due.to_string())],
        context: vec![correlate::case_risk(case)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::correlate::tests::context;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn assessment(next_review: Option<&str>) -> Assessment {
        Assessment {
            id: 1,
            case_id: "c1".into(),
            method: AssessmentMethod::Sara,
            risk: Risk::High,
            previous_risk: Risk::Medium,
            factors: vec!["threats".into()],
            summary: None,
            next_review: next_review.map(day),
            assessed_by: Some("kim".into()),
            assessed_at: 0,
        }
    }

    #[test]
    fn a_review_date_may_be_today_and_up_to_two_years_ahead_but_not_past_or_later() {
        let today = day("2026-12-01");
        #[rustfmt::skip]
        let table: &[(&str, &str, bool)] = &[
            ("yesterday", "2026-11-30", false),
            ("today", "2026-12-01", true),
            ("tomorrow", "2026-12-02", true),
            ("two years ahead", "2028-12-01", true),
            ("two years and a day ahead", "2028-12-02", false),
        ];
        for (name, date, allowed) in table {
            assert_eq!(
                review_date_refused(day(date), today).is_none(),
                *allowed,
                "{name}"
            );
        }
    }

    #[test]
    fn two_years_from_the_last_of_february_of_a_leap_year_ends_on_the_last_of_february() {
        let today = day("2028-02-29");
        assert!(review_date_refused(day("2030-02-28"), today).is_none());
        assert!(review_date_refused(day("2030-03-01"), today).is_some());
    }

    #[test]
    fn a_change_of_risk_is_a_history_line_naming_both_risks_and_the_method() {
        let note =
            risk_changed(Risk::Medium, Risk::Critical, AssessmentMethod::Patriark).expect("a line");
        assert_eq!(note.code, "risk_changed");
        assert_eq!(note.values["from"], "medium");
        assert_eq!(note.values["to"], "critical");
        assert_eq!(note.values["method"], "PATRIARK");
        assert!(
            note.text.contains("from medium to critical"),
            "{}",
            note.text
        );
    }

    #[test]
    fn an_assessment_that_keeps_the_risk_writes_no_history_line() {
        for risk in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
            assert_eq!(risk_changed(risk, risk, AssessmentMethod::Sra), None);
        }
    }

    #[test]
    fn only_a_passed_review_of_an_open_case_raises_a_priority_4_reminder() {
        let ctx = context(Risk::High);
        let mut closed = ctx.case.clone();
        closed.closed_at = Some(0);
        let today = day("2026-12-01");
        #[rustfmt::skip]
        let table: &[(&str, Option<&str>, &Case, bool)] = &[
            ("passed yesterday", Some("2026-11-30"), &ctx.case, true),
            ("passed a year ago", Some("2025-12-01"), &ctx.case, true),
            ("due today", Some("2026-12-01"), &ctx.case, false),
            ("due tomorrow", Some("2026-12-02"), &ctx.case, false),
            ("no date", None, &ctx.case, false),
            ("passed, case closed", Some("2026-11-30"), &closed, false),
        ];
        for (name, date, case, raises) in table {
            let decision = review_due(&assessment(*date), case, today);
            match decision {
                Decision::Raise {
                    kind,
                    priority,
                    ref trigger,
                    ref context,
                    ..
                } => {
                    assert!(*raises, "{name}: raised");
                    assert_eq!((kind, priority), (AlertKind::ReviewDue, Priority::P4));
                    assert_eq!(trigger[0].code, "review_due", "{name}");
                    assert_eq!(trigger[0].values["next_review"], date.unwrap(), "{name}");
                    assert_eq!(context, &vec![correlate::case_risk(case)]);
                }
                Decision::Nothing => assert!(!*raises, "{name}: nothing raised"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn another_cases_assessment_raises_nothing() {
        let ctx = context(Risk::High);
        let mut theirs = assessment(Some("2026-01-01"));
        theirs.case_id = "c2".into();
        assert_eq!(
            review_due(&theirs, &ctx.case, day("2026-12-01")),
            Decision::Nothing
        );
    }
}
