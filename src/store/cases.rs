//! Protected persons and their cases, and the erasure of closed cases after retention.

use async_trait::async_trait;

use super::db::{query, Row};
use super::dialect::{corrupt, Dialect, SqlStore};
use super::{AlertChange, Audit, CasePatch, Result, StoreError};
use crate::domain::{Address, Case, Millis, Person, Risk};

#[async_trait]
pub trait CaseStore: Send + Sync {
    async fn insert_person(&self, person: &Person, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn person(&self, id: &str) -> Result<Person>;
    async fn persons(&self) -> Result<Vec<Person>>;
    async fn insert_case(&self, case: &Case, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn case(&self, id: &str) -> Result<Case>;
    async fn cases(&self) -> Result<Vec<Case>>;
    /// Changes the case; a risk in `patch` is appended as an assessment (see
    /// `AssessmentStore::record_assessment`). The case as changed, and the changes of its
    /// alerts that the change of risk wrote a line on.
    async fn update_case(
        &self,
        id: &str,
        patch: &CasePatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<(Case, Vec<AlertChange>)>;
    async fn close_case(&self, id: &str, at: Millis, audit: &Audit<'_>) -> Result<Case>;
    /// Erases the personal data of cases closed before `closed_before`: the person's name,
    /// phone and address, positions, the restrained persons and zones, free-text notes.
    /// Alerts stay, pseudonymised, for statistics. Each case is erased in its own
    /// transaction with its audit entry: `audit` with the case as subject and case. Returns
    /// the case ids erased. The case's risk assessments keep their method, risk and dates;
    /// their factors and summary are emptied.
    async fn erase_closed_cases(
        &self,
        closed_before: Millis,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>>;
}

fn person_from(row: &Row) -> Result<Person> {
    let text: Option<String> = row.get("address_text")?;
    let lat: Option<f64> = row.get("address_lat")?;
    let lon: Option<f64> = row.get("address_lon")?;
    Ok(Person {
        id: row.get("id")?,
        name: row.get("name")?,
        phone: row.get("phone")?,
        address: match (text, lat, lon) {
            (Some(text), Some(lat), Some(lon)) => Some(Address { text, lat, lon }),
            _ => None,
        },
        protected_identity: row.get("protected_identity")?,
        region: row.get("region")?,
    })
}

fn case_from(row: &Row) -> Result<Case> {
    Ok(Case {
        id: row.get("id")?,
        reference: row.get("reference")?,
        person_id: row.get("person_id")?,
        risk: Risk::parse(&row.get::<String>("risk")?).ok_or_else(|| corrupt("risk"))?,
        region: row.get("region")?,
        response_plan: row.get("response_plan")?,
        relatives: serde_json::from_str(&row.get::<String>("relatives")?)
            .map_err(|_| corrupt("relatives"))?,
        closed_at: row.get("closed_at")?,
    })
}

#[async_trait]
impl<D: Dialect> CaseStore for SqlStore<D> {
    async fn insert_person(&self, p: &Person, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let change = query(
            "INSERT INTO persons (id, name, phone, address_text, address_lat, address_lon, \
             protected_identity, region, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.phone)
        .bind(p.address.as_ref().map(|a| a.text.clone()))
        .bind(p.address.as_ref().map(|a| a.lat))
        .bind(p.address.as_ref().map(|a| a.lon))
        .bind(p.protected_identity)
        .bind(&p.region)
        .bind(at);
        self.execute_audited(change, "person", audit, at).await?;
        Ok(())
    }

    async fn person(&self, id: &str) -> Result<Person> {
        let row = query("SELECT * FROM persons WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        person_from(&row)
    }

    async fn persons(&self) -> Result<Vec<Person>> {
        let rows = query("SELECT * FROM persons ORDER BY created_at, id")
            .fetch_all(&mut *self.pool())
            .await?;
        rows.iter().map(person_from).collect()
    }

    async fn insert_case(&self, c: &Case, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let change = query(
            "INSERT INTO cases (id, reference, person_id, risk, region, response_plan, created_at, relatives) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(&c.reference)
        .bind(&c.person_id)
        .bind(c.risk.as_str())
        .bind(&c.region)
        .bind(&c.response_plan)
        .bind(at)
        .bind(serde_json::to_string(&c.relatives).map_err(|_| corrupt("relatives"))?);
        self.execute_audited(change, "a case with that reference exists", audit, at)
            .await?;
        Ok(())
    }

    async fn case(&self, id: &str) -> Result<Case> {
        let row = query("SELECT * FROM cases WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        case_from(&row)
    }

    async fn cases(&self) -> Result<Vec<Case>> {
        let rows = query("SELECT * FROM cases ORDER BY created_at, id")
            .fetch_all(&mut *self.pool())
            .await?;
        rows.iter().map(case_from).collect()
    }

    async fn update_case(
        &self,
        id: &str,
        patch: &CasePatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<(Case, Vec<AlertChange>)> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let mut changes = Vec::new();
        if let Some(assessment) = &patch.assessment {
            if assessment.case_id != id {
                return Err(corrupt("an assessment of another case"));
            }
            (_, changes) = self.record_assessment_in(&mut *tx, assessment, at).await?;
        }
        if let Some(relatives) = &patch.relatives {
            query("UPDATE cases SET relatives = $1 WHERE id = $2")
                .bind(serde_json::to_string(relatives).map_err(|_| corrupt("relatives"))?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(plan) = &patch.response_plan {
            query("UPDATE cases SET response_plan = $1 WHERE id = $2")
                .bind(plan)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let row = query("SELECT * FROM cases WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok((case_from(&row)?, changes))
    }

    async fn close_case(&self, id: &str, at: Millis, audit: &Audit<'_>) -> Result<Case> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        query("UPDATE cases SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = query("SELECT * FROM cases WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        case_from(&row)
    }

    async fn erase_closed_cases(
        &self,
        closed_before: Millis,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>> {
        let due = query(
            "SELECT id, person_id FROM cases WHERE closed_at IS NOT NULL AND closed_at < $1 AND erased_at IS NULL",
        )
        .bind(closed_before)
        .fetch_all(&mut *self.pool())
        .await?;
        let mut erased = Vec::new();
        for row in due {
            let (case_id, person_id): (String, String) = (row.get(0)?, row.get(1)?);
            let (_one_writer, mut tx) = self.begin_audited().await?;
            // The person keeps an id (alerts point at it) and nothing else.
            query(
                "UPDATE persons SET name = '(erased)', phone = NULL, address_text = NULL, \
                 address_lat = NULL, address_lon = NULL WHERE id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM cases WHERE person_id = $1 AND id <> $2 AND erased_at IS NULL)",
            )
            .bind(&person_id)
            .bind(&case_id)
            .execute(&mut *tx)
            .await?;
            query(
                "UPDATE orders SET restrained_name = '(erased)', restrained_description = NULL, \
                 restrained_vehicle = NULL, restrained_photo_ref = NULL, zones = '[]' WHERE case_id = $1",
            )
            .bind(&case_id)
            .execute(&mut *tx)
            .await?;
            query(
                "UPDATE alerts SET lat = NULL, lon = NULL, acc_m = NULL, note = NULL, \
                 reasons = '[{\"code\":\"erased\",\"text\":\"(erased after retention)\"}]', trigger_reasons = '[]' WHERE case_id = $1",
            )
            .bind(&case_id)
            .execute(&mut *tx)
            .await?;
            query(
                "UPDATE alert_history SET note = NULL, note_facts = NULL WHERE alert_id IN (SELECT id FROM alerts WHERE case_id = $1)",
            )
            .bind(&case_id)
            .execute(&mut *tx)
            .await?;
            query("UPDATE risk_assessments SET factors = '[]', summary = NULL WHERE case_id = $1")
                .bind(&case_id)
                .execute(&mut *tx)
                .await?;
            query(
                "UPDATE devices SET last_lat = NULL, last_lon = NULL, last_pos_at = NULL WHERE case_id = $1",
            )
            .bind(&case_id)
            .execute(&mut *tx)
            .await?;
            query("UPDATE cases SET response_plan = NULL, relatives = '[]', erased_at = $1 WHERE id = $2")
                .bind(at)
                .bind(&case_id)
                .execute(&mut *tx)
                .await?;
            let entry = audit.subject(&case_id).case(Some(&case_id));
            self.append_audit(&mut *tx, &entry, at).await?;
            tx.commit().await?;
            erased.push(case_id);
        }
        Ok(erased)
    }
}
