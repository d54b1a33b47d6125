//! Durable state: a trait per aggregate (`UserStore`, `CaseStore`, …) summed up in
//! `Store`, one SQL implementation over SQLite and PostgreSQL, and the records that cross
//! it. SQL lives only below this module: each aggregate's file holds its trait and its SQL,
//! `dialect.rs` what the two databases do differently, `db.rs` the values and rows the SQL
//! is run with, `export.rs` the whole database written out and read into another.

mod alerts;
mod assessments;
mod audit;
mod cases;
mod db;
mod devices;
mod dialect;
mod export;
mod instances;
mod logins;
mod orders;
mod postgres;
mod regions;
mod sqlite;
mod upgrades;
mod users;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Alert, AlertKind, DeviceKind, DeviceStatus, Millis, Position, Priority, Reason, Risk,
};

pub use crate::regions::{LocalArea, Region};
pub use alerts::AlertStore;
pub use assessments::AssessmentStore;
pub use audit::AuditStore;
pub use cases::CaseStore;
pub use devices::DeviceStore;
pub use export::{tables_digest, Imported, Manifest, MoveError};
pub use instances::InstanceStore;
pub use logins::{FailureCount, LoginCounters, LoginKey, LoginStore};
pub use orders::OrderStore;
pub use postgres::PostgresStore;
pub use regions::RegionStore;
pub use sqlite::SqliteStore;
pub use upgrades::{MasterKeyRotated, MasterKeyRotationError};
pub use users::{UserSecret, UserStore};

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
    #[error("the store was opened without the audit chain's key")]
    NoChainKey,
    #[error("this is not the master key the database's device keys and one-time-code secrets are sealed and its audit chain linked under ({0}): every instance and command of a deployment needs the same master key (master_key, VAKT_MASTER_KEY, or the file master.key in the data directory)")]
    WrongMasterKey(&'static str),
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
    /// Follows cases up for the legal process: reads its region's cases, orders, alerts and
    /// assessments, and every person's details only for a stated reason; changes nothing.
    Investigator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Coordinator => "coordinator",
            Role::Investigator => "investigator",
            Role::Admin => "admin",
        }
    }
    /// Whether a login of this role must give a one-time code besides the password (when
    /// the configuration asks for it): the roles that change cases or read every person's
    /// details of a region.
    pub fn takes_second_factor(self) -> bool {
        matches!(self, Role::Admin | Role::Coordinator | Role::Investigator)
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "officer" => Role::Officer,
            "coordinator" => Role::Coordinator,
            "investigator" => Role::Investigator,
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

/// One device message's write, for a group commit (`AlertStore::write_messages`).
#[derive(Debug, Clone)]
pub enum MessageWrite {
    Raise(Raise),
    Cancel {
        device_id: String,
        boot: u32,
        seq: u32,
        at: Millis,
    },
    Record {
        device_id: String,
        boot: u32,
        seq: u32,
        kind: &'static str,
        at: Millis,
    },
}

impl MessageWrite {
    pub fn device_id(&self) -> &str {
        match self {
            MessageWrite::Raise(r) => &r.device_id,
            MessageWrite::Cancel { device_id, .. } | MessageWrite::Record { device_id, .. } => {
                device_id
            }
        }
    }
}

/// What one `MessageWrite` did, as its own method would say.
// Mostly raises, each living only until its batch is answered: boxing them would cost an
// allocation per alarm for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum MessageWritten {
    Raise(RaiseOutcome),
    Cancel(CancelOutcome),
    /// False: a duplicate.
    Record(bool),
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
    /// A risk changed on the case itself is recorded as an assessment (see
    /// `app::cases::change`), in the same transaction as the rest of the change.
    pub assessment: Option<NewAssessment>,
    pub response_plan: Option<Option<String>>,
    pub relatives: Option<Vec<crate::domain::Relative>>,
}

/// An assessment to append to a case's history (`AssessmentStore::record_assessment`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAssessment {
    pub case_id: String,
    pub method: crate::domain::AssessmentMethod,
    pub risk: Risk,
    pub factors: Vec<String>,
    pub summary: Option<String>,
    pub next_review: Option<crate::domain::Day>,
    /// `None`: an operator at the command line.
    pub assessed_by: Option<String>,
}

/// An admin's change of a region or local area: a new name, retired or back in force.
#[derive(Debug, Clone, Default)]
pub struct RegionPatch {
    pub name: Option<String>,
    pub retired: Option<bool>,
}

/// Everything the store keeps, one trait per aggregate; `SharedStore` is one store behind
/// all of them (a `dyn Store` answers every aggregate's methods without importing them).
#[async_trait]
pub trait Store:
    UserStore
    + CaseStore
    + AssessmentStore
    + OrderStore
    + DeviceStore
    + AlertStore
    + AuditStore
    + RegionStore
    + InstanceStore
    + LoginStore
    + Send
    + Sync
    + 'static
{
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
}

pub type SharedStore = Arc<dyn Store>;

/// One instance at a time leads supervision.
#[async_trait]
pub trait Leadership: Send {
    /// True while this instance leads; takes the lead when nobody holds it.
    async fn check(&mut self) -> bool;
}

