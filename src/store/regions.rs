//! Police regions and their local areas, as admins keep them.

use async_trait::async_trait;

use super::db::{query, query_built};
use super::dialect::{conflict_on_unique, Dialect, SqlStore};
use super::{Audit, LocalArea, Region, RegionPatch, Result, StoreError};
use crate::domain::Millis;

#[async_trait]
pub trait RegionStore: Send + Sync {
    /// The police regions with their local areas, by name.
    async fn regions(&self) -> Result<Vec<Region>>;
    /// Puts `list` into a store that holds no region yet (its first start); false when it
    /// held some already, which stay as they are.
    async fn seed_regions(&self, list: &[Region], at: Millis) -> Result<bool>;
    /// Adds a region (its local areas too); a conflict when its code or name is taken.
    async fn insert_region(&self, region: &Region, at: Millis, audit: &Audit<'_>) -> Result<()>;
    /// Renames or retires a region. A new name is carried, in the same transaction, to the
    /// persons, cases, users and alerts that held the old one exactly: they stay visible to
    /// the same officers.
    async fn update_region(
        &self,
        code: &str,
        patch: &RegionPatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Region>;
    /// Gives the persons, cases, users and alerts whose region is exactly `from` the region
    /// `to` (an operator correcting a misspelling); how many rows changed. The audit entry's
    /// detail gets that number appended (`: N record(s)`), known only inside the transaction.
    async fn respell_region(
        &self,
        from: &str,
        to: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<u64>;
    async fn insert_local_area(
        &self,
        region_code: &str,
        area: &LocalArea,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<()>;
    async fn update_local_area(
        &self,
        region_code: &str,
        code: &str,
        patch: &RegionPatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<LocalArea>;
}

/// The tables whose rows carry a region by name.
const REGION_HOLDERS: [&str; 4] = ["persons", "cases", "users", "alerts"];

#[async_trait]
impl<D: Dialect> RegionStore for SqlStore<D> {
    async fn regions(&self) -> Result<Vec<Region>> {
        let regions = query("SELECT code, name, retired_at FROM regions")
            .fetch_all(&mut *self.pool())
            .await?;
        let areas = query("SELECT region_code, code, name, retired_at FROM local_areas")
            .fetch_all(&mut *self.pool())
            .await?;
        let areas = areas
            .iter()
            .map(|row| -> Result<(String, LocalArea)> {
                Ok((
                    row.get(0)?,
                    LocalArea {
                        code: row.get(1)?,
                        name: row.get(2)?,
                        retired: row.get::<Option<i64>>(3)?.is_some(),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let by_name = |a: &str, b: &str| a.to_lowercase().cmp(&b.to_lowercase());
        let mut list = regions
            .iter()
            .map(|row| -> Result<Region> {
                let code: String = row.get(0)?;
                let mut local_areas: Vec<LocalArea> = areas
                    .iter()
                    .filter(|a| a.0 == code)
                    .map(|a| a.1.clone())
                    .collect();
                local_areas.sort_by(|a, b| by_name(&a.name, &b.name));
                Ok(Region {
                    code,
                    name: row.get(1)?,
                    retired: row.get::<Option<i64>>(2)?.is_some(),
                    local_areas,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        list.sort_by(|a, b| by_name(&a.name, &b.name));
        Ok(list)
    }

    async fn seed_regions(&self, list: &[Region], at: Millis) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let held: i64 = query("SELECT COUNT(*) FROM regions")
            .fetch_one(&mut *tx)
            .await?
            .get(0)?;
        if held > 0 {
            return Ok(false);
        }
        // Another instance starting at the same moment seeds the same list: whoever
        // comes second adds nothing.
        for r in list {
            query(
                "INSERT INTO regions (code, name, retired_at, created_at) VALUES ($1, $2, NULL, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&r.code)
            .bind(&r.name)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            for a in &r.local_areas {
                query(
                    "INSERT INTO local_areas (code, region_code, name, retired_at, created_at) \
                     VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&a.code)
                .bind(&r.code)
                .bind(&a.name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_region(&self, r: &Region, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        query("INSERT INTO regions (code, name, retired_at, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&r.code)
            .bind(&r.name)
            .bind(r.retired.then_some(at))
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, "a region with that code or name exists"))?;
        for a in &r.local_areas {
            query(
                "INSERT INTO local_areas (code, region_code, name, retired_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&a.code)
            .bind(&r.code)
            .bind(&a.name)
            .bind(a.retired.then_some(at))
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, "a local area with that code exists"))?;
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_region(
        &self,
        code: &str,
        patch: &RegionPatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Region> {
        let (one_writer, mut tx) = self.begin_audited().await?;
        let old: String = query("SELECT name FROM regions WHERE code = $1")
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?
            .get(0)?;
        if let Some(name) = patch.name.as_ref().filter(|n| **n != old) {
            query("UPDATE regions SET name = $1 WHERE code = $2")
                .bind(name)
                .bind(code)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a region with that name exists"))?;
            for table in REGION_HOLDERS {
                query_built(format!("UPDATE {table} SET region = $1 WHERE region = $2"))
                    .bind(name)
                    .bind(&old)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(retired) = patch.retired {
            query(
                "UPDATE regions SET retired_at = CASE WHEN $1 THEN COALESCE(retired_at, $2) END \
                 WHERE code = $3",
            )
            .bind(retired)
            .bind(at)
            .bind(code)
            .execute(&mut *tx)
            .await?;
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        drop(one_writer);
        self.regions()
            .await?
            .into_iter()
            .find(|r| r.code == code)
            .ok_or(StoreError::NotFound)
    }

    async fn respell_region(
        &self,
        from: &str,
        to: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<u64> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let mut changed = 0;
        for table in REGION_HOLDERS {
            changed += query_built(format!("UPDATE {table} SET region = $1 WHERE region = $2"))
                .bind(to)
                .bind(from)
                .execute(&mut *tx)
                .await?;
        }
        let detail = format!("{}: {changed} record(s)", audit.detail.unwrap_or_default());
        self.append_audit(&mut *tx, &audit.detail(&detail), at)
            .await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn insert_local_area(
        &self,
        region_code: &str,
        a: &LocalArea,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let change = query(
            "INSERT INTO local_areas (code, region_code, name, retired_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.code)
        .bind(region_code)
        .bind(&a.name)
        .bind(a.retired.then_some(at))
        .bind(at);
        let what = "a local area with that code or name exists";
        self.execute_audited(change, what, audit, at).await?;
        Ok(())
    }

    async fn update_local_area(
        &self,
        region_code: &str,
        code: &str,
        patch: &RegionPatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<LocalArea> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        query("SELECT code FROM local_areas WHERE code = $1 AND region_code = $2")
            .bind(code)
            .bind(region_code)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        if let Some(name) = &patch.name {
            query("UPDATE local_areas SET name = $1 WHERE code = $2")
                .bind(name)
                .bind(code)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a local area of that region has that name"))?;
        }
        if let Some(retired) = patch.retired {
            query(
                "UPDATE local_areas SET retired_at = CASE WHEN $1 THEN COALESCE(retired_at, $2) END \
                 WHERE code = $3",
            )
            .bind(retired)
            .bind(at)
            .bind(code)
            .execute(&mut *tx)
            .await?;
        }
        let row = query("SELECT name, retired_at FROM local_areas WHERE code = $1")
            .bind(code)
            .fetch_one(&mut *tx)
            .await?;
        let (name, retired_at): (String, Option<i64>) = (row.get(0)?, row.get(1)?);
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(LocalArea {
            code: code.to_owned(),
            name,
            retired: retired_at.is_some(),
        })
    }
}
