//! Alerts: device messages taken in once, alerts raised, merged by incident, cancelled,
//! acknowledged and resolved, their history, the numbered changes the consoles follow, and
//! supervision's writes (overdue, notices, annotations).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::db::{query, query_built, Conn, Row, Rows, Tx};
use super::dialect::{corrupt, Dialect, SqlStore};
use super::{
    incident_of, AlertChange, CancelOutcome, HistoryEntry, MessageWrite, MessageWritten, Raise,
    RaiseOutcome, Result, StoreError,
};
use crate::domain::{
    rfc3339, Alert, AlertKind, AlertState, Case, Millis, Outcome, Position, Priority, Reason,
};

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Takes in one alarm-like message in one transaction: de-duplicates it by
    /// `(device, boot, seq)`, then opens an alert or updates the unresolved one of the same
    /// incident.
    async fn raise(&self, raise: &Raise) -> Result<RaiseOutcome>;
    /// Whether the message `(device, boot, seq)` was taken in before (an alarm, cancel or
    /// test, whatever it led to).
    async fn holds_message(&self, device_id: &str, boot: u32, seq: u32) -> Result<bool>;
    /// Group commit: takes in many messages' writes in one transaction, each exactly as
    /// `raise` would on its own, or as a cancel or test is recorded, in order (a later write sees
    /// the earlier ones). All or nothing: an error leaves none of them written, and the
    /// caller decides whether to try the batch again or each write on its own.
    async fn write_messages(&self, writes: &[MessageWrite]) -> Result<Vec<MessageWritten>>;
    async fn alert(&self, id: i64) -> Result<Alert>;
    /// Alerts in queue order: priority, then age (oldest first).
    async fn alerts(&self, states: &[AlertState]) -> Result<Vec<Alert>>;
    async fn alert_history(&self, id: i64) -> Result<Vec<HistoryEntry>>;
    async fn acknowledge(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        at: Millis,
    ) -> Result<AlertChange>;
    async fn resolve(
        &self,
        id: i64,
        by: &str,
        outcome: Outcome,
        note: Option<&str>,
        at: Millis,
    ) -> Result<AlertChange>;
    /// The latest event number of every alert changed after `after`.
    async fn changes_since(&self, after: i64) -> Result<Vec<AlertChange>>;
    async fn last_event_seq(&self) -> Result<i64>;
    /// The change numbered `event_seq`, as it stands now.
    async fn change_at(&self, event_seq: i64) -> Result<Option<AlertChange>>;
    /// Numbers of changes committed by any instance (PostgreSQL); `None` where this process
    /// is the only writer.
    fn changes_from_elsewhere(&self) -> Option<tokio::sync::mpsc::Receiver<i64>>;

    /// Devices whose silence alert is unresolved, with when it opened.
    async fn unresolved_silent_devices(&self) -> Result<Vec<(String, Millis)>>;
    /// Adds a line to the history of the device's unresolved alert of `incident`, optionally
    /// setting its back-online mark.
    async fn annotate_open(
        &self,
        device_id: &str,
        incident: &str,
        action: &str,
        note: &Reason,
        back_online: Option<bool>,
        at: Millis,
    ) -> Result<Option<AlertChange>>;
    /// Flags an open alert overdue and raises its priority; `None` if it was not open or
    /// already overdue.
    async fn mark_overdue(
        &self,
        id: i64,
        priority: Priority,
        note: &Reason,
        at: Millis,
    ) -> Result<Option<AlertChange>>;
    /// Opens an alert about no device (e.g. an order about to end) once per `incident`,
    /// ever.
    #[allow(clippy::too_many_arguments)]
    async fn raise_notice(
        &self,
        incident: &str,
        kind: AlertKind,
        priority: Priority,
        case: &Case,
        trigger: &[Reason],
        context: &[Reason],
        at: Millis,
    ) -> Result<Option<AlertChange>>;
}

const ALERT_COLUMNS: &str = "id, priority, kind, state, case_id, device_id, region, first_at, \
    last_at, count, lat, lon, acc_m, reasons, overdue, back_online, cancel_pressed, origin_boot, origin_seq, \
    acknowledged_by, acknowledged_at, resolved_by, resolved_at, outcome";

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

