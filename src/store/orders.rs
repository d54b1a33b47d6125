//! Restraining orders of a case: who is restrained, when, and the zones.

use async_trait::async_trait;

use super::db::{query, query_built, Row};
use super::dialect::{corrupt, Dialect, SqlStore};
use super::{Audit, Result, StoreError};
use crate::domain::{Millis, Order, OrderKind, Restrained, Zone};

#[async_trait]
pub trait OrderStore: Send + Sync {
    async fn insert_order(&self, order: &Order, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn orders(&self) -> Result<Vec<Order>>;
    async fn order(&self, id: &str) -> Result<Order>;
    /// Replaces everything of an order but its id and case.
    async fn update_order(&self, order: &Order, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn orders_of_case(&self, case_id: &str) -> Result<Vec<Order>>;
}

const ORDER_COLUMNS: &str = "id, case_id, kind, restrained_name, restrained_description, \
    restrained_vehicle, restrained_photo_ref, valid_from, valid_to, zones, tag_device_id";

fn order_from(row: &Row) -> Result<Order> {
    let zones: String = row.get("zones")?;
    Ok(Order {
        id: row.get("id")?,
        case_id: row.get("case_id")?,
        kind: OrderKind::parse(&row.get::<String>("kind")?).ok_or_else(|| corrupt("order kind"))?,
        restrained: Restrained {
            name: row.get("restrained_name")?,
            description: row.get("restrained_description")?,
            vehicle: row.get("restrained_vehicle")?,
            photo_ref: row.get("restrained_photo_ref")?,
        },
        valid_from: row.get("valid_from")?,
        valid_to: row.get("valid_to")?,
        zones: serde_json::from_str::<Vec<Zone>>(&zones).map_err(|_| corrupt("zones"))?,
        tag_device_id: row.get("tag_device_id")?,
    })
}

#[async_trait]
impl<D: Dialect> OrderStore for SqlStore<D> {
    async fn insert_order(&self, o: &Order, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let zones = serde_json::to_string(&o.zones).map_err(|_| corrupt("zones"))?;
        let change = query(
            "INSERT INTO orders (id, case_id, kind, restrained_name, restrained_description, \
             restrained_vehicle, restrained_photo_ref, valid_from, valid_to, zones, tag_device_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&o.id)
        .bind(&o.case_id)
        .bind(o.kind.as_str())
        .bind(&o.restrained.name)
        .bind(&o.restrained.description)
        .bind(&o.restrained.vehicle)
        .bind(&o.restrained.photo_ref)
        .bind(o.valid_from)
        .bind(o.valid_to)
        .bind(zones)
        .bind(&o.tag_device_id)
        .bind(at);
        self.execute_audited(change, "order", audit, at).await?;
        Ok(())
    }

    async fn orders(&self) -> Result<Vec<Order>> {
        let rows = query_built(format!(
            "SELECT {ORDER_COLUMNS} FROM orders ORDER BY valid_from, id"
        ))
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(order_from).collect()
    }

    async fn order(&self, id: &str) -> Result<Order> {
        let row = query_built(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        order_from(&row)
    }

    async fn update_order(&self, o: &Order, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let zones = serde_json::to_string(&o.zones).map_err(|_| corrupt("zones"))?;
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let done = query(
            "UPDATE orders SET kind = $1, restrained_name = $2, restrained_description = $3, \
             restrained_vehicle = $4, restrained_photo_ref = $5, valid_from = $6, valid_to = $7, \
             zones = $8, tag_device_id = $9 WHERE id = $10",
        )
        .bind(o.kind.as_str())
        .bind(&o.restrained.name)
        .bind(&o.restrained.description)
        .bind(&o.restrained.vehicle)
        .bind(&o.restrained.photo_ref)
        .bind(o.valid_from)
        .bind(o.valid_to)
        .bind(zones)
        .bind(&o.tag_device_id)
        .bind(&o.id)
        .execute(&mut *tx)
        .await?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn orders_of_case(&self, case_id: &str) -> Result<Vec<Order>> {
        let rows = query_built(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE case_id = $1 ORDER BY valid_from, id"
        ))
        .bind(case_id)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(order_from).collect()
    }
}
