//! SQLite: one file, one process, one writer at a time.

use std::str::FromStr;

use async_trait::async_trait;

use super::db::{query, query_built, Conn, Query, Rows, Tx};
use super::dialect::{ColumnShape, Dialect, SqlStore, TableShape};
use super::export::Kind;
use super::{Leadership, Result, StoreError};

pub struct SqliteDialect {
    pool: sqlx::SqlitePool,
}

pub type SqliteStore = SqlStore<SqliteDialect>;

#[async_trait]
impl Dialect for SqliteDialect {
    fn pool(&self) -> Box<dyn Conn> {
        Box::new(self.pool.clone())
    }

    /// Every transaction here writes: take SQLite's write lock at BEGIN, so a transaction
    /// that reads first (the audit chain) waits its turn instead of failing with a stale
    /// snapshot when another writer got in between.
    async fn begin_write(&self) -> sqlx::Result<Box<dyn Tx>> {
        Ok(Box::new(self.pool.begin_with("BEGIN IMMEDIATE").await?))
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    /// SQLite has one writer at a time already.
    async fn lock_audit_chain(&self, _tx: &mut dyn Tx) -> Result<()> {
        Ok(())
    }

    /// One process per SQLite file: its own hub already knows every change.
    async fn announce(&self, _tx: &mut dyn Tx, _seq: i64) -> Result<()> {
        Ok(())
    }

    async fn announce_all(&self, _tx: &mut dyn Tx, _seqs: &[i64]) -> Result<()> {
        Ok(())
    }

    /// SQLite has no arrays: a `VALUES` row per row, a placeholder per value. Its own
    /// statements are prepared in-process, so a text per number of rows costs little.
    fn with_rows(&self, rows: Rows) -> Query {
        let (name, count, names) = (rows.name(), rows.rows(), rows.column_names());
        let columns = rows.into_columns();
        let width = columns.len();
        let table = if count == 0 {
            // No rows: a table of the same columns that yields none.
            let nulls = vec!["NULL"; width].join(", ");
            format!("SELECT {nulls} WHERE 0")
        } else {
            let values: Vec<String> = (0..count)
                .map(|row| {
                    let placeholders: Vec<String> = (1..=width)
                        .map(|k| format!("${}", row * width + k))
                        .collect();
                    format!("({})", placeholders.join(", "))
                })
                .collect();
            format!("VALUES {}", values.join(", "))
        };
        let mut q = query_built(format!("WITH {name} ({names}) AS ({table}) "));
        for row in 0..count {
            for column in &columns {
                q = q.bind(column.element(row));
            }
        }
        q
    }

    fn listen_for_changes(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
        None
    }

    async fn announce_directory(&self, _what: &str) -> Result<()> {
        Ok(())
    }

    fn listen_for_directory(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        None
    }

    /// One SQLite file serves one instance: it always leads.
    fn leadership(&self) -> Box<dyn Leadership> {
        struct Always;
        #[async_trait]
        impl Leadership for Always {
            async fn check(&mut self) -> bool {
                true
            }
        }
        Box::new(Always)
    }

    /// Nothing of a running instance shows in the file: the operator's word it is stopped.
    async fn instance_leads(&self, _tx: &mut dyn Tx) -> Result<bool> {
        Ok(false)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// A deferred transaction reads from one snapshot of the file (WAL), taken at its first
    /// read, and holds no write lock: the service goes on writing meanwhile.
    async fn begin_snapshot(&self) -> sqlx::Result<Box<dyn Tx>> {
        Ok(Box::new(self.pool.begin_with("BEGIN DEFERRED").await?))
    }

    async fn catalogue(&self, conn: &mut dyn Conn) -> Result<Vec<TableShape>> {
        let names = query(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations' ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut tables = Vec::new();
        for row in names {
            let name: String = row.get(0)?;
            let mut key: Vec<(i64, String)> = Vec::new();
            let mut columns = Vec::new();
            for c in query("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?
            {
                let (column, declared, pk): (String, String, i64) =
                    (c.get(0)?, c.get(1)?, c.get(2)?);
                if pk > 0 {
                    key.push((pk, column.clone()));
                }
                columns.push(ColumnShape {
                    kind: kind_of(&declared),
                    name: column,
                    declared,
                    narrow_int: false,
                });
            }
            key.sort();
            let references = query(
                "SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1) ORDER BY \"table\"",
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect::<sqlx::Result<_>>()?;
            tables.push(TableShape {
                name,
                columns,
                primary_key: key.into_iter().map(|(_, c)| c).collect(),
                references,
                generated_key: None,
            });
        }
        Ok(tables)
    }

    /// SQLite compares text byte by byte unless told otherwise.
    fn in_byte_order(&self, column: &str) -> String {
        column.to_owned()
    }

    fn keep_generated_keys(&self) -> &'static str {
        ""
    }

    /// An AUTOINCREMENT table remembers the highest key ever written, imported ones too.
    async fn continue_generated_keys(
        &self,
        _tx: &mut dyn Tx,
        _tables: &[TableShape],
    ) -> Result<()> {
        Ok(())
    }
}

/// The kind of value a column holds, from its declared type in vakt's SQLite migrations.
fn kind_of(declared: &str) -> Option<Kind> {
    Some(match declared.to_ascii_uppercase().as_str() {
        "INTEGER" | "BIGINT" => Kind::Int,
        "REAL" => Kind::Real,
        "TEXT" => Kind::Text,
        "BOOLEAN" => Kind::Bool,
        _ => return None,
    })
}

impl SqliteStore {
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
        Ok(SqlStore::new(SqliteDialect { pool }))
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
