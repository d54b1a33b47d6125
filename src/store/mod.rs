//! Durable state: one `Store` trait, a SQLite and a PostgreSQL implementation, and the
//! records that cross it. SQL lives only below this module.

mod sql;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Alert, AlertKind, Case, DeviceKind, DeviceStatus, Millis, Order, Outcome, Person, Position,
    Priority, Reason, Risk,
};

pub use crate::regions::{LocalArea, Region};
pub use sql::{PostgresStore, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying again later can succeed: the database was unreachable, busy or out of
    /// resources, not refusing the data itself.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: connection exceptions, serialisation failures, deadlocks,
                // insufficient resources, shutdown. SQLite: busy, locked, I/O error, full.
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || matches!(
                        &*code,
                        "40001" | "40P01" | "5" | "6" | "10" | "13" | "517" | "261"
                    )
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Officer,
    Coordinator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Coordinator => "coordinator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "officer" => Role::Officer,
            "coordinator" => Role::Coordinator,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// `None`: national, sees every region.
    pub region: Option<String>,
    pub password_hash: String,
    pub totp_secret: Option<String>,
}

/// A device as the coordinators and the ingest know it, with its latest health.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub id: String,
    pub kind: DeviceKind,
    pub model: Option<String>,
    pub key_hex: String,
    /// Set by a coordinator; wins over the device's own `hello`.
    pub hb_interval_s: Option<u32>,
    pub status: DeviceStatus,
    pub case_id: Option<String>,
    pub holder_person_id: Option<String>,
    pub created_at: Millis,
    pub issued_at: Option<Millis>,
    /// Which grace period silence detection allows (configuration names the classes).
    pub supervision_class: String,
    pub health: DeviceHealth,
    pub key_rotation: KeyRotation,
}

impl DeviceRecord {
    /// A device just added to stock: standard supervision, no coordinator's heartbeat
    /// interval, never heard from. Callers set what their request or fixture says on top.
    pub fn in_stock(id: &str, kind: DeviceKind, key_hex: String, now: Millis) -> DeviceRecord {
        DeviceRecord {
            id: id.to_owned(),
            kind,
            model: None,
            key_hex,
            hb_interval_s: None,
            status: DeviceStatus::InStock,
            case_id: None,
            holder_person_id: None,
            created_at: now,
            issued_at: None,
            supervision_class: "standard".into(),
            health: DeviceHealth::default(),
            key_rotation: KeyRotation::default(),
        }
    }
}

/// A device key being replaced: the next key (sealed) waits until the device has signed a
/// message with it, so neither side is ever left with a key the other does not know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRotation {
    pub next_key_hex: Option<String>,
    pub requested_at: Option<Millis>,
    /// When the signed `cfg` carrying the next key was published; `None` while it waits.
    pub announced_at: Option<Millis>,
    /// When the device last switched to a new key.
    pub rotated_at: Option<Millis>,
}

/// What the device last told about itself; flushed in batches, never a row per heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceHealth {
    pub last_heard_at: Option<Millis>,
    pub battery: Option<u8>,
    pub charging: Option<bool>,
    pub rssi: Option<i32>,
    pub fw: Option<String>,
    pub reported_model: Option<String>,
    pub hello_hb_s: Option<u32>,
    pub online: Option<bool>,
    /// Highest `(boot, seq)` accepted, to restore the anti-replay window after a restart.
    pub last_boot: Option<u32>,
    pub last_seq: Option<u32>,
    pub last_test_at: Option<Millis>,
    pub last_position: Option<(Position, Millis)>,
    /// Messages that never arrived: seqs that left the anti-replay window unseen. Counted
    /// since the device was created; in a batch to flush, how many to add.
    pub messages_missing: u64,
    /// Alarms taken in after their seq had left the window (they were counted missing
    /// first); like `messages_missing`, a total, or in a batch how many to add.
    pub messages_late: u64,
}

impl DeviceHealth {
    /// A batch that could not be flushed, kept beside a newer one: the newer values win,
    /// the counts add up.
    pub fn keep_unflushed(&mut self, older: DeviceHealth) {
        let (missing, late) = (self.messages_missing, self.messages_late);
        let newer = std::mem::replace(self, older);
        macro_rules! newer_wins {
            ($($field:ident),*) => { $(if newer.$field.is_some() { self.$field = newer.$field; })* };
        }
        newer_wins!(
            last_heard_at,
            battery,
            charging,
            rssi,
            fw,
            reported_model,
            hello_hb_s,
            online,
            last_boot,
            last_seq,
            last_test_at,
            last_position
        );
        self.messages_missing += missing;
        self.messages_late += late;
    }
}

