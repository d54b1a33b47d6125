//! Risk assessments of cases: appended, never changed (only the retention erasure of a
//! closed case empties their free text, in cases.rs). Each one sets the case's risk in its
//! own transaction, with a history line on every unresolved alert of the case when the risk
//! changed, and its audit entry.

use async_trait::async_trait;

use super::alerts::alert_in;
use super::db::{query, query_built, Row, Tx};
use super::dialect::{corrupt, Dialect, SqlStore};
use super::{AlertChange, Audit, NewAssessment, Result, StoreError};
use crate::domain::policy::assessment::risk_changed;
use crate::domain::{Assessment, AssessmentMethod, Day, Millis, Risk};

#[async_trait]
pub trait AssessmentStore: Send + Sync {
    /// Appends the assessment and makes its risk the case's, with a history line on each
    /// unresolved alert of the case when the risk changed, and `audit`: all in one
    /// transaction. The assessment as stored, and the alerts' changes for the consoles.
    async fn record_assessment(
        &self,
        new: &NewAssessment,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<(Assessment, Vec<AlertChange>)>;
    /// The case's assessments, newest first.
    async fn assessments(&self, case_id: &str) -> Result<Vec<Assessment>>;
    /// The latest assessment of each open case whose review date is before `today`.
    async fn reviews_passed(&self, today: Day) -> Result<Vec<Assessment>>;
    /// The case's latest assessment, if it has one.
    async fn latest_assessment(&self, case_id: &str) -> Result<Option<Assessment>>;
}

const COLUMNS: &str = "id, case_id, method, risk, previous_risk, factors, summary, next_review, \
    assessed_by, assessed_at";

fn assessment_from(row: &Row) -> Result<Assessment> {
    let risk = |name: &str| -> Result<Risk> {
        Risk::parse(&row.get::<String>(name)?).ok_or_else(|| corrupt("assessment risk"))
    };
    let next_review: Option<String> = row.get("next_review")?;
    Ok(Assessment {
        id: row.get("id")?,
        case_id: row.get("case_id")?,
        method: AssessmentMethod::parse(&row.get::<String>("method")?)
            .ok_or_else(|| corrupt("assessment method"))?,
        risk: risk("risk")?,
        previous_risk: risk("previous_risk")?,
        factors: serde_json::from_str(&row.get::<String>("factors")?)
            .map_err(|_| corrupt("assessment factors"))?,
        summary: row.get("summary")?,
        next_review: next_review
            .map(|d| d.parse::<Day>())
            .transpose()
            .map_err(|_| corrupt("assessment review date"))?,
        assessed_by: row.get("assessed_by")?,
        assessed_at: row.get("assessed_at")?,
    })
}

impl<D: Dialect> SqlStore<D> {
    /// Appends `new` in the caller's audited transaction and sets the case's risk to it; a
    /// change of risk is a history line, numbered for the live stream, on each unresolved
    /// alert of the case (their priority stays: the new risk counts for alerts raised from
    /// now on).
    pub(super) async fn record_assessment_in(
        &self,
        tx: &mut dyn Tx,
        new: &NewAssessment,
        at: Millis,
    ) -> Result<(Assessment, Vec<AlertChange>)> {
        let row = query("SELECT risk FROM cases WHERE id = $1")
            .bind(&new.case_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let previous = Risk::parse(&row.get::<String>(0)?).ok_or_else(|| corrupt("case risk"))?;
        let row = query_built(format!(
            "INSERT INTO risk_assessments (case_id, method, risk, previous_risk, factors, summary, \
             next_review, assessed_by, assessed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {COLUMNS}"
        ))
        .bind(&new.case_id)
        .bind(new.method.as_str())
        .bind(new.risk.as_str())
        .bind(previous.as_str())
        .bind(serde_json::to_string(&new.factors).map_err(|_| corrupt("assessment factors"))?)
        .bind(&new.summary)
        .bind(new.next_review.map(|d| d.to_string()))
        .bind(&new.assessed_by)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let assessment = assessment_from(&row)?;
        let Some(note) = risk_changed(previous, new.risk, new.method) else {
            return Ok((assessment, Vec::new()));
        };
        query("UPDATE cases SET risk = $1 WHERE id = $2")
            .bind(new.risk.as_str())
            .bind(&new.case_id)
            .execute(&mut *tx)
            .await?;
        let open: Vec<i64> =
            query("SELECT id FROM alerts WHERE case_id = $1 AND state <> 'resolved' ORDER BY id")
                .bind(&new.case_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect::<std::result::Result<_, _>>()?;
        let mut changes = Vec::with_capacity(open.len());
        for id in open {
            let event_seq = self
                .history_and_event(
                    &mut *tx,
                    id,
                    at,
                    new.assessed_by.as_deref(),
                    "risk_changed",
                    Some(&note),
                )
                .await?;
            changes.push(AlertChange {
                event_seq,
                alert: alert_in(&mut *tx, id).await?,
            });
        }
        Ok((assessment, changes))
    }
}

#[async_trait]
impl<D: Dialect> AssessmentStore for SqlStore<D> {
    async fn record_assessment(
        &self,
        new: &NewAssessment,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<(Assessment, Vec<AlertChange>)> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let recorded = self.record_assessment_in(&mut *tx, new, at).await?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn assessments(&self, case_id: &str) -> Result<Vec<Assessment>> {
        let rows = query_built(format!(
            "SELECT {COLUMNS} FROM risk_assessments WHERE case_id = $1 ORDER BY id DESC"
        ))
        .bind(case_id)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(assessment_from).collect()
    }

    async fn reviews_passed(&self, today: Day) -> Result<Vec<Assessment>> {
        let rows = query_built(format!(
            "SELECT {COLUMNS} FROM risk_assessments a WHERE a.next_review < $1 \
             AND a.id = (SELECT MAX(b.id) FROM risk_assessments b WHERE b.case_id = a.case_id) \
             AND EXISTS (SELECT 1 FROM cases c WHERE c.id = a.case_id AND c.closed_at IS NULL) \
             ORDER BY a.id"
        ))
        .bind(today.to_string())
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(assessment_from).collect()
    }

    async fn latest_assessment(&self, case_id: &str) -> Result<Option<Assessment>> {
        let row = query_built(format!(
            "SELECT {COLUMNS} FROM risk_assessments WHERE case_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(case_id)
        .fetch_optional(&mut *self.pool())
        .await?;
        row.as_ref().map(assessment_from).transpose()
    }
}