fn alert_from(row: &Row) -> Result<Alert> {
    let lat: Option<f64> = row.get("lat")?;
    let lon: Option<f64> = row.get("lon")?;
    let acc: Option<i64> = row.get("acc_m")?;
    let boot: Option<i64> = row.get("origin_boot")?;
    let seq: Option<i64> = row.get("origin_seq")?;
    let outcome: Option<String> = row.get("outcome")?;
    let reasons: String = row.get("reasons")?;
    Ok(Alert {
        id: row.get("id")?,
        priority: Priority::new(row.get::<i64>("priority")? as u8)
            .ok_or_else(|| corrupt("priority"))?,
        kind: AlertKind::parse(&row.get::<String>("kind")?).ok_or_else(|| corrupt("alert kind"))?,
        state: AlertState::parse(&row.get::<String>("state")?)
            .ok_or_else(|| corrupt("alert state"))?,
        case_id: row.get("case_id")?,
        device_id: row.get("device_id")?,
        region: row.get("region")?,
        first_at: row.get("first_at")?,
        last_at: row.get("last_at")?,
        count: row.get("count")?,
        position: match (lat, lon) {
            (Some(lat), Some(lon)) => {
                Position::new(lat, lon, acc.and_then(|a| u32::try_from(a).ok()))
            }
            _ => None,
        },
        reasons: Reason::list_from_json(&reasons).map_err(|_| corrupt("reasons"))?,
        overdue: row.get("overdue")?,
        back_online: row.get("back_online")?,
        cancel_pressed: row.get("cancel_pressed")?,
        acknowledged_by: row.get("acknowledged_by")?,
        acknowledged_at: row.get("acknowledged_at")?,
        resolved_by: row.get("resolved_by")?,
        resolved_at: row.get("resolved_at")?,
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

pub(super) async fn alert_in(conn: &mut dyn Conn, id: i64) -> Result<Alert> {
    let row = query_built(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    alert_from(&row)
}

impl<D: Dialect> SqlStore<D> {
    /// The alarms of a batch whose device has nothing else in it, taken in together: each
    /// statement of `raise` runs once for all of them instead of once per alarm, which is
    /// what lets a storm of thousands of devices be written at the database's pace rather
    /// than its round trips'. Fills in `written` for every raise it took; a device with an
    /// unresolved alert of the incident is left to `raise_recorded` (its message is on
    /// record already), a redelivered message is a duplicate. Leaves the rest (cancels,
    /// tests, devices with two writes in the batch, whose order matters) untouched.
    async fn raise_together(
        &self,
        tx: &mut dyn Tx,
        writes: &[MessageWrite],
        written: &mut [Option<MessageWritten>],
    ) -> Result<()> {
        let mut writes_of_device: HashMap<&str, usize> = HashMap::new();
        for w in writes {
            *writes_of_device.entry(w.device_id()).or_default() += 1;
        }
        let alone: Vec<(usize, &Raise, (u32, u32))> = writes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                MessageWrite::Raise(r) if writes_of_device[r.device_id.as_str()] == 1 => {
                    r.origin.map(|origin| (i, r, origin))
                }
                _ => None,
            })
            .collect();
        if alone.len() < 2 {
            return Ok(());
        }

        // On record first, as one at a time: a redelivered message stops here.
        let received = Rows::new("received")
            .texts(
                "device_id",
                alone.iter().map(|(_, r, _)| r.device_id.clone()),
            )
            .ints(
                "boot",
                alone.iter().map(|(_, _, (boot, _))| i64::from(*boot)),
            )
            .ints("seq", alone.iter().map(|(_, _, (_, seq))| i64::from(*seq)))
            .texts(
                "kind",
                alone.iter().map(|(_, r, _)| r.kind.as_str().to_owned()),
            )
            .ints("received_at", alone.iter().map(|(_, r, _)| r.at));
        // `WHERE true`: SQLite reads an `ON CONFLICT` straight after a `FROM` as a join's.
        let fresh: HashSet<String> = self
            .dialect
            .with_rows(received)
            .then(
                "INSERT INTO device_messages (device_id, boot, seq, kind, received_at) \
                 SELECT device_id, boot, seq, kind, received_at FROM received WHERE true \
                 ON CONFLICT DO NOTHING RETURNING device_id",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut fresh_raises = Vec::new();
        for (i, r, origin) in alone {
            if fresh.contains(&r.device_id) {
                fresh_raises.push((i, r, origin));
            } else {
                written[i] = Some(MessageWritten::Raise(RaiseOutcome::Duplicate));
            }
        }
        if fresh_raises.is_empty() {
            return Ok(());
        }

        // Devices with an unresolved alert of the incident update it, one by one.
        let asked = Rows::new("asked").texts(
            "device_id",
            fresh_raises.iter().map(|(_, r, _)| r.device_id.clone()),
        );
        let open: HashSet<(String, String)> = self
            .dialect
            .with_rows(asked)
            .then(
                "SELECT device_id, incident FROM alerts WHERE state <> 'resolved' \
                 AND device_id IN (SELECT device_id FROM asked)",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect::<Result<_>>()?;
        let mut opening = Vec::new();
        for (i, r, origin) in fresh_raises {
            if open.contains(&(r.device_id.clone(), incident_of(r.kind).to_owned())) {
                written[i] = Some(MessageWritten::Raise(self.raise_recorded(tx, r).await?));
            } else {
                opening.push((i, r, origin));
            }
        }
        if opening.is_empty() {
            return Ok(());
        }

        // The others open their alerts together.
        let reasons = opening
            .iter()
            .map(|(_, r, _)| reasons_json(&r.trigger, &r.context))
            .collect::<Result<Vec<_>>>()?;
        let answered = |r: &Raise| r.origin.filter(|_| r.answer_device);
        let raised = Rows::new("raised")
            .ints(
                "priority",
                opening.iter().map(|(_, r, _)| i64::from(r.priority.get())),
            )
            .texts(
                "kind",
                opening.iter().map(|(_, r, _)| r.kind.as_str().to_owned()),
            )
            .texts(
                "incident",
                opening
                    .iter()
                    .map(|(_, r, _)| incident_of(r.kind).to_owned()),
            )
            .texts("case_id", opening.iter().map(|(_, r, _)| r.case_id.clone()))
            .texts(
                "device_id",
                opening.iter().map(|(_, r, _)| r.device_id.clone()),
            )
            .texts("region", opening.iter().map(|(_, r, _)| r.region.clone()))
            .ints("at", opening.iter().map(|(_, r, _)| r.at))
            .reals(
                "lat",
                opening.iter().map(|(_, r, _)| r.position.map(|p| p.lat)),
            )
            .reals(
                "lon",
                opening.iter().map(|(_, r, _)| r.position.map(|p| p.lon)),
            )
            .ints(
                "acc_m",
                opening
                    .iter()
                    .map(|(_, r, _)| r.position.and_then(|p| p.acc_m).map(i64::from)),
            )
            .texts("reasons", reasons.iter().map(|(_, all)| all.clone()))
            .ints(
                "origin_boot",
                opening
                    .iter()
                    .map(|(_, r, _)| answered(r).map(|o| i64::from(o.0))),
            )
            .ints(
                "origin_seq",
                opening
                    .iter()
                    .map(|(_, r, _)| answered(r).map(|o| i64::from(o.1))),
            )
            .texts(
                "trigger_reasons",
                reasons.iter().map(|(trigger, _)| trigger.clone()),
            );
        let mut alert_of_device: HashMap<String, i64> = HashMap::new();
        for row in self
            .dialect
            .with_rows(raised)
            .then(
                "INSERT INTO alerts (priority, kind, incident, state, case_id, device_id, region, \
                 first_at, last_at, count, lat, lon, acc_m, reasons, origin_boot, origin_seq, trigger_reasons) \
                 SELECT priority, kind, incident, 'open', case_id, device_id, region, at, at, 1, \
                 lat, lon, acc_m, reasons, origin_boot, origin_seq, trigger_reasons FROM raised \
                 RETURNING id, device_id",
            )
            .fetch_all(&mut *tx)
            .await?
        {
            alert_of_device.insert(row.get(1)?, row.get(0)?);
        }
        let ids: Vec<i64> = opening
            .iter()
            .map(|(_, r, _)| {
                alert_of_device
                    .get(&r.device_id)
                    .copied()
                    .ok_or_else(|| corrupt("an alert opened together"))
            })
            .collect::<Result<_>>()?;

        let notes: Vec<Reason> = opening
            .iter()
            .map(|(_, r, _)| message_note("message", "", r.kind, r.origin))
            .collect();
        let history = Rows::new("opened")
            .ints("alert_id", ids.iter().copied())
            .ints("at", opening.iter().map(|(_, r, _)| r.at))
            .texts("note", notes.iter().map(|n| n.text.clone()))
            .texts("note_facts", notes.iter().map(|n| note_facts(Some(n))));
        self.dialect
            .with_rows(history)
            .then(
                "INSERT INTO alert_history (alert_id, at, actor, action, note, note_facts) \
                 SELECT alert_id, at, NULL, 'opened', note, note_facts FROM opened",
            )
            .execute(&mut *tx)
            .await?;
        let events = Rows::new("changed")
            .ints("alert_id", ids.iter().copied())
            .ints("at", opening.iter().map(|(_, r, _)| r.at));
        let mut event_of_alert: HashMap<i64, i64> = HashMap::new();
        for row in self
            .dialect
            .with_rows(events)
            .then(
                "INSERT INTO alert_events (alert_id, at) SELECT alert_id, at FROM changed \
                 RETURNING seq, alert_id",
            )
            .fetch_all(&mut *tx)
            .await?
        {
            event_of_alert.insert(row.get(1)?, row.get(0)?);
        }
        let mut seqs: Vec<i64> = event_of_alert.values().copied().collect();
        seqs.sort_unstable();
        self.dialect.announce_all(&mut *tx, &seqs).await?;
        // Which alert each message opened, in one statement joining a list of them.
        let links = Rows::new("linked")
            .texts(
                "device_id",
                opening.iter().map(|(_, r, _)| r.device_id.clone()),
            )
            .ints(
                "boot",
                opening.iter().map(|(_, _, (boot, _))| i64::from(*boot)),
            )
            .ints(
                "seq",
                opening.iter().map(|(_, _, (_, seq))| i64::from(*seq)),
            )
            .ints("alert_id", ids.iter().copied());
        self.dialect
            .with_rows(links)
            .then(
                "UPDATE device_messages SET alert_id = linked.alert_id FROM linked \
                 WHERE device_messages.device_id = linked.device_id \
                 AND device_messages.boot = linked.boot AND device_messages.seq = linked.seq",
            )
            .execute(&mut *tx)
            .await?;

        let wanted = Rows::new("wanted").ints("id", ids.iter().copied());
        let mut alerts: HashMap<i64, Alert> = HashMap::new();
        for row in self
            .dialect
            .with_rows(wanted)
            .then(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE id IN (SELECT id FROM wanted)"
            ))
            .fetch_all(&mut *tx)
            .await?
        {
            let alert = alert_from(&row)?;
            alerts.insert(alert.id, alert);
        }
        for ((i, _, _), id) in opening.iter().zip(&ids) {
            let change = AlertChange {
                event_seq: *event_of_alert
                    .get(id)
                    .ok_or_else(|| corrupt("an alert event written together"))?,
                alert: alerts
                    .remove(id)
                    .ok_or_else(|| corrupt("an alert opened together"))?,
            };
            written[*i] = Some(MessageWritten::Raise(RaiseOutcome::Opened(change)));
        }
        Ok(())
    }

    /// `raise` inside a transaction of the caller's.
    async fn raise_in(&self, tx: &mut dyn Tx, r: &Raise) -> Result<RaiseOutcome> {
        // The write comes first so SQLite takes its write lock at once (no upgrade
        // deadlock), and so a redelivered message stops here.
        if let Some((boot, seq)) = r.origin {
            let fresh = query(
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
            if fresh == 0 {
                return Ok(RaiseOutcome::Duplicate);
            }
        }
        self.raise_recorded(tx, r).await
    }

    /// `raise` once its message is on record (or it has none).
    async fn raise_recorded(&self, tx: &mut dyn Tx, r: &Raise) -> Result<RaiseOutcome> {
        let incident = incident_of(r.kind);
        let existing = query(
            "SELECT id, priority, trigger_reasons FROM alerts WHERE device_id = $1 AND incident = $2 AND state <> 'resolved'",
        )
        .bind(&r.device_id)
        .bind(incident)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, event_seq, opened) = match existing {
            Some(row) => {
                let (id, priority, old_trigger): (i64, i64, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
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
                query(
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
                let seq = self
                    .history_and_event(&mut *tx, id, r.at, None, "repeated", Some(&note))
                    .await?;
                (id, seq, false)
            }
            None => {
                let (trigger_json, reasons) = reasons_json(&r.trigger, &r.context)?;
                let id: i64 = query(
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
                .await?
                .get(0)?;
                let note = message_note("message", "", r.kind, r.origin);
                let seq = self
                    .history_and_event(&mut *tx, id, r.at, None, "opened", Some(&note))
                    .await?;
                (id, seq, true)
            }
        };
        if let Some((boot, seq)) = r.origin {
            query(
                "UPDATE device_messages SET alert_id = $1 WHERE device_id = $2 AND boot = $3 AND seq = $4",
            )
            .bind(id)
            .bind(&r.device_id)
            .bind(i64::from(boot))
            .bind(i64::from(seq))
            .execute(&mut *tx)
            .await?;
        }
        let change = AlertChange {
            event_seq,
            alert: alert_in(&mut *tx, id).await?,
        };
        Ok(if opened {
            RaiseOutcome::Opened(change)
        } else {
            RaiseOutcome::Updated(change)
        })
    }

    /// Records a non-alert message (`test`, `cancel`) once, in the caller's transaction;
    /// false when it was a duplicate.
    async fn record_message_in(
        &self,
        tx: &mut dyn Tx,
        device_id: &str,
        boot: u32,
        seq: u32,
        kind: &str,
        at: Millis,
    ) -> Result<bool> {
        let fresh = query(
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
        if fresh > 0 && kind == "test" {
            query("UPDATE devices SET last_test_at = $1 WHERE id = $2")
                .bind(at)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(fresh > 0)
    }

    /// Takes in a `cancel` once and, in the caller's transaction, marks the device's open
    /// emergency alert when the cancel came after every alarm of it: the holder pressed
    /// cancel.
    async fn cancel_in(
        &self,
        tx: &mut dyn Tx,
        device_id: &str,
        boot: u32,
        seq: u32,
        at: Millis,
    ) -> Result<CancelOutcome> {
        let fresh = query(
            "INSERT INTO device_messages (device_id, boot, seq, kind, received_at) \
             VALUES ($1, $2, $3, 'cancel', $4) ON CONFLICT DO NOTHING",
        )
        .bind(device_id)
        .bind(i64::from(boot))
        .bind(i64::from(seq))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if fresh == 0 {
            return Ok(CancelOutcome::Duplicate);
        }
        let open: Option<i64> = match query(
            "SELECT id FROM alerts WHERE device_id = $1 AND state <> 'resolved' AND incident = $2",
        )
        .bind(device_id)
        .bind(crate::domain::policy::incidents::EMERGENCY)
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(row) => Some(row.get(0)?),
            None => None,
        };
        let latest_alarm = match open {
            Some(id) => match query(
                "SELECT boot, seq FROM device_messages WHERE device_id = $1 AND alert_id = $2 \
                 ORDER BY boot DESC, seq DESC LIMIT 1",
            )
            .bind(device_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            {
                Some(row) => Some((row.get::<i64>(0)? as u32, row.get::<i64>(1)? as u32)),
                None => None,
            },
            None => None,
        };
        let Some(id) = open
            .filter(|_| crate::domain::policy::incidents::cancel_marks((boot, seq), latest_alarm))
        else {
            return Ok(CancelOutcome::NothingOpen);
        };
        query("UPDATE alerts SET cancel_pressed = TRUE WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let event_seq = self
            .history_and_event(
                &mut *tx,
                id,
                at,
                None,
                "cancel_pressed",
                Some(&Reason::new(
                    "cancel_pressed",
                    "holder pressed cancel: verify by call-back",
                )),
            )
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
        Ok(CancelOutcome::Marked(Box::new(AlertChange {
            event_seq,
            alert,
        })))
    }

    /// Writes a line of the alert's history and numbers the change for the live stream
    /// (announced to other instances at commit).
    pub(super) async fn history_and_event(
        &self,
        tx: &mut dyn Tx,
        alert_id: i64,
        at: i64,
        actor: Option<&str>,
        action: &str,
        note: Option<&Reason>,
    ) -> Result<i64> {
        query(
            "INSERT INTO alert_history (alert_id, at, actor, action, note, note_facts) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(alert_id)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(note.map(|n| n.text.as_str()))
        .bind(note_facts(note))
        .execute(&mut *tx)
        .await?;
        let seq: i64 =
            query("INSERT INTO alert_events (alert_id, at) VALUES ($1, $2) RETURNING seq")
                .bind(alert_id)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?
                .get(0)?;
        self.dialect.announce(&mut *tx, seq).await?;
        Ok(seq)
    }
}

#[async_trait]
impl<D: Dialect> AlertStore for SqlStore<D> {
    async fn raise(&self, r: &Raise) -> Result<RaiseOutcome> {
        let mut tx = self.begin_write().await?;
        let outcome = self.raise_in(&mut *tx, r).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn write_messages(&self, writes: &[MessageWrite]) -> Result<Vec<MessageWritten>> {
        let mut tx = self.begin_write().await?;
        let mut written = vec![None; writes.len()];
        self.raise_together(&mut *tx, writes, &mut written).await?;
        for (write, written) in writes.iter().zip(written.iter_mut()) {
            if written.is_some() {
                continue;
            }
            *written = Some(match write {
                MessageWrite::Raise(r) => MessageWritten::Raise(self.raise_in(&mut *tx, r).await?),
                MessageWrite::Cancel {
                    device_id,
                    boot,
                    seq,
                    at,
                } => MessageWritten::Cancel(
                    self.cancel_in(&mut *tx, device_id, *boot, *seq, *at)
                        .await?,
                ),
                MessageWrite::Record {
                    device_id,
                    boot,
                    seq,
                    kind,
                    at,
                } => MessageWritten::Record(
                    self.record_message_in(&mut *tx, device_id, *boot, *seq, kind, *at)
                        .await?,
                ),
            });
        }
        tx.commit().await?;
        Ok(written.into_iter().flatten().collect())
    }

    async fn holds_message(&self, device_id: &str, boot: u32, seq: u32) -> Result<bool> {
        let held = query(
            "SELECT seq FROM device_messages WHERE device_id = $1 AND boot = $2 AND seq = $3",
        )
        .bind(device_id)
        .bind(i64::from(boot))
        .bind(i64::from(seq))
        .fetch_optional(&mut *self.pool())
        .await?;
        Ok(held.is_some())
    }
    async fn alert(&self, id: i64) -> Result<Alert> {
        alert_in(&mut *self.pool(), id).await
    }

    async fn alerts(&self, states: &[AlertState]) -> Result<Vec<Alert>> {
        // States are a closed set of constants, so inlining them is safe.
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = query_built(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ({list}) ORDER BY priority, first_at, id"
        ))
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(alert_from).collect()
    }

    async fn alert_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
        let rows = query(
            "SELECT at, actor, action, note, note_facts FROM alert_history WHERE alert_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let facts: Option<String> = row.get(4)?;
                // Facts that do not read are left out: the English note still says it.
                let facts = facts.and_then(|f| serde_json::from_str::<NoteFacts>(&f).ok());
                Ok(HistoryEntry {
                    at: rfc3339(row.get(0)?),
                    actor: row.get(1)?,
                    action: row.get(2)?,
                    note: row.get(3)?,
                    note_code: facts.as_ref().map(|f| f.code.clone()),
                    note_values: facts.map(|f| f.values),
                })
            })
            .collect()
    }

    async fn acknowledge(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        at: Millis,
    ) -> Result<AlertChange> {
        let mut tx = self.begin_write().await?;
        let done = query(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2 \
             WHERE id = $3 AND state = 'open'",
        )
        .bind(by)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done == 0 {
            let current = alert_in(&mut *tx, id).await?;
            return Err(StoreError::Conflict(format!(
                "alert {id} is {}",
                current.state.as_str()
            )));
        }
        let event_seq = self
            .history_and_event(
                &mut *tx,
                id,
                at,
                Some(by),
                "acknowledged",
                officer_note(note).as_ref(),
            )
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(AlertChange { event_seq, alert })
    }

    async fn resolve(
        &self,
        id: i64,
        by: &str,
        outcome: Outcome,
        note: Option<&str>,
        at: Millis,
    ) -> Result<AlertChange> {
        let mut tx = self.begin_write().await?;
        // Resolving an alert nobody acknowledged also records who took it.
        let done = query(
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
        if done == 0 {
            alert_in(&mut *tx, id).await?;
            return Err(StoreError::Conflict(format!(
                "alert {id} is already resolved"
            )));
        }
        let line = match note {
            Some(n) => format!("{}: {n}", outcome.as_str()),
            None => outcome.as_str().to_owned(),
        };
        let line = Reason::new("outcome", line)
            .with("outcome", outcome.as_str())
            .with("note", note);
        let event_seq = self
            .history_and_event(&mut *tx, id, at, Some(by), "resolved", Some(&line))
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(AlertChange { event_seq, alert })
    }

    async fn changes_since(&self, after: i64) -> Result<Vec<AlertChange>> {
        let rows = query(
            "SELECT alert_id, MAX(seq) AS last FROM alert_events WHERE seq > $1 GROUP BY alert_id ORDER BY last",
        )
        .bind(after)
        .fetch_all(&mut *self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(AlertChange {
                event_seq: row.get(1)?,
                alert: self.alert(row.get(0)?).await?,
            });
        }
        Ok(out)
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = query("SELECT MAX(seq) FROM alert_events")
            .fetch_one(&mut *self.pool())
            .await?
            .get(0)?;
        Ok(seq.unwrap_or(0))
    }

    async fn change_at(&self, event_seq: i64) -> Result<Option<AlertChange>> {
        let found = query("SELECT alert_id FROM alert_events WHERE seq = $1")
            .bind(event_seq)
            .fetch_optional(&mut *self.pool())
            .await?;
        match found {
            Some(row) => Ok(Some(AlertChange {
                event_seq,
                alert: self.alert(row.get(0)?).await?,
            })),
            None => Ok(None),
        }
    }

    fn changes_from_elsewhere(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
        self.dialect.listen_for_changes()
    }

    async fn unresolved_silent_devices(&self) -> Result<Vec<(String, Millis)>> {
        let rows = query(
            "SELECT device_id, first_at FROM alerts WHERE incident = $1 AND state <> 'resolved' \
             AND device_id IS NOT NULL",
        )
        .bind(incident_of(AlertKind::Silent))
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
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
        let found = query(
            "UPDATE alerts SET back_online = COALESCE($1, back_online), last_at = last_at \
             WHERE device_id = $2 AND incident = $3 AND state <> 'resolved' RETURNING id",
        )
        .bind(back_online)
        .bind(device_id)
        .bind(incident)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = found else {
            return Ok(None);
        };
        let id: i64 = row.get(0)?;
        let event_seq = self
            .history_and_event(&mut *tx, id, at, None, action, Some(note))
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(Some(AlertChange { event_seq, alert }))
    }

    async fn mark_overdue(
        &self,
        id: i64,
        priority: Priority,
        note: &Reason,
        at: Millis,
    ) -> Result<Option<AlertChange>> {
        let mut tx = self.begin_write().await?;
        let done = query(
            "UPDATE alerts SET overdue = TRUE, priority = CASE WHEN priority < $1 THEN priority ELSE $1 END \
             WHERE id = $2 AND state = 'open' AND overdue = FALSE",
        )
        .bind(i64::from(priority.get()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done == 0 {
            return Ok(None);
        }
        let event_seq = self
            .history_and_event(&mut *tx, id, at, None, "overdue", Some(note))
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
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
        let inserted = query(
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
        let Some(row) = inserted else {
            return Ok(None);
        };
        let id: i64 = row.get(0)?;
        let event_seq = self
            .history_and_event(&mut *tx, id, at, None, "opened", None)
            .await?;
        let alert = alert_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(Some(AlertChange { event_seq, alert }))
    }
}
