//! Devices: stock, issue and return, coordinator settings, batched health, key rotation.

use async_trait::async_trait;

use super::db::{query, query_built, Row, Rows, Tx};
use super::dialect::{conflict_on_unique, corrupt, Dialect, SqlStore};
use super::{Audit, DeviceHealth, DeviceRecord, KeyRotation, Result, StoreError};
use crate::domain::{DeviceKind, DeviceStatus, Millis, Position};

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Audited at the device's `created_at`.
    async fn insert_device(&self, device: &DeviceRecord, audit: &Audit<'_>) -> Result<()>;
    async fn device(&self, id: &str) -> Result<DeviceRecord>;
    async fn devices(&self) -> Result<Vec<DeviceRecord>>;
    /// `in_stock` → `issued`; a conflict if the device is not in stock.
    async fn issue_device(
        &self,
        id: &str,
        case_id: &str,
        holder: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord>;
    /// `issued` → `returned` or `lost`.
    async fn return_device(
        &self,
        id: &str,
        status: DeviceStatus,
        reason: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord>;
    /// Sets a device's coordinator settings.
    async fn update_device_settings(
        &self,
        id: &str,
        hb_interval_s: Option<u32>,
        supervision_class: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord>;
    async fn flush_health(&self, batch: &[(String, DeviceHealth)]) -> Result<()>;
    /// `(device, last heard)` of every device heard after `since`, from the health rows.
    async fn heard_since(&self, since: Millis) -> Result<Vec<(String, Millis)>>;

    /// Puts a new key (sealed) beside the device's current one; a later rotation replaces a
    /// pending one. Returned and lost devices get none (`Conflict`).
    async fn begin_key_rotation(
        &self,
        id: &str,
        next_key_hex: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord>;
    /// Records that the `cfg` carrying the next key went out.
    async fn key_rotation_announced(&self, id: &str, next_key_hex: &str, at: Millis) -> Result<()>;
    /// The device signed with `next_key_hex`: it becomes the key, and `audit` is written in
    /// the same transaction. False (and nothing written) when another rotation replaced it
    /// meanwhile (or it already completed).
    async fn complete_key_rotation(
        &self,
        id: &str,
        next_key_hex: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<bool>;
    /// Devices whose next key has not been announced yet (asked for from the command line).
    async fn key_rotations_to_announce(&self) -> Result<Vec<String>>;
}

/// Devices' health rows in one statement: 17 values each, well under SQLite's limit of
/// 32,766 bound values a statement (PostgreSQL binds each column as one array).
const HEALTH_ROWS_PER_STATEMENT: usize = 1000;

const DEVICE_COLUMNS: &str =
    "id, kind, model, key_hex, hb_interval_s, supervision_class, status, case_id, \
    holder_person_id, created_at, issued_at, last_heard_at, battery, charging, rssi, fw, \
    reported_model, hello_hb_s, online, last_boot, last_seq, last_test_at, last_lat, last_lon, \
    last_pos_at, next_key_hex, key_rotation_requested_at, key_rotation_announced_at, key_rotated_at, \
    messages_missing, messages_late";

fn device_from(row: &Row) -> Result<DeviceRecord> {
    let small = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let lat: Option<f64> = row.get("last_lat")?;
    let lon: Option<f64> = row.get("last_lon")?;
    let pos_at: Option<i64> = row.get("last_pos_at")?;
    Ok(DeviceRecord {
        id: row.get("id")?,
        kind: DeviceKind::parse(&row.get::<String>("kind")?)
            .ok_or_else(|| corrupt("device kind"))?,
        model: row.get("model")?,
        key_hex: row.get("key_hex")?,
        hb_interval_s: small(row.get("hb_interval_s")?),
        status: DeviceStatus::parse(&row.get::<String>("status")?)
            .ok_or_else(|| corrupt("device status"))?,
        case_id: row.get("case_id")?,
        holder_person_id: row.get("holder_person_id")?,
        created_at: row.get("created_at")?,
        issued_at: row.get("issued_at")?,
        supervision_class: row.get("supervision_class")?,
        key_rotation: KeyRotation {
            next_key_hex: row.get("next_key_hex")?,
            requested_at: row.get("key_rotation_requested_at")?,
            announced_at: row.get("key_rotation_announced_at")?,
            rotated_at: row.get("key_rotated_at")?,
        },
        health: DeviceHealth {
            last_heard_at: row.get("last_heard_at")?,
            battery: row
                .get::<Option<i64>>("battery")?
                .and_then(|v| u8::try_from(v).ok()),
            charging: row.get("charging")?,
            rssi: row
                .get::<Option<i64>>("rssi")?
                .and_then(|v| i32::try_from(v).ok()),
            fw: row.get("fw")?,
            reported_model: row.get("reported_model")?,
            hello_hb_s: small(row.get("hello_hb_s")?),
            online: row.get("online")?,
            last_boot: small(row.get("last_boot")?),
            last_seq: small(row.get("last_seq")?),
            last_test_at: row.get("last_test_at")?,
            last_position: match (lat, lon, pos_at) {
                (Some(lat), Some(lon), Some(at)) => Position::new(lat, lon, None).map(|p| (p, at)),
                _ => None,
            },
            messages_missing: row.get::<i64>("messages_missing")?.max(0) as u64,
            messages_late: row.get::<i64>("messages_late")?.max(0) as u64,
        },
    })
}

impl<D: Dialect> SqlStore<D> {
    /// Ends a change guarded by the device's status (issue, return, a new key): committed
    /// with its audit entry when it applied (`done` rows), otherwise undone and refused with
    /// the status the device is in and `why` it cannot move from there.
    async fn finish_transition(
        &self,
        (one_writer, mut tx): (tokio::sync::MutexGuard<'_, ()>, Box<dyn Tx>),
        done: u64,
        id: &str,
        why: &str,
        audit: &Audit<'_>,
        at: Millis,
    ) -> Result<DeviceRecord> {
        if done == 0 {
            drop((tx, one_writer));
            let current = self.device(id).await?;
            return Err(StoreError::Conflict(format!(
                "device {id} is {}{why}",
                current.status.as_str()
            )));
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        drop(one_writer);
        self.device(id).await
    }
}

#[async_trait]
impl<D: Dialect> DeviceStore for SqlStore<D> {
    async fn insert_device(&self, d: &DeviceRecord, audit: &Audit<'_>) -> Result<()> {
        let change = query(
            "INSERT INTO devices (id, kind, model, key_hex, hb_interval_s, status, created_at, supervision_class) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&d.id)
        .bind(d.kind.as_str())
        .bind(&d.model)
        .bind(&d.key_hex)
        .bind(d.hb_interval_s.map(i64::from))
        .bind(d.status.as_str())
        .bind(d.created_at)
        .bind(&d.supervision_class);
        self.execute_audited(change, "a device with that id exists", audit, d.created_at)
            .await?;
        Ok(())
    }

    async fn device(&self, id: &str) -> Result<DeviceRecord> {
        let row = query_built(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        device_from(&row)
    }

    async fn devices(&self) -> Result<Vec<DeviceRecord>> {
        let rows = query_built(format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id"))
            .fetch_all(&mut *self.pool())
            .await?;
        rows.iter().map(device_from).collect()
    }

    async fn issue_device(
        &self,
        id: &str,
        case_id: &str,
        holder: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord> {
        let (one_writer, mut tx) = self.begin_audited().await?;
        let done = query(
            "UPDATE devices SET status = 'issued', case_id = $1, holder_person_id = $2, issued_at = $3, \
             returned_at = NULL, return_reason = NULL WHERE id = $4 AND status = 'in_stock'",
        )
        .bind(case_id)
        .bind(holder)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, "issue"))?;
        self.finish_transition((one_writer, tx), done, id, ", not in stock", audit, at)
            .await
    }

    async fn return_device(
        &self,
        id: &str,
        status: DeviceStatus,
        reason: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord> {
        let (one_writer, mut tx) = self.begin_audited().await?;
        let done = query(
            "UPDATE devices SET status = $1, returned_at = $2, return_reason = $3 \
             WHERE id = $4 AND status = 'issued'",
        )
        .bind(status.as_str())
        .bind(at)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.finish_transition((one_writer, tx), done, id, ", not issued", audit, at)
            .await
    }

    async fn update_device_settings(
        &self,
        id: &str,
        hb_interval_s: Option<u32>,
        supervision_class: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord> {
        let (one_writer, mut tx) = self.begin_audited().await?;
        let done =
            query("UPDATE devices SET hb_interval_s = $1, supervision_class = $2 WHERE id = $3")
                .bind(hb_interval_s.map(i64::from))
                .bind(supervision_class)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        drop(one_writer);
        self.device(id).await
    }

    async fn flush_health(&self, batch: &[(String, DeviceHealth)]) -> Result<()> {
        // One transaction for the whole batch: one commit (one sync) however many devices,
        // and one statement per thousand devices: at thousands of heartbeats a second a
        // statement per device was most of the database's work.
        // Rows in the order of their ids: every instance flushes the health of the same
        // devices, and two batches locking shared rows in different orders deadlock, losing
        // one of them each time (a deadlock is transient: the rows wait for the next flush).
        let mut rows: Vec<&(String, DeviceHealth)> = batch.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(HEALTH_ROWS_PER_STATEMENT) {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let health = Rows::new("health")
                .texts("id", chunk.iter().map(|(id, _)| id.clone()))
                .ints("last_heard_at", chunk.iter().map(|(_, h)| h.last_heard_at))
                .ints(
                    "battery",
                    chunk.iter().map(|(_, h)| h.battery.map(i64::from)),
                )
                .ints(
                    "charging",
                    chunk.iter().map(|(_, h)| h.charging.map(i64::from)),
                )
                .ints("rssi", chunk.iter().map(|(_, h)| h.rssi.map(i64::from)))
                .texts("fw", chunk.iter().map(|(_, h)| h.fw.clone()))
                .texts(
                    "reported_model",
                    chunk.iter().map(|(_, h)| h.reported_model.clone()),
                )
                .ints(
                    "hello_hb_s",
                    chunk.iter().map(|(_, h)| h.hello_hb_s.map(i64::from)),
                )
                .ints("online", chunk.iter().map(|(_, h)| h.online.map(i64::from)))
                .ints(
                    "last_boot",
                    chunk.iter().map(|(_, h)| h.last_boot.map(i64::from)),
                )
                .ints(
                    "last_seq",
                    chunk.iter().map(|(_, h)| h.last_seq.map(i64::from)),
                )
                .ints("last_test_at", chunk.iter().map(|(_, h)| h.last_test_at))
                .reals(
                    "last_lat",
                    chunk.iter().map(|(_, h)| h.last_position.map(|p| p.0.lat)),
                )
                .reals(
                    "last_lon",
                    chunk.iter().map(|(_, h)| h.last_position.map(|p| p.0.lon)),
                )
                .ints(
                    "last_pos_at",
                    chunk.iter().map(|(_, h)| h.last_position.map(|p| p.1)),
                )
                .ints(
                    "missing",
                    chunk.iter().map(|(_, h)| count(h.messages_missing)),
                )
                .ints("late", chunk.iter().map(|(_, h)| count(h.messages_late)));
            // Flags travel as 0/1 (there is no list of booleans): `<> 0` makes them the
            // column's boolean on PostgreSQL and stays 0/1 on SQLite; null stays null.
            self.dialect
                .with_rows(health)
                .then(
                    "UPDATE devices SET \
                     last_heard_at = COALESCE(health.last_heard_at, devices.last_heard_at), \
                     battery = COALESCE(health.battery, devices.battery), \
                     charging = COALESCE(health.charging <> 0, devices.charging), \
                     rssi = COALESCE(health.rssi, devices.rssi), \
                     fw = COALESCE(health.fw, devices.fw), \
                     reported_model = COALESCE(health.reported_model, devices.reported_model), \
                     hello_hb_s = COALESCE(health.hello_hb_s, devices.hello_hb_s), \
                     online = COALESCE(health.online <> 0, devices.online), \
                     last_boot = COALESCE(health.last_boot, devices.last_boot), \
                     last_seq = COALESCE(health.last_seq, devices.last_seq), \
                     last_test_at = COALESCE(health.last_test_at, devices.last_test_at), \
                     last_lat = COALESCE(health.last_lat, devices.last_lat), \
                     last_lon = COALESCE(health.last_lon, devices.last_lon), \
                     last_pos_at = COALESCE(health.last_pos_at, devices.last_pos_at), \
                     messages_missing = devices.messages_missing + health.missing, \
                     messages_late = devices.messages_late + health.late \
                     FROM health WHERE devices.id = health.id",
                )
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn heard_since(&self, since: Millis) -> Result<Vec<(String, Millis)>> {
        let rows = query("SELECT id, last_heard_at FROM devices WHERE last_heard_at > $1")
            .bind(since)
            .fetch_all(&mut *self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
    }

    async fn begin_key_rotation(
        &self,
        id: &str,
        next_key_hex: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord> {
        let (one_writer, mut tx) = self.begin_audited().await?;
        let done = query(
            "UPDATE devices SET next_key_hex = $1, key_rotation_requested_at = $2, \
             key_rotation_announced_at = NULL WHERE id = $3 AND status IN ('in_stock', 'issued')",
        )
        .bind(next_key_hex)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.finish_transition(
            (one_writer, tx),
            done,
            id,
            ": a returned or lost device gets no new key",
            audit,
            at,
        )
        .await
    }

    async fn key_rotation_announced(&self, id: &str, next_key_hex: &str, at: Millis) -> Result<()> {
        query(
            "UPDATE devices SET key_rotation_announced_at = $1 WHERE id = $2 AND next_key_hex = $3",
        )
        .bind(at)
        .bind(id)
        .bind(next_key_hex)
        .execute(&mut *self.pool())
        .await?;
        Ok(())
    }

    async fn complete_key_rotation(
        &self,
        id: &str,
        next_key_hex: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<bool> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let done = query(
            "UPDATE devices SET key_hex = next_key_hex, next_key_hex = NULL, key_rotated_at = $1, \
             key_rotation_requested_at = NULL, key_rotation_announced_at = NULL \
             WHERE id = $2 AND next_key_hex = $3",
        )
        .bind(at)
        .bind(id)
        .bind(next_key_hex)
        .execute(&mut *tx)
        .await?;
        if done != 1 {
            return Ok(false);
        }
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn key_rotations_to_announce(&self) -> Result<Vec<String>> {
        let rows = query(
            "SELECT id FROM devices WHERE next_key_hex IS NOT NULL AND key_rotation_announced_at IS NULL \
             AND status IN ('in_stock', 'issued') ORDER BY id",
        )
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(|row| Ok(row.get(0)?)).collect()
    }
}
