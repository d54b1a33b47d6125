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

    /// Which backend this is, as an export names its source (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// A transaction that reads one consistent snapshot of every table, for an export.
    async fn begin_snapshot(&self) -> sqlx::Result<Box<dyn Tx>>;
    /// The tables as the database's own catalogue describes them (vakt's tables only: not
    /// the migrations' bookkeeping nor the backend's own), by name.
    async fn catalogue(&self, conn: &mut dyn Conn) -> Result<Vec<TableShape>>;
    /// A text column (SQL) compared and sorted byte by byte, as both backends then agree
    /// on the order of its rows.
    fn in_byte_order(&self, column: &str) -> String;
    /// What an INSERT says between its column list and VALUES to write the stored numbers
    /// of generated keys as they are.
    fn keep_generated_keys(&self) -> &'static str;
    /// After rows were written with their own generated keys: each key generator goes on
    /// after the highest key written, so a new row does not collide with an imported one.
    async fn continue_generated_keys(&self, tx: &mut dyn Tx, tables: &[TableShape]) -> Result<()>;
}

/// A table of the schema as the catalogue has it: enough to copy it row for row.
#[derive(Debug, Clone, PartialEq)]
pub struct TableShape {
    pub name: String,
    /// In the table's own order.
    pub columns: Vec<ColumnShape>,
    /// The primary key's columns, in the key's order; rows are exported in this order.
    pub primary_key: Vec<String>,
    /// The tables its foreign keys refer to.
    pub references: Vec<String>,
    /// A column whose values the database generates (PostgreSQL's identity columns; SQLite
    /// continues after the highest key on its own).
    pub generated_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnShape {
    pub name: String,
    /// `None`: a type the export does not know how to carry (the type is in `declared`).
    pub kind: Option<super::export::Kind>,
    pub declared: String,
    /// Stored narrower than 64 bits (PostgreSQL `integer`): read widened.
    pub narrow_int: bool,
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
