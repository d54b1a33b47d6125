//! PostgreSQL: several instances share one database; advisory locks order the audit chain
//! and choose the leader, NOTIFY carries alert changes to every instance's consoles and
//! changed cases and devices to every instance's directory.

use async_trait::async_trait;

use super::db::{query, query_built, Conn, List, Query, Rows, Tx};
use super::dialect::{ColumnShape, Dialect, SqlStore, TableShape};
use super::export::Kind;
use super::{Leadership, Result};

pub struct PostgresDialect {
    pool: sqlx::PgPool,
    /// Names this process in its announcements of alert changes: its own consoles had each
    /// change at commit, and reading it back once per announcement would double the work
    /// of every alarm (two queries each, thousands a second in a storm).
    origin: String,
}

pub type PostgresStore = SqlStore<PostgresDialect>;

/// The channel alert changes are announced on, for the consoles of every instance.
const CHANGES_CHANNEL: &str = "vakt_alert_changes";
/// The channel changed cases and devices are announced on, for every instance's directory.
const DIRECTORY_CHANNEL: &str = "vakt_directory_changes";

/// The change an announcement numbers (`"{seq} {origin}"`), unless `origin` (this process)
/// made it. An announcement without an origin (an older version) counts as another's.
fn change_from_elsewhere(payload: &str, origin: &str) -> Option<i64> {
    let (seq, from) = match payload.split_once(' ') {
        Some((seq, from)) => (seq, Some(from)),
        None => (payload, None),
    };
    if from == Some(origin) {
        return None;
    }
    seq.parse().ok()
}

/// What is announced on `channel`, parsed, as it comes; `resumed` is sent after each lost
/// connection is made again (announcements in between are lost).
fn listen<T: Clone + Send + 'static>(
    pool: sqlx::PgPool,
    channel: &'static str,
    parse: fn(&str) -> Option<T>,
    resumed: Option<T>,
) -> tokio::sync::mpsc::Receiver<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot listen for changes; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(channel).await {
                tracing::warn!(channel, error = %e, "cannot listen for changes; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            if let (false, Some(r)) = (first, &resumed) {
                if tx.send(r.clone()).await.is_err() {
                    return;
                }
            }
            first = false;
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Some(v) = parse(n.payload()) {
                            if tx.send(v).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "change listener lost; reconnecting");
                        break;
                    }
                }
            }
        }
    });
    rx
}

#[async_trait]
impl Dialect for PostgresDialect {
    fn pool(&self) -> Box<dyn Conn> {
        Box::new(self.pool.clone())
    }

    async fn begin_write(&self) -> sqlx::Result<Box<dyn Tx>> {
        Ok(Box::new(self.pool.begin().await?))
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Instances append to the audit chain one at a time (released at commit).
    async fn lock_audit_chain(&self, tx: &mut dyn Tx) -> Result<()> {
        query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEADER_LOCK + 1)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Announces a change at commit (NOTIFY is transactional): other instances push it to
    /// their consoles.
    async fn announce(&self, tx: &mut dyn Tx, seq: i64) -> Result<()> {
        query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(format!("{seq} {}", self.origin))
            .execute(tx)
            .await?;
        Ok(())
    }

    async fn announce_all(&self, tx: &mut dyn Tx, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let payloads = seqs
            .iter()
            .map(|seq| Some(format!("{seq} {}", self.origin)))
            .collect();
        query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS announced (payload)")
            .bind(CHANGES_CHANNEL)
            .bind(List::Texts(payloads))
            .execute(tx)
            .await?;
        Ok(())
    }

    /// One array per column, unnested: the statement's text is the same however many rows
    /// it is given, so each connection prepares it once. (Rows written out as `VALUES` make
    /// a new statement for every number of rows, thousands of placeholders each, and a
    /// batch of the ingest, whose size varies, would rarely find its statement prepared.)
    fn with_rows(&self, rows: Rows) -> Query {
        let (name, names) = (rows.name(), rows.column_names());
        let columns = rows.into_columns();
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(n, column)| format!("${}::{}", n + 1, column.array_type()))
            .collect();
        let mut q = query_built(format!(
            "WITH {name} ({names}) AS (SELECT * FROM UNNEST({})) ",
            arrays.join(", ")
        ));
        for column in columns {
            q = q.bind(column);
        }
        q
    }

    /// Event numbers of changes committed by any instance, as they are announced.
    fn listen_for_changes(&self) -> Option<tokio::sync::mpsc::Receiver<i64>> {
        let mut announced = listen(
            self.pool.clone(),
            CHANGES_CHANNEL,
            |payload| Some(payload.to_owned()),
            None,
        );
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let origin = self.origin.clone();
        tokio::spawn(async move {
            while let Some(payload) = announced.recv().await {
                if let Some(seq) = change_from_elsewhere(&payload, &origin) {
                    if tx.send(seq).await.is_err() {
                        return;
                    }
                }
            }
        });
        Some(rx)
    }

