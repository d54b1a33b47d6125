//! What SQLite and PostgreSQL do differently, and the store that shares everything else.
//!
//! Both speak `$1` placeholders, `RETURNING`, `ON CONFLICT` and partial unique indexes, so
//! every aggregate's SQL is written once (users.rs, cases.rs, …) over `SqlStore<D>`. Only
//! taking the write lock, announcing changes to other instances, leadership, connecting and
//! handing a statement many rows at once differ: that is `Dialect`, implemented in
//! sqlite.rs and postgres.rs.

use async_trait::async_trait;

use super::db::{query, Conn, Query, Rows, Tx};
use super::{Leadership, Result, Store, StoreError};

#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    /// The pool, for reads and single statements (each commits on its own).
    fn pool(&self) -> Box<dyn Conn>;
    /// A transaction that writes, holding the write lock from its start where the backend
    /// has one.
    async fn begin_write(&self) -> sqlx::Result<Box<dyn Tx>>;
    async fn migrate(&self) -> Result<()>;
    /// Serialises appends to the audit chain across instances until `tx` ends.
    async fn lock_audit_chain(&self, tx: &mut dyn Tx) -> Result<()>;
    /// Tells other instances, once `tx` commits, that alert change `seq` happened.
    async fn announce(&self, tx: &mut dyn Tx, seq: i64) -> Result<()>;
    /// `announce` for many changes at once.
    async fn announce_all(&self, tx: &mut dyn Tx, seqs: &[i64]) -> Result<()>;
    /// `WITH name (columns) AS (…) `: a statement's start that holds `rows` as a table
    /// named as they are, their values bound from `$1`; the statement goes on with
    /// `Query::then` and reads them from that table.
    fn with_rows(&self, rows: Rows) -> Query;
    /// Numbers of changes committed by any instance; `None` where this process is the only
    /// writer.
    fn listen_for_changes(&self) -> Option<tokio::sync::mpsc::Receiver<i64>>;
    /// Tells other instances, at once, that something of the directory changed (`what`).
    async fn announce_directory(&self, what: &str) -> Result<()>;
    /// What any instance announced so; `None` where this process is the only one. After a
    /// lost connection, `*`: something may have been missed.
    fn listen_for_directory(&self) -> Option<tokio::sync::mpsc::Receiver<String>>;
    fn leadership(&self) -> Box<dyn Leadership>;
    /// Whether an instance leads supervision on this database now. Where leadership is a
    /// lock (PostgreSQL), this takes it until `tx` ends, so that no instance takes the lead
    /// meanwhile; where it is none (SQLite: one process per file), there is nobody to ask.
    async fn instance_leads(&self, tx: &mut dyn Tx) -> Result<bool>;
}

/// The store over one backend. Its methods are the aggregate traits (`UserStore`, …), each
/// in its aggregate's file.
pub struct SqlStore<D> {
    pub(super) dialect: D,
    /// One writer at a time extends the audit chain in this process (see `AuditStore`).
    pub(super) audit_lock: tokio::sync::Mutex<()>,
    /// What the audit chain is linked with; set by `store::open` from the master key.
    chain_key: Option<crate::audit::ChainKey>,
}

impl<D: Dialect> SqlStore<D> {
    pub(super) fn new(dialect: D) -> SqlStore<D> {
        SqlStore {
            dialect,
            audit_lock: Default::default(),
            chain_key: None,
        }
    }

    /// The store that links its audit entries under `key`.
    pub(super) fn with_chain_key(self, key: crate::audit::ChainKey) -> SqlStore<D> {
        SqlStore {
            chain_key: Some(key),
            ..self
        }
    }

    /// The audit chain's key: a store without one writes and verifies no audit entry.
    pub(super) fn chain_key(&self) -> Result<&crate::audit::ChainKey> {
        self.chain_key.as_ref().ok_or(StoreError::NoChainKey)
    }

    pub(super) fn pool(&self) -> Box<dyn Conn> {
        self.dialect.pool()
    }

    pub(super) async fn begin_write(&self) -> sqlx::Result<Box<dyn Tx>> {
        self.dialect.begin_write().await
    }
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(super) fn conflict_on_unique(e: sqlx::Error, what: &str) -> StoreError {
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

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    async fn migrate(&self) -> Result<()> {
        self.dialect.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        query("SELECT 1").execute(&mut *self.pool()).await?;
        Ok(())
    }
}