/// A device message that may open or update an alert, with its identity for de-duplication.
#[derive(Debug, Clone)]
pub struct Raise {
    pub device_id: String,
    /// The message's `(boot, seq)`; `None` for alerts no single message caused.
    pub origin: Option<(u32, u32)>,
    /// An alarm message: the device hears `accepted` and `resolved` about the alert.
    pub answer_device: bool,
    pub case_id: Option<String>,
    pub region: Option<String>,
    pub kind: AlertKind,
    pub priority: Priority,
    pub position: Option<Position>,
    /// What happened; accumulates over a repeated incident.
    pub trigger: Vec<Reason>,
    /// Case, orders and place now; replaced on every update.
    pub context: Vec<Reason>,
    pub at: Millis,
}

impl Raise {
    /// What the store must do for a triage decision to raise an alert about a device of the
    /// case in `ctx`; `None` for every other decision.
    pub fn for_decision(
        decision: crate::domain::policy::Decision,
        ctx: &crate::domain::correlate::DeviceContext,
        origin: Option<(u32, u32)>,
        answer_device: bool,
        at: Millis,
    ) -> Option<Raise> {
        let crate::domain::policy::Decision::Raise {
            kind,
            priority,
            position,
            trigger,
            context,
        } = decision
        else {
            return None;
        };
        Some(Raise {
            device_id: ctx.device_id.clone(),
            origin,
            answer_device,
            case_id: Some(ctx.case.id.clone()),
            region: Some(ctx.case.region.clone()),
            kind,
            priority,
            position,
            trigger,
            context,
            at,
        })
    }
}

#[derive(Debug, Clone)]
pub enum RaiseOutcome {
    Opened(AlertChange),
    Updated(AlertChange),
    /// The message was taken in before: nothing changed.
    Duplicate,
}

#[derive(Debug, Clone)]
pub enum CancelOutcome {
    Marked(Box<AlertChange>),
    /// Nothing open to mark, or the open alert has an alarm pressed after the cancel (see
    /// `triage::cancel_marks`); the cancel is on record.
    NothingOpen,
    Duplicate,
}

/// A change of an alert, numbered for the live stream.
#[derive(Debug, Clone)]
pub struct AlertChange {
    pub event_seq: i64,
    pub alert: Alert,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    /// In English, or as the officer wrote it.
    pub note: Option<String>,
    /// For the backend's own notes: which sentence `note` is (a reason code, see
    /// docs/policy.md) and its facts, so a console can word it in its language.
    pub note_code: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub note_values: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    pub id: i64,
    pub at: String,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub case_id: Option<String>,
    pub detail: Option<String>,
}

