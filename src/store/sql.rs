//! The SQL behind `Store`, written once and instantiated for SQLite and PostgreSQL.
//!
//! Both speak `$1` placeholders, `RETURNING`, `ON CONFLICT` and partial unique indexes, so
//! one text serves both; a macro stamps it out per driver because sqlx's generic bounds
//! would bury the SQL under trait noise.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;

use super::*;
use crate::domain::{
    rfc3339, Address, Alert, AlertKind, AlertState, Case, DeviceKind, DeviceStatus, Order,
    OrderKind, Outcome, Person, Position, Priority, Restrained, Risk, Zone,
};

const ALERT_COLUMNS: &str = "id, priority, kind, state, case_id, device_id, region, first_at, \
    last_at, count, lat, lon, acc_m, reasons, overdue, back_online, cancel_pressed, origin_boot, origin_seq, \
    acknowledged_by, acknowledged_at, resolved_by, resolved_at, outcome";

const DEVICE_COLUMNS: &str =
    "id, kind, model, key_hex, hb_interval_s, supervision_class, status, case_id, \
    holder_person_id, created_at, issued_at, last_heard_at, battery, charging, rssi, fw, \
    reported_model, hello_hb_s, online, last_boot, last_seq, last_test_at, last_lat, last_lon, \
    last_pos_at, next_key_hex, key_rotation_requested_at, key_rotation_announced_at, key_rotated_at, \
    messages_missing, messages_late";

const ORDER_COLUMNS: &str = "id, case_id, kind, restrained_name, restrained_description, \
    restrained_vehicle, restrained_photo_ref, valid_from, valid_to, zones, tag_device_id";

const MAX_TRIGGER_LINES: usize = 12;

/// The stored trigger lines, and the full reasons an officer reads: triggers, then context.
fn reasons_json(trigger: &[Reason], context: &[Reason]) -> Result<(String, String)> {
    let all: Vec<&Reason> = trigger.iter().chain(context).collect();
    Ok((
        serde_json::to_string(trigger).map_err(|_| corrupt("reasons"))?,
        serde_json::to_string(&all).map_err(|_| corrupt("reasons"))?,
    ))
}

/// The history note of a device message that opened or repeated an alert.
fn message_note(code: &str, prefix: &str, kind: AlertKind, origin: Option<(u32, u32)>) -> Reason {
    let text = match origin {
        Some((boot, seq)) => format!("{prefix}{} (boot {boot}, seq {seq})", kind.as_str()),
        None => format!("{prefix}{}", kind.as_str()),
    };
    Reason::new(code, text)
        .with("kind", kind.as_str())
        .with("boot", origin.map(|o| o.0))
        .with("seq", origin.map(|o| o.1))
}

#[derive(serde::Deserialize)]
struct NoteFacts {
    code: String,
    #[serde(default)]
    values: serde_json::Map<String, serde_json::Value>,
}

/// An officer's own words: stored as written, with no code.
fn officer_note(note: Option<&str>) -> Option<Reason> {
    note.map(|n| Reason::new("text", n))
}

/// The code and values of a note, for the `note_facts` column; none for plain words.
fn note_facts(note: Option<&Reason>) -> Option<String> {
    let note = note.filter(|n| n.code != "text")?;
    Some(serde_json::json!({"code": note.code, "values": note.values}).to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn conflict_on_unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Conflict(
            format!("{what}: it refers to something that does not exist"),
        ),
        _ => StoreError::Database(e),
    }
}