    /// Not in a transaction: the callers announce what they have committed already.
    async fn announce_directory(&self, what: &str) -> Result<()> {
        query("SELECT pg_notify($1, $2)")
            .bind(DIRECTORY_CHANNEL)
            .bind(what)
            .execute(&mut *self.pool())
            .await?;
        Ok(())
    }

    fn listen_for_directory(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        Some(listen(
            self.pool.clone(),
            DIRECTORY_CHANNEL,
            |payload| Some(payload.to_owned()),
            Some("*".to_owned()),
        ))
    }

    fn leadership(&self) -> Box<dyn Leadership> {
        Box::new(PgLeadership {
            pool: self.pool.clone(),
            held: None,
        })
    }

    /// A leader holds the session lock, so the transaction's own try on it fails; a lock
    /// taken here goes at commit or rollback.
    async fn instance_leads(&self, tx: &mut dyn Tx) -> Result<bool> {
        let got: bool = query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(tx)
            .await?
            .get(0)?;
        Ok(!got)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// Every statement of a REPEATABLE READ transaction sees the snapshot of its first.
    async fn begin_snapshot(&self) -> sqlx::Result<Box<dyn Tx>> {
        Ok(Box::new(
            self.pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?,
        ))
    }

    async fn catalogue(&self, conn: &mut dyn Conn) -> Result<Vec<TableShape>> {
        let names = query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> '_sqlx_migrations' ORDER BY table_name",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut tables = Vec::new();
        for row in names {
            let name: String = row.get(0)?;
            let mut generated_key = None;
            let mut columns = Vec::new();
            for c in query(
                "SELECT column_name::text, data_type::text, is_identity::text = 'YES' \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?
            {
                let (column, declared, identity): (String, String, bool) =
                    (c.get(0)?, c.get(1)?, c.get(2)?);
                if identity {
                    generated_key = Some(column.clone());
                }
                columns.push(ColumnShape {
                    kind: kind_of(&declared),
                    narrow_int: matches!(declared.as_str(), "integer" | "smallint"),
                    name: column,
                    declared,
                });
            }
            let primary_key = query(
                "SELECT k.column_name::text FROM information_schema.table_constraints c \
                 JOIN information_schema.key_column_usage k \
                   ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name \
                 WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema() \
                   AND c.table_name = $1 ORDER BY k.ordinal_position",
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect::<sqlx::Result<_>>()?;
            let references = query(
                "SELECT DISTINCT u.table_name::text FROM information_schema.table_constraints c \
                 JOIN information_schema.constraint_column_usage u \
                   ON u.constraint_schema = c.constraint_schema AND u.constraint_name = c.constraint_name \
                 WHERE c.constraint_type = 'FOREIGN KEY' AND c.table_schema = current_schema() \
                   AND c.table_name = $1 ORDER BY 1",
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
                primary_key,
                references,
                generated_key,
            });
        }
        Ok(tables)
    }

    /// The database's collation sorts by language rules; "C" by bytes, as SQLite does.
    fn in_byte_order(&self, column: &str) -> String {
        format!("{column} COLLATE \"C\"")
    }

    /// Identity columns are GENERATED ALWAYS: written as they are only when told so.
    fn keep_generated_keys(&self) -> &'static str {
        " OVERRIDING SYSTEM VALUE"
    }

    /// Identity sequences know nothing of rows written with their own keys.
    async fn continue_generated_keys(&self, tx: &mut dyn Tx, tables: &[TableShape]) -> Result<()> {
        for table in tables {
            let Some(key) = &table.generated_key else {
                continue;
            };
            // setval is strict: an empty table (MAX is NULL) leaves the sequence at its start.
            query_built(format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), (SELECT MAX(\"{key}\") FROM \"{}\"))",
                table.name
            ))
            .bind(&table.name)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// The kind of value a column holds, from the type information_schema names.
fn kind_of(data_type: &str) -> Option<Kind> {
    Some(match data_type {
        "bigint" | "integer" | "smallint" => Kind::Int,
        "double precision" => Kind::Real,
        "text" => Kind::Text,
        "boolean" => Kind::Bool,
        _ => return None,
    })
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(SqlStore::new(PostgresDialect {
            pool,
            origin: hex::encode(crate::keys::os_random::<6>()),
        }))
    }
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

#[cfg(test)]
mod tests {
    use super::change_from_elsewhere;

    #[test]
    fn a_change_announced_by_this_process_is_not_read_back_and_one_from_another_is() {
        assert_eq!(change_from_elsewhere("41 a1b2", "a1b2"), None);
        assert_eq!(change_from_elsewhere("41 c3d4", "a1b2"), Some(41));
        assert_eq!(change_from_elsewhere("41", "a1b2"), Some(41));
        assert_eq!(change_from_elsewhere("x c3d4", "a1b2"), None);
    }
}