/// The audit entry of a change made on someone's behalf. The store writes it inside the
/// change's own transaction, at the change's time: no change stands without its entry, and
/// a failed entry undoes the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit<'a> {
    /// `None`: an operator at the command line, or vakt itself.
    pub actor: Option<&'a str>,
    pub action: &'a str,
    pub subject: Option<&'a str>,
    pub case_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> Audit<'a> {
    pub const fn new(actor: Option<&'a str>, action: &'a str) -> Audit<'a> {
        Audit {
            actor,
            action,
            subject: None,
            case_id: None,
            detail: None,
        }
    }
    pub fn subject(self, subject: &'a str) -> Audit<'a> {
        Audit {
            subject: Some(subject),
            ..self
        }
    }
    pub fn case(self, case_id: Option<&'a str>) -> Audit<'a> {
        Audit { case_id, ..self }
    }
    pub fn detail(self, detail: &'a str) -> Audit<'a> {
        Audit {
            detail: Some(detail),
            ..self
        }
    }
    /// The entry as the hash chain sees it.
    pub fn record(&self, at: Millis) -> crate::audit::Record<'a> {
        crate::audit::Record {
            at,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            case_id: self.case_id,
            detail: self.detail,
        }
    }
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub case_id: Option<String>,
    pub actor: Option<String>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct CasePatch {
    pub risk: Option<Risk>,
    pub response_plan: Option<Option<String>>,
    pub relatives: Option<Vec<crate::domain::Relative>>,
}

/// An admin's change of a region or local area: a new name, retired or back in force.
#[derive(Debug, Clone, Default)]
pub struct RegionPatch {
    pub name: Option<String>,
    pub retired: Option<bool>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;

    async fn insert_user(&self, user: &User, at: Millis, audit: &Audit<'_>) -> Result<()>;
    /// Creates the user or replaces its role, region and password (demo and admin resets).
    async fn upsert_user(&self, user: &User, at: Millis) -> Result<()>;
    async fn user(&self, username: &str) -> Result<User>;
    /// Replaces a user's one-time-code secret if it is still `old` (sealing one stored in
    /// the clear; another instance may be doing the same): whether it was replaced.
    async fn replace_totp_secret(&self, username: &str, old: &str, new: &str) -> Result<bool>;
    /// Takes a one-time-code time step for a login: false when this user has logged in
    /// with this step or a later one already (on any instance).
    async fn claim_totp_step(&self, username: &str, step: i64) -> Result<bool>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn insert_session(&self, token_hash: &str, username: &str, at: Millis) -> Result<()>;
    /// The session's user, if the session exists and was used after `idle_since`; touches it.
    async fn session_user(
        &self,
        token_hash: &str,
        idle_since: Millis,
        created_since: Millis,
        at: Millis,
    ) -> Result<Option<User>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// When the session was created and last used, if it exists; does not touch it, so a
    /// live stream that asks is not taken for use.
    async fn session_times(&self, token_hash: &str) -> Result<Option<(Millis, Millis)>>;
    async fn insert_api_token(
        &self,
        token_hash: &str,
        username: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<()>;
    async fn token_user(&self, token_hash: &str) -> Result<Option<User>>;

    async fn insert_person(&self, person: &Person, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn person(&self, id: &str) -> Result<Person>;
    async fn persons(&self) -> Result<Vec<Person>>;
    async fn insert_case(&self, case: &Case, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn case(&self, id: &str) -> Result<Case>;
    async fn cases(&self) -> Result<Vec<Case>>;
    async fn update_case(
        &self,
        id: &str,
        patch: &CasePatch,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Case>;
    async fn close_case(&self, id: &str, at: Millis, audit: &Audit<'_>) -> Result<Case>;
    async fn insert_order(&self, order: &Order, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn orders(&self) -> Result<Vec<Order>>;
    async fn order(&self, id: &str) -> Result<Order>;
    /// Replaces everything of an order but its id and case.
    async fn update_order(&self, order: &Order, at: Millis, audit: &Audit<'_>) -> Result<()>;
    async fn orders_of_case(&self, case_id: &str) -> Result<Vec<Order>>;

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
    async fn flush_health(&self, batch: &[(String, DeviceHealth)]) -> Result<()>;

    /// Takes in one alarm-like message in one transaction: de-duplicates it by
    /// `(device, boot, seq)`, then opens an alert or updates the unresolved one of the same
    /// incident.
    async fn raise(&self, raise: &Raise) -> Result<RaiseOutcome>;
    /// Records a non-alert message (`test`, `cancel`) once; false when it was a duplicate.
    async fn record_message(
        &self,
        device_id: &str,
        boot: u32,
        seq: u32,
        kind: &str,
        at: Millis,
    ) -> Result<bool>;
    /// Whether the message `(device, boot, seq)` was taken in before (an alarm, cancel or
    /// test, whatever it led to).
    async fn holds_message(&self, device_id: &str, boot: u32, seq: u32) -> Result<bool>;
    /// Takes in a `cancel` once and, in the same transaction, marks the device's open
    /// emergency alert when the cancel came after every alarm of it: the holder pressed
    /// cancel.
    async fn cancel(
        &self,
        device_id: &str,
        boot: u32,
        seq: u32,
        at: Millis,
    ) -> Result<CancelOutcome>;
    async fn alert(&self, id: i64) -> Result<Alert>;
    /// Alerts in queue order: priority, then age (oldest first).
    async fn alerts(&self, states: &[crate::domain::AlertState]) -> Result<Vec<Alert>>;
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

    /// Stored security events, newest first.
    async fn security_events(&self, limit: i64) -> Result<Vec<SecurityEvent>>;
    async fn security_event(
        &self,
        device_id: Option<&str>,
        kind: &str,
        detail: &str,
        at: Millis,
    ) -> Result<()>;
    /// An audit entry of its own, for what changes nothing here (a consultation, a login) or
    /// a change whose store method does not take its entry.
    async fn audit(
        &self,
        actor: Option<&str>,
        action: &str,
        subject: Option<&str>,
        case_id: Option<&str>,
        detail: Option<&str>,
        at: Millis,
    ) -> Result<()>;
    /// `(device, last heard)` of every device heard after `since`, from the health rows.
    async fn heard_since(&self, since: Millis) -> Result<Vec<(String, Millis)>>;
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
    /// This instance (its MQTT client id) is alive; `leading` when it leads supervision.
    async fn instance_alive(&self, client_id: &str, leading: bool, at: Millis) -> Result<()>;
    /// Other instances not seen since `before`, and the one that was last marked leading.
    async fn stale_instances(&self, client_id: &str, before: Millis)
        -> Result<Vec<(String, bool)>>;
    async fn forget_instance(&self, client_id: &str) -> Result<()>;
    /// Whether the broker has held a persistent session for this MQTT client id (noted at
    /// the first subscription), so that a connection finding none has lost it.
    async fn broker_session_noted(&self, client_id: &str) -> Result<bool>;
    async fn note_broker_session(&self, client_id: &str, at: Millis) -> Result<()>;
    /// The session was ended on purpose: the next connection under this id starts afresh.
    async fn forget_broker_session(&self, client_id: &str) -> Result<()>;
    /// Erases the personal data of cases closed before `closed_before`: the person's name,
    /// phone and address, positions, the restrained persons and zones, free-text notes.
    /// Alerts stay, pseudonymised, for statistics. Returns the case ids erased.
    async fn erase_closed_cases(&self, closed_before: Millis, at: Millis) -> Result<Vec<String>>;
    /// Who leads supervision among the instances sharing this store.
    fn leadership(&self) -> Box<dyn Leadership>;
    /// Sets a device's coordinator settings.
    async fn update_device_settings(
        &self,
        id: &str,
        hb_interval_s: Option<u32>,
        supervision_class: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<DeviceRecord>;

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
    /// The device signed with `next_key_hex`: it becomes the key. False when another
    /// rotation replaced it meanwhile (or it already completed).
    async fn complete_key_rotation(&self, id: &str, next_key_hex: &str, at: Millis)
        -> Result<bool>;
    /// Devices whose next key has not been announced yet (asked for from the command line).
    async fn key_rotations_to_announce(&self) -> Result<Vec<String>>;

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

    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// Recomputes the audit hash chain from the first entry.
    async fn verify_audit(&self) -> Result<crate::audit::Verdict>;
}

pub type SharedStore = Arc<dyn Store>;

/// One instance at a time leads supervision.
#[async_trait]
pub trait Leadership: Send {
    /// True while this instance leads; takes the lead when nobody holds it.
    async fn check(&mut self) -> bool;
}

/// Opens the store named by a database URL (`sqlite://…` or `postgres://…`) and migrates it.
pub async fn open(url: &str) -> Result<SharedStore> {
    open_with_patience(url, SERVICE_PATIENCE).await
}

/// How long the service waits for SQLite's one writer before a call fails; the ingest
/// retries its own writes beyond that.
pub const SERVICE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// A command-line tool beside a busy service waits longer: an operator would rather wait
/// than type it again.
pub const COMMAND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// `patience`: how long a SQLite write waits for another writer (PostgreSQL has no such
/// wait to set).
pub async fn open_with_patience(url: &str, patience: std::time::Duration) -> Result<SharedStore> {
    let store: SharedStore = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(url).await?)
    } else {
        Arc::new(SqliteStore::connect(url, patience).await?)
    };
    store.migrate().await?;
    // A new database starts with the national list of regions; an existing one keeps its own.
    store
        .seed_regions(&crate::regions::shipped(), crate::domain::now_ms())
        .await?;
    Ok(store)
}

/// The alert kind's incident class, stored so the database can enforce one open alert per
/// incident.
pub(crate) fn incident_of(kind: AlertKind) -> &'static str {
    crate::domain::policy::incidents::class_of(kind)
}