macro_rules! sql_store {
    ($name:ident, $db:ty, $pool:ty, $migrations:literal) => {
        pub struct $name {
            pool: $pool,
            audit_lock: tokio::sync::Mutex<()>,
        }

        impl $name {
            fn user_from(row: &<$db as sqlx::Database>::Row) -> Result<User> {
                Ok(User {
                    username: row.try_get("username")?,
                    role: Role::parse(&row.try_get::<String, _>("role")?)
                        .ok_or_else(|| corrupt("role"))?,
                    region: row.try_get("region")?,
                    password_hash: row.try_get("password_hash")?,
                    totp_secret: row.try_get("totp_secret")?,
                })
            }

            fn person_from(row: &<$db as sqlx::Database>::Row) -> Result<Person> {
                let text: Option<String> = row.try_get("address_text")?;
                let lat: Option<f64> = row.try_get("address_lat")?;
                let lon: Option<f64> = row.try_get("address_lon")?;
                Ok(Person {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    phone: row.try_get("phone")?,
                    address: match (text, lat, lon) {
                        (Some(text), Some(lat), Some(lon)) => Some(Address { text, lat, lon }),
                        _ => None,
                    },
                    protected_identity: row.try_get("protected_identity")?,
                    region: row.try_get("region")?,
                })
            }

            fn case_from(row: &<$db as sqlx::Database>::Row) -> Result<Case> {
                Ok(Case {
                    id: row.try_get("id")?,
                    reference: row.try_get("reference")?,
                    person_id: row.try_get("person_id")?,
                    risk: Risk::parse(&row.try_get::<String, _>("risk")?)
                        .ok_or_else(|| corrupt("risk"))?,
                    region: row.try_get("region")?,
                    response_plan: row.try_get("response_plan")?,
                    relatives: serde_json::from_str(&row.try_get::<String, _>("relatives")?)
                        .map_err(|_| corrupt("relatives"))?,
                    closed_at: row.try_get("closed_at")?,
                })
            }

            fn order_from(row: &<$db as sqlx::Database>::Row) -> Result<Order> {
                let zones: String = row.try_get("zones")?;
                Ok(Order {
                    id: row.try_get("id")?,
                    case_id: row.try_get("case_id")?,
                    kind: OrderKind::parse(&row.try_get::<String, _>("kind")?)
                        .ok_or_else(|| corrupt("order kind"))?,
                    restrained: Restrained {
                        name: row.try_get("restrained_name")?,
                        description: row.try_get("restrained_description")?,
                        vehicle: row.try_get("restrained_vehicle")?,
                        photo_ref: row.try_get("restrained_photo_ref")?,
                    },
                    valid_from: row.try_get("valid_from")?,
                    valid_to: row.try_get("valid_to")?,
                    zones: serde_json::from_str::<Vec<Zone>>(&zones)
                        .map_err(|_| corrupt("zones"))?,
                    tag_device_id: row.try_get("tag_device_id")?,
                })
            }

            fn device_from(row: &<$db as sqlx::Database>::Row) -> Result<DeviceRecord> {
                let small = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
                let lat: Option<f64> = row.try_get("last_lat")?;
                let lon: Option<f64> = row.try_get("last_lon")?;
                let pos_at: Option<i64> = row.try_get("last_pos_at")?;
                Ok(DeviceRecord {
                    id: row.try_get("id")?,
                    kind: DeviceKind::parse(&row.try_get::<String, _>("kind")?)
                        .ok_or_else(|| corrupt("device kind"))?,
                    model: row.try_get("model")?,
                    key_hex: row.try_get("key_hex")?,
                    hb_interval_s: small(row.try_get("hb_interval_s")?),
                    status: DeviceStatus::parse(&row.try_get::<String, _>("status")?)
                        .ok_or_else(|| corrupt("device status"))?,
                    case_id: row.try_get("case_id")?,
                    holder_person_id: row.try_get("holder_person_id")?,
                    created_at: row.try_get("created_at")?,
                    issued_at: row.try_get("issued_at")?,
                    supervision_class: row.try_get("supervision_class")?,
                    key_rotation: KeyRotation {
                        next_key_hex: row.try_get("next_key_hex")?,
                        requested_at: row.try_get("key_rotation_requested_at")?,
                        announced_at: row.try_get("key_rotation_announced_at")?,
                        rotated_at: row.try_get("key_rotated_at")?,
                    },
                    health: DeviceHealth {
                        last_heard_at: row.try_get("last_heard_at")?,
                        battery: row
                            .try_get::<Option<i64>, _>("battery")?
                            .and_then(|v| u8::try_from(v).ok()),
                        charging: row.try_get("charging")?,
                        rssi: row
                            .try_get::<Option<i64>, _>("rssi")?
                            .and_then(|v| i32::try_from(v).ok()),
                        fw: row.try_get("fw")?,
                        reported_model: row.try_get("reported_model")?,
                        hello_hb_s: small(row.try_get("hello_hb_s")?),
                        online: row.try_get("online")?,
                        last_boot: small(row.try_get("last_boot")?),
                        last_seq: small(row.try_get("last_seq")?),
                        last_test_at: row.try_get("last_test_at")?,
                        last_position: match (lat, lon, pos_at) {
                            (Some(lat), Some(lon), Some(at)) => {
                                Position::new(lat, lon, None).map(|p| (p, at))
                            }
                            _ => None,
                        },
                        messages_missing: row.try_get::<i64, _>("messages_missing")?.max(0) as u64,
                        messages_late: row.try_get::<i64, _>("messages_late")?.max(0) as u64,
                    },
                })
            }

            fn alert_from(row: &<$db as sqlx::Database>::Row) -> Result<Alert> {
                let lat: Option<f64> = row.try_get("lat")?;
                let lon: Option<f64> = row.try_get("lon")?;
                let acc: Option<i64> = row.try_get("acc_m")?;
                let boot: Option<i64> = row.try_get("origin_boot")?;
                let seq: Option<i64> = row.try_get("origin_seq")?;
                let outcome: Option<String> = row.try_get("outcome")?;
                let reasons: String = row.try_get("reasons")?;
                Ok(Alert {
                    id: row.try_get("id")?,
                    priority: Priority::new(row.try_get::<i64, _>("priority")? as u8)
                        .ok_or_else(|| corrupt("priority"))?,
                    kind: AlertKind::parse(&row.try_get::<String, _>("kind")?)
                        .ok_or_else(|| corrupt("alert kind"))?,
                    state: AlertState::parse(&row.try_get::<String, _>("state")?)
                        .ok_or_else(|| corrupt("alert state"))?,
                    case_id: row.try_get("case_id")?,
                    device_id: row.try_get("device_id")?,
                    region: row.try_get("region")?,
                    first_at: row.try_get("first_at")?,
                    last_at: row.try_get("last_at")?,
                    count: row.try_get("count")?,
                    position: match (lat, lon) {
                        (Some(lat), Some(lon)) => Position::new(
                            lat,
                            lon,
                            acc.and_then(|a| u32::try_from(a).ok()),
                        ),
                        _ => None,
                    },
                    reasons: Reason::list_from_json(&reasons).map_err(|_| corrupt("reasons"))?,
                    overdue: row.try_get("overdue")?,
                    back_online: row.try_get("back_online")?,
                    cancel_pressed: row.try_get("cancel_pressed")?,
                    acknowledged_by: row.try_get("acknowledged_by")?,
                    acknowledged_at: row.try_get("acknowledged_at")?,
                    resolved_by: row.try_get("resolved_by")?,
                    resolved_at: row.try_get("resolved_at")?,
                    outcome: match outcome {
                        Some(o) => Some(Outcome::parse(&o).ok_or_else(|| corrupt("outcome"))?),
                        None => None,
                    },
                    origin: match (boot, seq) {
                        (Some(b), Some(s)) => Some((b as u32, s as u32)),
                        _ => None,
                    },
                })
            }

            async fn history_and_event(
                tx: &mut sqlx::Transaction<'static, $db>,
                alert_id: i64,
                at: i64,
                actor: Option<&str>,
                action: &str,
                note: Option<&Reason>,
            ) -> Result<i64> {
                sqlx::query(
                    "INSERT INTO alert_history (alert_id, at, actor, action, note, note_facts) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(alert_id)
                .bind(at)
                .bind(actor)
                .bind(action)
                .bind(note.map(|n| n.text.as_str()))
                .bind(note_facts(note))
                .execute(&mut **tx)
                .await?;
                let (seq,): (i64,) =
                    sqlx::query_as("INSERT INTO alert_events (alert_id, at) VALUES ($1, $2) RETURNING seq")
                        .bind(alert_id)
                        .bind(at)
                        .fetch_one(&mut **tx)
                        .await?;
                Self::announce(tx, seq).await?;
                Ok(seq)
            }

            async fn alert_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: i64,
            ) -> Result<Alert> {
                let q = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::alert_from(&row)
            }

            /// Begins a transaction that extends the audit chain. One writer at a time extends
            /// it: in this process by the mutex (always taken before the database's write
            /// lock), across instances by the per-backend lock taken inside the transaction.
            async fn begin_audited(
                &self,
            ) -> Result<(tokio::sync::MutexGuard<'_, ()>, sqlx::Transaction<'static, $db>)> {
                let one_writer = self.audit_lock.lock().await;
                let mut tx = self.begin_write().await?;
                Self::lock_audit_chain(&mut tx).await?;
                Ok((one_writer, tx))
            }

            /// Appends `entry` to the audit chain in a transaction from `begin_audited`: it
            /// commits with the change it records, or neither does.
            async fn append_audit(
                tx: &mut sqlx::Transaction<'static, $db>,
                entry: &Audit<'_>,
                at: Millis,
            ) -> Result<()> {
                let prev: Option<(String,)> = sqlx::query_as("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                let prev = prev.map(|p| p.0).unwrap_or_else(|| crate::audit::GENESIS.to_owned());
                let hash = crate::audit::entry_hash(&prev, &entry.record(at));
                sqlx::query(
                    "INSERT INTO audit_log (at, actor, action, subject, case_id, detail, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(at)
                .bind(entry.actor)
                .bind(entry.action)
                .bind(entry.subject)
                .bind(entry.case_id)
                .bind(entry.detail)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $name {
            async fn migrate(&self) -> Result<()> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert_user(&self, u: &User, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(
                    "INSERT INTO users (username, role, region, password_hash, totp_secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&u.username)
                .bind(u.role.as_str())
                .bind(&u.region)
                .bind(&u.password_hash)
                .bind(&u.totp_secret)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a user with that name exists"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn upsert_user(&self, u: &User, at: Millis) -> Result<()> {
                sqlx::query(
                    "INSERT INTO users (username, role, region, password_hash, totp_secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO UPDATE SET role = excluded.role, \
                     region = excluded.region, password_hash = excluded.password_hash, totp_secret = excluded.totp_secret",
                )
                .bind(&u.username)
                .bind(u.role.as_str())
                .bind(&u.region)
                .bind(&u.password_hash)
                .bind(&u.totp_secret)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn users(&self) -> Result<Vec<User>> {
                let rows = sqlx::query("SELECT * FROM users ORDER BY username")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::user_from).collect()
            }

            async fn user(&self, username: &str) -> Result<User> {
                let row = sqlx::query("SELECT * FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::user_from(&row)
            }

            async fn replace_totp_secret(&self, username: &str, old: &str, new: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE users SET totp_secret = $1 WHERE username = $2 AND totp_secret = $3",
                )
                .bind(new)
                .bind(username)
                .bind(old)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_totp_step(&self, username: &str, step: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE users SET totp_last_step = $1 WHERE username = $2 \
                     AND (totp_last_step IS NULL OR totp_last_step < $1)",
                )
                .bind(step)
                .bind(username)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_session(&self, token_hash: &str, username: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, username, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(token_hash)
                .bind(username)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session_user(&self, token_hash: &str, idle_since: Millis, created_since: Millis, at: Millis) -> Result<Option<User>> {
                let touched = sqlx::query(
                    "UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2 AND last_seen_at >= $3 AND created_at >= $4",
                )
                .bind(at)
                .bind(token_hash)
                .bind(idle_since)
                .bind(created_since)
                .execute(&self.pool)
                .await?;
                if touched.rows_affected() == 0 {
                    return Ok(None);
                }
                let row = sqlx::query(
                    "SELECT u.* FROM users u JOIN sessions s ON s.username = u.username WHERE s.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::user_from).transpose()
            }

            async fn delete_session(&self, token_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn session_times(&self, token_hash: &str) -> Result<Option<(Millis, Millis)>> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT created_at, last_seen_at FROM sessions WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }

            async fn insert_api_token(&self, token_hash: &str, username: &str, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query("INSERT INTO api_tokens (token_hash, username, created_at) VALUES ($1, $2, $3)")
                    .bind(token_hash)
                    .bind(username)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_on_unique(e, "token"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn token_user(&self, token_hash: &str) -> Result<Option<User>> {
                let row = sqlx::query(
                    "SELECT u.* FROM users u JOIN api_tokens t ON t.username = u.username WHERE t.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::user_from).transpose()
            }

            async fn insert_person(&self, p: &Person, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(
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
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "person"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn person(&self, id: &str) -> Result<Person> {
                let row = sqlx::query("SELECT * FROM persons WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::person_from(&row)
            }

            async fn persons(&self) -> Result<Vec<Person>> {
                let rows = sqlx::query("SELECT * FROM persons ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::person_from).collect()
            }

            async fn insert_case(&self, c: &Case, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(
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
                .bind(serde_json::to_string(&c.relatives).map_err(|_| corrupt("relatives"))?)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a case with that reference exists"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn case(&self, id: &str) -> Result<Case> {
                let row = sqlx::query("SELECT * FROM cases WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::case_from(&row)
            }

            async fn cases(&self) -> Result<Vec<Case>> {
                let rows = sqlx::query("SELECT * FROM cases ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::case_from).collect()
            }

            async fn update_case(&self, id: &str, patch: &CasePatch, at: Millis, audit: &Audit<'_>) -> Result<Case> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                if let Some(risk) = patch.risk {
                    sqlx::query("UPDATE cases SET risk = $1 WHERE id = $2")
                        .bind(risk.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(relatives) = &patch.relatives {
                    sqlx::query("UPDATE cases SET relatives = $1 WHERE id = $2")
                        .bind(serde_json::to_string(relatives).map_err(|_| corrupt("relatives"))?)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(plan) = &patch.response_plan {
                    sqlx::query("UPDATE cases SET response_plan = $1 WHERE id = $2")
                        .bind(plan)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                let row = sqlx::query("SELECT * FROM cases WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Self::case_from(&row)
            }

            async fn close_case(&self, id: &str, at: Millis, audit: &Audit<'_>) -> Result<Case> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query("UPDATE cases SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query("SELECT * FROM cases WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Self::case_from(&row)
            }

            async fn insert_order(&self, o: &Order, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let zones = serde_json::to_string(&o.zones).map_err(|_| corrupt("zones"))?;
                let q = "INSERT INTO orders (id, case_id, kind, restrained_name, restrained_description, \
                     restrained_vehicle, restrained_photo_ref, valid_from, valid_to, zones, tag_device_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(q)
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
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_on_unique(e, "order"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn orders(&self) -> Result<Vec<Order>> {
                let q = format!("SELECT {ORDER_COLUMNS} FROM orders ORDER BY valid_from, id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&self.pool).await?;
                rows.iter().map(Self::order_from).collect()
            }

            async fn order(&self, id: &str) -> Result<Order> {
                let q = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::order_from(&row)
            }

            async fn update_order(&self, o: &Order, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let zones = serde_json::to_string(&o.zones).map_err(|_| corrupt("zones"))?;
                let (_one_writer, mut tx) = self.begin_audited().await?;
                let done = sqlx::query(
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
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn orders_of_case(&self, case_id: &str) -> Result<Vec<Order>> {
                let q = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE case_id = $1 ORDER BY valid_from, id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(case_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::order_from).collect()
            }

            async fn insert_device(&self, d: &DeviceRecord, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(
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
                .bind(&d.supervision_class)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a device with that id exists"))?;
                Self::append_audit(&mut tx, audit, d.created_at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn device(&self, id: &str) -> Result<DeviceRecord> {
                let q = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::device_from(&row)
            }

            async fn devices(&self) -> Result<Vec<DeviceRecord>> {
                let q = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&self.pool).await?;
                rows.iter().map(Self::device_from).collect()
            }

            async fn issue_device(&self, id: &str, case_id: &str, holder: &str, at: Millis, audit: &Audit<'_>) -> Result<DeviceRecord> {
                let (one_writer, mut tx) = self.begin_audited().await?;
                let done = sqlx::query(
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
                if done.rows_affected() == 0 {
                    drop((tx, one_writer));
                    let current = self.device(id).await?;
                    return Err(StoreError::Conflict(format!(
                        "device {id} is {}, not in stock",
                        current.status.as_str()
                    )));
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                drop(one_writer);
                self.device(id).await
            }

            async fn return_device(&self, id: &str, status: DeviceStatus, reason: &str, at: Millis, audit: &Audit<'_>) -> Result<DeviceRecord> {
                let (one_writer, mut tx) = self.begin_audited().await?;
                let done = sqlx::query(
                    "UPDATE devices SET status = $1, returned_at = $2, return_reason = $3 \
                     WHERE id = $4 AND status = 'issued'",
                )
                .bind(status.as_str())
                .bind(at)
                .bind(reason)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    drop((tx, one_writer));
                    let current = self.device(id).await?;
                    return Err(StoreError::Conflict(format!(
                        "device {id} is {}, not issued",
                        current.status.as_str()
                    )));
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                drop(one_writer);
                self.device(id).await
            }

            async fn flush_health(&self, batch: &[(String, DeviceHealth)]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for (id, h) in batch {
                    sqlx::query(
                        "UPDATE devices SET last_heard_at = COALESCE($1, last_heard_at), \
                         battery = COALESCE($2, battery), charging = COALESCE($3, charging), \
                         rssi = COALESCE($4, rssi), fw = COALESCE($5, fw), \
                         reported_model = COALESCE($6, reported_model), hello_hb_s = COALESCE($7, hello_hb_s), \
                         online = COALESCE($8, online), last_boot = COALESCE($9, last_boot), \
                         last_seq = COALESCE($10, last_seq), last_test_at = COALESCE($11, last_test_at), \
                         last_lat = COALESCE($12, last_lat), last_lon = COALESCE($13, last_lon), \
                         last_pos_at = COALESCE($14, last_pos_at), \
                         messages_missing = messages_missing + $16, messages_late = messages_late + $17 WHERE id = $15",
                    )
                    .bind(h.last_heard_at)
                    .bind(h.battery.map(i64::from))
                    .bind(h.charging)
                    .bind(h.rssi.map(i64::from))
                    .bind(&h.fw)
                    .bind(&h.reported_model)
                    .bind(h.hello_hb_s.map(i64::from))
                    .bind(h.online)
                    .bind(h.last_boot.map(i64::from))
                    .bind(h.last_seq.map(i64::from))
                    .bind(h.last_test_at)
                    .bind(h.last_position.map(|p| p.0.lat))
                    .bind(h.last_position.map(|p| p.0.lon))
                    .bind(h.last_position.map(|p| p.1))
                    .bind(id)
                    .bind(i64::try_from(h.messages_missing).unwrap_or(i64::MAX))
                    .bind(i64::try_from(h.messages_late).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn raise(&self, r: &Raise) -> Result<RaiseOutcome> {
                let mut tx = self.begin_write().await?;
                // The write comes first so SQLite takes its write lock at once (no upgrade
                // deadlock), and so a redelivered message stops here.
                if let Some((boot, seq)) = r.origin {
                    let fresh = sqlx::query(
                        "INSERT INTO device_messages (device_id, boot, seq, kind, received_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.device_id)
                    .bind(i64::from(boot))
                    .bind(i64::from(seq))
                    .bind(r.kind.as_str())
                    .bind(r.at)
                    .execute(&mut *tx)
                    .await?;
                    if fresh.rows_affected() == 0 {
                        return Ok(RaiseOutcome::Duplicate);
                    }
                }
                let incident = incident_of(r.kind);
                let existing: Option<(i64, i64, String)> = sqlx::query_as(
                    "SELECT id, priority, trigger_reasons FROM alerts WHERE device_id = $1 AND incident = $2 AND state <> 'resolved'",
                )
                .bind(&r.device_id)
                .bind(incident)
                .fetch_optional(&mut *tx)
                .await?;
                let id_seq_opened = match existing {
                    Some((id, priority, old_trigger)) => {
                        let priority = (priority as u8).min(r.priority.get());
                        let mut trigger =
                            Reason::list_from_json(&old_trigger).map_err(|_| corrupt("trigger reasons"))?;
                        for reason in &r.trigger {
                            if !trigger.contains(reason) {
                                trigger.push(reason.clone());
                            }
                        }
                        // A long incident keeps its first words and its latest ones.
                        if trigger.len() > MAX_TRIGGER_LINES {
                            trigger.drain(1..trigger.len() - (MAX_TRIGGER_LINES - 1));
                        }
                        let (trigger_json, reasons) = reasons_json(&trigger, &r.context)?;
                        sqlx::query(
                            "UPDATE alerts SET count = count + 1, last_at = $1, priority = $2, \
                             lat = COALESCE($3, lat), lon = COALESCE($4, lon), acc_m = CASE WHEN $3 IS NULL THEN acc_m ELSE $5 END, \
                             reasons = $6, trigger_reasons = $8, back_online = FALSE WHERE id = $7",
                        )
                        .bind(r.at)
                        .bind(i64::from(priority))
                        .bind(r.position.map(|p| p.lat))
                        .bind(r.position.map(|p| p.lon))
                        .bind(r.position.and_then(|p| p.acc_m).map(i64::from))
                        .bind(&reasons)
                        .bind(id)
                        .bind(&trigger_json)
                        .execute(&mut *tx)
                        .await?;
                        let note = message_note("message_again", "again: ", r.kind, r.origin);
                        let seq = Self::history_and_event(&mut tx, id, r.at, None, "repeated", Some(&note)).await?;
                        (id, seq, false)
                    }
                    None => {
                        let (trigger_json, reasons) = reasons_json(&r.trigger, &r.context)?;
                        let (id,): (i64,) = sqlx::query_as(
                            "INSERT INTO alerts (priority, kind, incident, state, case_id, device_id, region, \
                             first_at, last_at, count, lat, lon, acc_m, reasons, origin_boot, origin_seq, trigger_reasons) \
                             VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $7, 1, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
                        )
                        .bind(i64::from(r.priority.get()))
                        .bind(r.kind.as_str())
                        .bind(incident)
                        .bind(&r.case_id)
                        .bind(&r.device_id)
                        .bind(&r.region)
                        .bind(r.at)
                        .bind(r.position.map(|p| p.lat))
                        .bind(r.position.map(|p| p.lon))
                        .bind(r.position.and_then(|p| p.acc_m).map(i64::from))
                        .bind(&reasons)
                        .bind(r.origin.filter(|_| r.answer_device).map(|o| i64::from(o.0)))
                        .bind(r.origin.filter(|_| r.answer_device).map(|o| i64::from(o.1)))
                        .bind(&trigger_json)
                        .fetch_one(&mut *tx)
                        .await?;
                        let note = message_note("message", "", r.kind, r.origin);
                        let seq = Self::history_and_event(&mut tx, id, r.at, None, "opened", Some(&note)).await?;
                        (id, seq, true)
                    }
                };
                let (id, event_seq, opened) = id_seq_opened;
                if let Some((boot, seq)) = r.origin {
                    sqlx::query("UPDATE device_messages SET alert_id = $1 WHERE device_id = $2 AND boot = $3 AND seq = $4")
                        .bind(id)
                        .bind(&r.device_id)
                        .bind(i64::from(boot))
                        .bind(i64::from(seq))
                        .execute(&mut *tx)
                        .await?;
                }
                let change = AlertChange { event_seq, alert: Self::alert_in(&mut tx, id).await? };
                tx.commit().await?;
                Ok(if opened {
                    RaiseOutcome::Opened(change)
                } else {
                    RaiseOutcome::Updated(change)
                })
            }

            async fn record_message(&self, device_id: &str, boot: u32, seq: u32, kind: &str, at: Millis) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let fresh = sqlx::query(
                    "INSERT INTO device_messages (device_id, boot, seq, kind, received_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(device_id)
                .bind(i64::from(boot))
                .bind(i64::from(seq))
                .bind(kind)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if fresh.rows_affected() > 0 && kind == "test" {
                    sqlx::query("UPDATE devices SET last_test_at = $1 WHERE id = $2")
                        .bind(at)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(fresh.rows_affected() > 0)
            }

            async fn holds_message(&self, device_id: &str, boot: u32, seq: u32) -> Result<bool> {
                let held: Option<(i64,)> = sqlx::query_as(
                    "SELECT seq FROM device_messages WHERE device_id = $1 AND boot = $2 AND seq = $3",
                )
                .bind(device_id)
                .bind(i64::from(boot))
                .bind(i64::from(seq))
                .fetch_optional(&self.pool)
                .await?;
                Ok(held.is_some())
            }

            async fn cancel(&self, device_id: &str, boot: u32, seq: u32, at: Millis) -> Result<CancelOutcome> {
                let mut tx = self.begin_write().await?;
                let fresh = sqlx::query(
                    "INSERT INTO device_messages (device_id, boot, seq, kind, received_at) \
                     VALUES ($1, $2, $3, 'cancel', $4) ON CONFLICT DO NOTHING",
                )
                .bind(device_id)
                .bind(i64::from(boot))
                .bind(i64::from(seq))
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if fresh.rows_affected() == 0 {
                    return Ok(CancelOutcome::Duplicate);
                }
                let open: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM alerts WHERE device_id = $1 AND state <> 'resolved' AND incident = 'emergency'",
                )
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
                let latest_alarm = match open {
                    Some((id,)) => sqlx::query_as::<_, (i64, i64)>(
                        "SELECT boot, seq FROM device_messages WHERE device_id = $1 AND alert_id = $2 \
                         ORDER BY boot DESC, seq DESC LIMIT 1",
                    )
                    .bind(device_id)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|(b, s)| (b as u32, s as u32)),
                    None => None,
                };
                let Some((id,)) = open.filter(|_| crate::domain::policy::incidents::cancel_marks((boot, seq), latest_alarm)) else {
                    tx.commit().await?;
                    return Ok(CancelOutcome::NothingOpen);
                };
                sqlx::query("UPDATE alerts SET cancel_pressed = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let event_seq = Self::history_and_event(
                    &mut tx,
                    id,
                    at,
                    None,
                    "cancel_pressed",
                    Some(&Reason::new("cancel_pressed", "holder pressed cancel: verify by call-back")),
                )
                .await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(CancelOutcome::Marked(Box::new(AlertChange { event_seq, alert })))
            }

            async fn alert(&self, id: i64) -> Result<Alert> {
                let q = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::alert_from(&row)
            }

            async fn alerts(&self, states: &[AlertState]) -> Result<Vec<Alert>> {
                // States are a closed set of constants, so inlining them is safe.
                let list = states
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let q = format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ({list}) ORDER BY priority, first_at, id"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&self.pool).await?;
                rows.iter().map(Self::alert_from).collect()
            }

            async fn alert_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
                let rows: Vec<(i64, Option<String>, String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT at, actor, action, note, note_facts FROM alert_history WHERE alert_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(at, actor, action, note, facts)| {
                        // Facts that do not read are left out: the English note still says it.
                        let facts = facts.and_then(|f| serde_json::from_str::<NoteFacts>(&f).ok());
                        HistoryEntry {
                            at: rfc3339(at),
                            actor,
                            action,
                            note,
                            note_code: facts.as_ref().map(|f| f.code.clone()),
                            note_values: facts.map(|f| f.values),
                        }
                    })
                    .collect())
            }

            async fn acknowledge(&self, id: i64, by: &str, note: Option<&str>, at: Millis) -> Result<AlertChange> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE alerts SET state = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2 \
                     WHERE id = $3 AND state = 'open'",
                )
                .bind(by)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    let current = Self::alert_in(&mut tx, id).await?;
                    return Err(StoreError::Conflict(format!(
                        "alert {id} is {}",
                        current.state.as_str()
                    )));
                }
                let event_seq =
                    Self::history_and_event(&mut tx, id, at, Some(by), "acknowledged", officer_note(note).as_ref()).await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(AlertChange { event_seq, alert })
            }

            async fn resolve(&self, id: i64, by: &str, outcome: Outcome, note: Option<&str>, at: Millis) -> Result<AlertChange> {
                let mut tx = self.begin_write().await?;
                // Resolving an alert nobody acknowledged also records who took it.
                let done = sqlx::query(
                    "UPDATE alerts SET state = 'resolved', resolved_by = $1, resolved_at = $2, outcome = $3, note = $4, \
                     acknowledged_by = COALESCE(acknowledged_by, $1), acknowledged_at = COALESCE(acknowledged_at, $2) \
                     WHERE id = $5 AND state <> 'resolved'",
                )
                .bind(by)
                .bind(at)
                .bind(outcome.as_str())
                .bind(note)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    Self::alert_in(&mut tx, id).await?;
                    return Err(StoreError::Conflict(format!("alert {id} is already resolved")));
                }
                let line = match note {
                    Some(n) => format!("{}: {n}", outcome.as_str()),
                    None => outcome.as_str().to_owned(),
                };
                let line = Reason::new("outcome", line)
                    .with("outcome", outcome.as_str())
                    .with("note", note);
                let event_seq = Self::history_and_event(&mut tx, id, at, Some(by), "resolved", Some(&line)).await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(AlertChange { event_seq, alert })
            }

            async fn changes_since(&self, after: i64) -> Result<Vec<AlertChange>> {
                let rows: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT alert_id, MAX(seq) AS last FROM alert_events WHERE seq > $1 GROUP BY alert_id ORDER BY last",
                )
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for (alert_id, seq) in rows {
                    out.push(AlertChange {
                        event_seq: seq,
                        alert: self.alert(alert_id).await?,
                    });
                }
                Ok(out)
            }

            async fn change_at(&self, event_seq: i64) -> Result<Option<AlertChange>> {
                let found: Option<(i64,)> = sqlx::query_as("SELECT alert_id FROM alert_events WHERE seq = $1")
                    .bind(event_seq)
                    .fetch_optional(&self.pool)
                    .await?;
                match found {
                    Some((alert_id,)) => Ok(Some(AlertChange { event_seq, alert: self.alert(alert_id).await? })),
                    None => Ok(None),
                }
            }

            fn changes_from_elsewhere(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
                self.listen_for_changes()
            }

            async fn last_event_seq(&self) -> Result<i64> {
                let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM alert_events")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(seq.unwrap_or(0))
            }

            async fn security_events(&self, limit: i64) -> Result<Vec<SecurityEvent>> {
                let rows: Vec<(i64, i64, Option<String>, String, String)> = sqlx::query_as(
                    "SELECT id, at, device_id, kind, detail FROM security_events ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at, device_id, kind, detail)| SecurityEvent { id, at: rfc3339(at), device_id, kind, detail })
                    .collect())
            }

            async fn security_event(&self, device_id: Option<&str>, kind: &str, detail: &str, at: Millis) -> Result<()> {
                sqlx::query("INSERT INTO security_events (at, device_id, kind, detail) VALUES ($1, $2, $3, $4)")
                    .bind(at)
                    .bind(device_id)
                    .bind(kind)
                    .bind(detail)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn audit(&self, actor: Option<&str>, action: &str, subject: Option<&str>, case_id: Option<&str>, detail: Option<&str>, at: Millis) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                let entry = Audit { actor, action, subject, case_id, detail };
                Self::append_audit(&mut tx, &entry, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn verify_audit(&self) -> Result<crate::audit::Verdict> {
                type Row = (i64, i64, Option<String>, String, Option<String>, Option<String>, Option<String>, String, String);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, at, actor, action, subject, case_id, detail, prev_hash, hash FROM audit_log ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(crate::audit::verify(rows.iter().map(|r| {
                    let record = crate::audit::Record {
                        at: r.1,
                        actor: r.2.as_deref(),
                        action: &r.3,
                        subject: r.4.as_deref(),
                        case_id: r.5.as_deref(),
                        detail: r.6.as_deref(),
                    };
                    (r.0, r.7.as_str(), r.8.as_str(), record)
                })))
            }

            async fn heard_since(&self, since: Millis) -> Result<Vec<(String, Millis)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT id, last_heard_at FROM devices WHERE last_heard_at > $1",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn unresolved_silent_devices(&self) -> Result<Vec<(String, Millis)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT device_id, first_at FROM alerts WHERE incident = 'silent' AND state <> 'resolved' \
                     AND device_id IS NOT NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn annotate_open(
                &self,
                device_id: &str,
                incident: &str,
                action: &str,
                note: &Reason,
                back_online: Option<bool>,
                at: Millis,
            ) -> Result<Option<AlertChange>> {
                let mut tx = self.begin_write().await?;
                let found: Option<(i64,)> = sqlx::query_as(
                    "UPDATE alerts SET back_online = COALESCE($1, back_online), last_at = last_at \
                     WHERE device_id = $2 AND incident = $3 AND state <> 'resolved' RETURNING id",
                )
                .bind(back_online)
                .bind(device_id)
                .bind(incident)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id,)) = found else {
                    return Ok(None);
                };
                let event_seq = Self::history_and_event(&mut tx, id, at, None, action, Some(note)).await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(Some(AlertChange { event_seq, alert }))
            }

            async fn mark_overdue(&self, id: i64, priority: Priority, note: &Reason, at: Millis) -> Result<Option<AlertChange>> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE alerts SET overdue = TRUE, priority = CASE WHEN priority < $1 THEN priority ELSE $1 END \
                     WHERE id = $2 AND state = 'open' AND overdue = FALSE",
                )
                .bind(i64::from(priority.get()))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                let event_seq = Self::history_and_event(&mut tx, id, at, None, "overdue", Some(note)).await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(Some(AlertChange { event_seq, alert }))
            }

            async fn raise_notice(
                &self,
                incident: &str,
                kind: AlertKind,
                priority: Priority,
                case: &Case,
                trigger: &[Reason],
                context: &[Reason],
                at: Millis,
            ) -> Result<Option<AlertChange>> {
                let mut tx = self.begin_write().await?;
                let (trigger_json, reasons) = reasons_json(trigger, context)?;
                let inserted: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO alerts (priority, kind, incident, state, case_id, region, first_at, last_at, count, \
                     reasons, trigger_reasons) SELECT $1, $2, $3, 'open', $4, $5, $6, $6, 1, $7, $8 \
                     WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE incident = $3) RETURNING id",
                )
                .bind(i64::from(priority.get()))
                .bind(kind.as_str())
                .bind(incident)
                .bind(&case.id)
                .bind(&case.region)
                .bind(at)
                .bind(&reasons)
                .bind(&trigger_json)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id,)) = inserted else {
                    return Ok(None);
                };
                let event_seq = Self::history_and_event(&mut tx, id, at, None, "opened", None).await?;
                let alert = Self::alert_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(Some(AlertChange { event_seq, alert }))
            }

            async fn instance_alive(&self, client_id: &str, leading: bool, at: Millis) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO instances (client_id, last_seen, is_leader) VALUES ($1, $2, $3) \
                     ON CONFLICT (client_id) DO UPDATE SET last_seen = excluded.last_seen, is_leader = excluded.is_leader",
                )
                .bind(client_id)
                .bind(at)
                .bind(leading)
                .execute(&mut *tx)
                .await?;
                if leading {
                    sqlx::query("UPDATE instances SET is_leader = FALSE WHERE client_id <> $1 AND is_leader")
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn stale_instances(&self, client_id: &str, before: Millis) -> Result<Vec<(String, bool)>> {
                let rows: Vec<(String, bool)> = sqlx::query_as(
                    "SELECT client_id, is_leader FROM instances WHERE client_id <> $1 AND (last_seen < $2 OR is_leader)",
                )
                .bind(client_id)
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn forget_instance(&self, client_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM instances WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn broker_session_noted(&self, client_id: &str) -> Result<bool> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT client_id FROM broker_sessions WHERE client_id = $1")
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.is_some())
            }

            async fn note_broker_session(&self, client_id: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "INSERT INTO broker_sessions (client_id, since) VALUES ($1, $2) ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(client_id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn forget_broker_session(&self, client_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM broker_sessions WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn erase_closed_cases(&self, closed_before: Millis, at: Millis) -> Result<Vec<String>> {
                let due: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, person_id FROM cases WHERE closed_at IS NOT NULL AND closed_at < $1 AND erased_at IS NULL",
                )
                .bind(closed_before)
                .fetch_all(&self.pool)
                .await?;
                let mut erased = Vec::new();
                for (case_id, person_id) in due {
                    let mut tx = self.begin_write().await?;
                    // The person keeps an id (alerts point at it) and nothing else.
                    sqlx::query(
                        "UPDATE persons SET name = '(erased)', phone = NULL, address_text = NULL, \
                         address_lat = NULL, address_lon = NULL WHERE id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM cases WHERE person_id = $1 AND id <> $2 AND erased_at IS NULL)",
                    )
                    .bind(&person_id)
                    .bind(&case_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE orders SET restrained_name = '(erased)', restrained_description = NULL, \
                         restrained_vehicle = NULL, restrained_photo_ref = NULL, zones = '[]' WHERE case_id = $1",
                    )
                    .bind(&case_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE alerts SET lat = NULL, lon = NULL, acc_m = NULL, note = NULL, \
                         reasons = '[{\"code\":\"erased\",\"text\":\"(erased after retention)\"}]', trigger_reasons = '[]' WHERE case_id = $1",
                    )
                    .bind(&case_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE alert_history SET note = NULL, note_facts = NULL WHERE alert_id IN (SELECT id FROM alerts WHERE case_id = $1)",
                    )
                    .bind(&case_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE devices SET last_lat = NULL, last_lon = NULL, last_pos_at = NULL WHERE case_id = $1",
                    )
                    .bind(&case_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE cases SET response_plan = NULL, relatives = '[]', erased_at = $1 WHERE id = $2")
                        .bind(at)
                        .bind(&case_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    erased.push(case_id);
                }
                Ok(erased)
            }

            fn leadership(&self) -> Box<dyn Leadership> {
                self.new_leadership()
            }

            async fn update_device_settings(&self, id: &str, hb_interval_s: Option<u32>, supervision_class: &str, at: Millis, audit: &Audit<'_>) -> Result<DeviceRecord> {
                let (one_writer, mut tx) = self.begin_audited().await?;
                let done = sqlx::query("UPDATE devices SET hb_interval_s = $1, supervision_class = $2 WHERE id = $3")
                    .bind(hb_interval_s.map(i64::from))
                    .bind(supervision_class)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                drop(one_writer);
                self.device(id).await
            }

            async fn begin_key_rotation(&self, id: &str, next_key_hex: &str, at: Millis, audit: &Audit<'_>) -> Result<DeviceRecord> {
                let (one_writer, mut tx) = self.begin_audited().await?;
                let done = sqlx::query(
                    "UPDATE devices SET next_key_hex = $1, key_rotation_requested_at = $2, \
                     key_rotation_announced_at = NULL WHERE id = $3 AND status IN ('in_stock', 'issued')",
                )
                .bind(next_key_hex)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    drop((tx, one_writer));
                    let d = self.device(id).await?;
                    return Err(StoreError::Conflict(format!(
                        "device {id} is {}: a returned or lost device gets no new key",
                        d.status.as_str()
                    )));
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                drop(one_writer);
                self.device(id).await
            }

            async fn key_rotation_announced(&self, id: &str, next_key_hex: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "UPDATE devices SET key_rotation_announced_at = $1 WHERE id = $2 AND next_key_hex = $3",
                )
                .bind(at)
                .bind(id)
                .bind(next_key_hex)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn complete_key_rotation(&self, id: &str, next_key_hex: &str, at: Millis) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET key_hex = next_key_hex, next_key_hex = NULL, key_rotated_at = $1, \
                     key_rotation_requested_at = NULL, key_rotation_announced_at = NULL \
                     WHERE id = $2 AND next_key_hex = $3",
                )
                .bind(at)
                .bind(id)
                .bind(next_key_hex)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn key_rotations_to_announce(&self) -> Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM devices WHERE next_key_hex IS NOT NULL AND key_rotation_announced_at IS NULL \
                     AND status IN ('in_stock', 'issued') ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn regions(&self) -> Result<Vec<Region>> {
                let regions: Vec<(String, String, Option<i64>)> =
                    sqlx::query_as("SELECT code, name, retired_at FROM regions")
                        .fetch_all(&self.pool)
                        .await?;
                let areas: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT region_code, code, name, retired_at FROM local_areas",
                )
                .fetch_all(&self.pool)
                .await?;
                let by_name = |a: &str, b: &str| a.to_lowercase().cmp(&b.to_lowercase());
                let mut list: Vec<Region> = regions
                    .into_iter()
                    .map(|(code, name, retired_at)| {
                        let mut local_areas: Vec<LocalArea> = areas
                            .iter()
                            .filter(|a| a.0 == code)
                            .map(|(_, code, name, retired_at)| LocalArea {
                                code: code.clone(),
                                name: name.clone(),
                                retired: retired_at.is_some(),
                            })
                            .collect();
                        local_areas.sort_by(|a, b| by_name(&a.name, &b.name));
                        Region { code, name, retired: retired_at.is_some(), local_areas }
                    })
                    .collect();
                list.sort_by(|a, b| by_name(&a.name, &b.name));
                Ok(list)
            }

            async fn seed_regions(&self, list: &[Region], at: Millis) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM regions")
                    .fetch_one(&mut *tx)
                    .await?;
                if held > 0 {
                    return Ok(false);
                }
                // Another instance starting at the same moment seeds the same list: whoever
                // comes second adds nothing.
                for r in list {
                    sqlx::query(
                        "INSERT INTO regions (code, name, retired_at, created_at) VALUES ($1, $2, NULL, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.code)
                    .bind(&r.name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    for a in &r.local_areas {
                        sqlx::query(
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
                sqlx::query(
                    "INSERT INTO regions (code, name, retired_at, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&r.code)
                .bind(&r.name)
                .bind(r.retired.then_some(at))
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a region with that code or name exists"))?;
                for a in &r.local_areas {
                    sqlx::query(
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
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn update_region(&self, code: &str, patch: &RegionPatch, at: Millis, audit: &Audit<'_>) -> Result<Region> {
                let (one_writer, mut tx) = self.begin_audited().await?;
                let (old,): (String,) = sqlx::query_as("SELECT name FROM regions WHERE code = $1")
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if let Some(name) = patch.name.as_ref().filter(|n| **n != old) {
                    sqlx::query("UPDATE regions SET name = $1 WHERE code = $2")
                        .bind(name)
                        .bind(code)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_unique(e, "a region with that name exists"))?;
                    for table in ["persons", "cases", "users", "alerts"] {
                        let q = format!("UPDATE {table} SET region = $1 WHERE region = $2");
                        sqlx::query(sqlx::AssertSqlSafe(q))
                            .bind(name)
                            .bind(&old)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                if let Some(retired) = patch.retired {
                    sqlx::query(
                        "UPDATE regions SET retired_at = CASE WHEN $1 THEN COALESCE(retired_at, $2) END \
                         WHERE code = $3",
                    )
                    .bind(retired)
                    .bind(at)
                    .bind(code)
                    .execute(&mut *tx)
                    .await?;
                }
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                drop(one_writer);
                self.regions()
                    .await?
                    .into_iter()
                    .find(|r| r.code == code)
                    .ok_or(StoreError::NotFound)
            }

            async fn respell_region(&self, from: &str, to: &str, at: Millis, audit: &Audit<'_>) -> Result<u64> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                let mut changed = 0;
                for table in ["persons", "cases", "users", "alerts"] {
                    let q = format!("UPDATE {table} SET region = $1 WHERE region = $2");
                    changed += sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(to)
                        .bind(from)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                let detail = format!("{}: {changed} record(s)", audit.detail.unwrap_or_default());
                Self::append_audit(&mut tx, &audit.detail(&detail), at).await?;
                tx.commit().await?;
                Ok(changed)
            }

            async fn insert_local_area(&self, region_code: &str, a: &LocalArea, at: Millis, audit: &Audit<'_>) -> Result<()> {
                let (_one_writer, mut tx) = self.begin_audited().await?;
                sqlx::query(
                    "INSERT INTO local_areas (code, region_code, name, retired_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&a.code)
                .bind(region_code)
                .bind(&a.name)
                .bind(a.retired.then_some(at))
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "a local area with that code or name exists"))?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
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
                let found: Option<(String,)> = sqlx::query_as(
                    "SELECT code FROM local_areas WHERE code = $1 AND region_code = $2",
                )
                .bind(code)
                .bind(region_code)
                .fetch_optional(&mut *tx)
                .await?;
                found.ok_or(StoreError::NotFound)?;
                if let Some(name) = &patch.name {
                    sqlx::query("UPDATE local_areas SET name = $1 WHERE code = $2")
                        .bind(name)
                        .bind(code)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_unique(e, "a local area of that region has that name"))?;
                }
                if let Some(retired) = patch.retired {
                    sqlx::query(
                        "UPDATE local_areas SET retired_at = CASE WHEN $1 THEN COALESCE(retired_at, $2) END \
                         WHERE code = $3",
                    )
                    .bind(retired)
                    .bind(at)
                    .bind(code)
                    .execute(&mut *tx)
                    .await?;
                }
                let (name, retired_at): (String, Option<i64>) =
                    sqlx::query_as("SELECT name, retired_at FROM local_areas WHERE code = $1")
                        .bind(code)
                        .fetch_one(&mut *tx)
                        .await?;
                Self::append_audit(&mut tx, audit, at).await?;
                tx.commit().await?;
                Ok(LocalArea { code: code.to_owned(), name, retired: retired_at.is_some() })
            }

            async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
                let rows: Vec<(i64, i64, Option<String>, String, Option<String>, Option<String>, Option<String>)> =
                    sqlx::query_as(
                        "SELECT id, at, actor, action, subject, case_id, detail FROM audit_log \
                         WHERE ($1 IS NULL OR case_id = $1) AND ($2 IS NULL OR actor = $2) \
                         AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) ORDER BY id DESC LIMIT $5",
                    )
                    .bind(&filter.case_id)
                    .bind(&filter.actor)
                    .bind(filter.from)
                    .bind(filter.to)
                    .bind(filter.limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at, actor, action, subject, case_id, detail)| AuditEntry {
                        id,
                        at: rfc3339(at),
                        actor,
                        action,
                        subject,
                        case_id,
                        detail,
                    })
                    .collect())
            }
        }
    };
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    "migrations/sqlite"
);
sql_store!(
    PostgresStore,
    sqlx::Postgres,
    sqlx::PgPool,
    "migrations/postgres"
);

impl SqliteStore {
    /// Every transaction here writes: take SQLite's write lock at BEGIN, so a transaction
    /// that reads first (the audit chain) waits its turn instead of failing with a stale
    /// snapshot when another writer got in between.
    async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// SQLite has one writer at a time already.
    async fn lock_audit_chain(_tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<()> {
        Ok(())
    }

    /// One process per SQLite file: its own hub already knows every change.
    async fn announce(_tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, _seq: i64) -> Result<()> {
        Ok(())
    }

    fn listen_for_changes(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
        None
    }

    /// One SQLite file serves one instance: it always leads.
    fn new_leadership(&self) -> Box<dyn Leadership> {
        struct Always;
        #[async_trait]
        impl Leadership for Always {
            async fn check(&mut self) -> bool {
                true
            }
        }
        Box::new(Always)
    }

    /// Opens (creating if needed) a SQLite file in WAL mode with full sync: an alarm that
    /// was committed survives a crash of the process and of the machine.
    pub async fn connect(url: &str, patience: std::time::Duration) -> Result<SqliteStore> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(patience);
        let file = options.get_filename();
        if !url.contains(":memory:") && !file.as_os_str().is_empty() {
            owner_only(file).map_err(|e| {
                StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.display()),
                )))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            audit_lock: Default::default(),
        })
    }
}

/// The database holds cases, persons and sealed keys: its file, and the `-wal` and `-shm`
/// files SQLite makes beside it with the file's own mode, are the owner's only. A file from
/// an older version with wider rights is narrowed.
fn owner_only(file: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(file)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// The advisory lock key supervision is led under ("vakt" in ASCII).
const LEADER_LOCK: i64 = 0x7661_6b74;

/// Leads while it holds a PostgreSQL session advisory lock on a connection of its own; the
/// lock goes with the connection when the leader dies, and another instance takes it.
struct PgLeadership {
    pool: sqlx::PgPool,
    held: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn check(&mut self) -> bool {
        if let Some(conn) = self.held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return true;
            }
            // The connection is gone, and the lock with it.
            self.held.take().map(|c| c.detach());
        }
        let Ok(mut conn) = self.pool.acquire().await else {
            return false;
        };
        let got: std::result::Result<(bool,), sqlx::Error> =
            sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut *conn)
                .await;
        if matches!(got, Ok((true,))) {
            self.held = Some(conn);
            true
        } else {
            false
        }
    }
}

impl Drop for PgLeadership {
    /// Closes the connection rather than handing it back to the pool: the lock must go.
    fn drop(&mut self) {
        if let Some(conn) = self.held.take() {
            drop(conn.detach());
        }
    }
}

/// The channel alert changes are announced on, for the consoles of every instance.
const CHANGES_CHANNEL: &str = "vakt_alert_changes";

impl PostgresStore {
    async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Instances append to the audit chain one at a time (released at commit).
    async fn lock_audit_chain(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEADER_LOCK + 1)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Announces a change at commit (NOTIFY is transactional): other instances push it to
    /// their consoles.
    async fn announce(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, seq: i64) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(seq.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Event numbers of changes committed by any instance, as they are announced.
    fn listen_for_changes(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for alert changes; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANGES_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for alert changes; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(n) => {
                            if let Ok(seq) = n.payload().parse::<i64>() {
                                if tx.send(seq).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "alert change listener lost; reconnecting");
                            break;
                        }
                    }
                }
            }
        });
        Some(rx)
    }

    fn new_leadership(&self) -> Box<dyn Leadership> {
        Box::new(PgLeadership {
            pool: self.pool.clone(),
            held: None,
        })
    }

    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(PostgresStore {
            pool,
            audit_lock: Default::default(),
        })
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}