/// Opens the store named by a database URL (`sqlite://…` or `postgres://…`), migrates it,
/// and runs the data upgrades that need the master key (`upgrades.rs`). Audit entries are
/// linked under the key `vault` derives.
pub async fn open(url: &str, vault: &crate::keys::KeyVault) -> Result<SharedStore> {
    open_with_patience(url, vault, SERVICE_PATIENCE).await
}

/// How long the service waits for SQLite's one writer before a call fails; the ingest
/// retries its own writes beyond that.
pub const SERVICE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// A command-line tool beside a busy service waits longer: an operator would rather wait
/// than type it again.
pub const COMMAND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// `patience`: how long a SQLite write waits for another writer (PostgreSQL has no such
/// wait to set).
pub async fn open_with_patience(
    url: &str,
    vault: &crate::keys::KeyVault,
    patience: std::time::Duration,
) -> Result<SharedStore> {
    let store: SharedStore = if is_postgres(url) {
        Arc::new(upgraded(PostgresStore::connect(url).await?, vault).await?)
    } else {
        Arc::new(upgraded(SqliteStore::connect(url, patience).await?, vault).await?)
    };
    // A new database starts with the national list of regions; an existing one keeps its own.
    store
        .seed_regions(&crate::regions::shipped(), crate::domain::now_ms())
        .await?;
    Ok(store)
}

/// The store keyed, migrated and upgraded, before anything else writes to it.
async fn upgraded<D: dialect::Dialect>(
    store: dialect::SqlStore<D>,
    vault: &crate::keys::KeyVault,
) -> Result<dialect::SqlStore<D>> {
    let store = store.with_chain_key(vault.audit_chain_key().clone());
    store.migrate().await?;
    store
        .upgrade_with_keys(vault, crate::domain::now_ms())
        .await?;
    Ok(store)
}

/// Replaces the master key of the database at `url`: `old`, the one in use, by `new`
/// (`upgrades.rs` says how). Run with every instance of the deployment stopped; it refuses
/// while the database shows one running. The store it opens is closed when it returns, so
/// that nothing is linked under the old key after the rotation.
pub async fn rotate_master_key(
    url: &str,
    old: &crate::keys::KeyVault,
    new: &crate::keys::KeyVault,
) -> std::result::Result<MasterKeyRotated, MasterKeyRotationError> {
    let at = crate::domain::now_ms();
    if is_postgres(url) {
        let store = upgraded(PostgresStore::connect(url).await?, old).await?;
        store.rotate_master_key(old, new, at).await
    } else {
        let store = upgraded(SqliteStore::connect(url, COMMAND_PATIENCE).await?, old).await?;
        store.rotate_master_key(old, new, at).await
    }
}

/// Writes every table of the database at `url` into the directory `out` (new, or empty),
/// from one snapshot: the format is docs/export.md. The database is migrated first, as every
/// command does; sealed values are written as stored, and no key is needed or written.
pub async fn export(url: &str, out: &std::path::Path) -> std::result::Result<Manifest, MoveError> {
    let at = crate::domain::now_ms();
    if is_postgres(url) {
        let store = PostgresStore::connect(url).await?;
        store.migrate().await?;
        store.export_to(out, at).await
    } else {
        // Connecting makes a missing file: an export of that would be an empty one.
        let options = std::str::FromStr::from_str(url).map_err(StoreError::from)?;
        let file = sqlx::sqlite::SqliteConnectOptions::get_filename(&options);
        if !url.contains(":memory:") && !file.exists() {
            return Err(MoveError::NoDatabase(file.display().to_string()));
        }
        let store = SqliteStore::connect(url, COMMAND_PATIENCE).await?;
        store.migrate().await?;
        store.export_to(out, at).await
    }
}

/// Reads the export in `dir` into the database at `url`, which is migrated first and must
/// be empty; then opens it as vakt does, under `vault` (which must be the master key the
/// export's secrets are sealed under), and verifies its audit chain.
pub async fn import(
    url: &str,
    dir: &std::path::Path,
    vault: &crate::keys::KeyVault,
) -> std::result::Result<(Imported, crate::audit::Verdict), MoveError> {
    // A damaged export is refused before the target is even connected to.
    let manifest = export::read_manifest(dir)?;
    export::check_files(dir, &manifest)?;
    let fingerprint = vault.fingerprint();
    let imported = if is_postgres(url) {
        let store = PostgresStore::connect(url).await?;
        store.migrate().await?;
        store.import_from(dir, &manifest, fingerprint).await?
    } else {
        let store = SqliteStore::connect(url, COMMAND_PATIENCE).await?;
        store.migrate().await?;
        store.import_from(dir, &manifest, fingerprint).await?
    };
    let store = open_with_patience(url, vault, COMMAND_PATIENCE).await?;
    Ok((imported, store.verify_audit().await?))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The alert kind's incident class, stored so the database can enforce one open alert per
/// incident.
pub(crate) fn incident_of(kind: AlertKind) -> &'static str {
    crate::domain::policy::incidents::class_of(kind)
}
