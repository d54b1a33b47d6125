//! A small value layer over sqlx, so that the SQL both backends share is written once, in
//! plain functions, over `&mut dyn Conn`.
//!
//! sqlx's `Any` driver cannot be used (it refuses SQLite's BOOLEAN columns and our SQLite
//! pragmas) and code generic over `sqlx::Database` drowns the SQL in trait bounds. Here a
//! query is its text and a list of typed values; each backend binds them into its own
//! `sqlx::query` and hands its rows back unchanged, to be read through sqlx's own decoders.

use std::borrow::Cow;

use async_trait::async_trait;
use futures_util::stream::{BoxStream, StreamExt};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Decode, Postgres, Sqlite, Type};

/// A value bound to a placeholder. A null keeps its type, as a typed `None` did for sqlx:
/// PostgreSQL is told each parameter's type and rejects a text null for a number column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    /// A PostgreSQL array: one column of many rows (see `Rows`). SQLite has none.
    List(List),
}

/// The values of one column, one per row.
#[derive(Debug, Clone, PartialEq)]
pub enum List {
    Ints(Vec<Option<i64>>),
    Reals(Vec<Option<f64>>),
    Texts(Vec<Option<String>>),
}

impl List {
    /// How many rows it holds.
    pub fn rows(&self) -> usize {
        match self {
            List::Ints(v) => v.len(),
            List::Reals(v) => v.len(),
            List::Texts(v) => v.len(),
        }
    }

    /// The value of row `row` (below `rows`), for a backend without arrays.
    pub fn element(&self, row: usize) -> Value {
        match self {
            List::Ints(v) => Value::Int(v[row]),
            List::Reals(v) => Value::Real(v[row]),
            List::Texts(v) => Value::Text(v[row].clone()),
        }
    }

    /// Its PostgreSQL array type.
    pub fn array_type(&self) -> &'static str {
        match self {
            List::Ints(_) => "bigint[]",
            List::Reals(_) => "double precision[]",
            List::Texts(_) => "text[]",
        }
    }
}

/// Rows handed to one statement as a table, column by column. A statement over many rows
/// starts with them, `WITH name (columns) AS (…)` as the dialect writes it
/// (`Dialect::with_rows`), and reads them from `name`: its own text is the same on both
/// backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    name: &'static str,
    columns: Vec<(&'static str, List)>,
}

impl Rows {
    pub fn new(name: &'static str) -> Rows {
        Rows {
            name,
            columns: Vec::new(),
        }
    }

    pub fn ints<V: Into<Option<i64>>>(
        self,
        column: &'static str,
        values: impl IntoIterator<Item = V>,
    ) -> Rows {
        self.with(
            column,
            List::Ints(values.into_iter().map(Into::into).collect()),
        )
    }

    pub fn reals<V: Into<Option<f64>>>(
        self,
        column: &'static str,
        values: impl IntoIterator<Item = V>,
    ) -> Rows {
        self.with(
            column,
            List::Reals(values.into_iter().map(Into::into).collect()),
        )
    }

    pub fn texts<V: Into<Option<String>>>(
        self,
        column: &'static str,
        values: impl IntoIterator<Item = V>,
    ) -> Rows {
        self.with(
            column,
            List::Texts(values.into_iter().map(Into::into).collect()),
        )
    }

    /// Every column has a value for every row: columns of unequal length are a mistake in
    /// the store's own code, which no data can cause.
    fn with(mut self, column: &'static str, values: List) -> Rows {
        if let Some((first, _)) = self.columns.first() {
            assert_eq!(
                values.rows(),
                self.rows(),
                "column {column} of {} has as many rows as {first}",
                self.name
            );
        }
        self.columns.push((column, values));
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, values)| values.rows())
    }

    /// The column names, in order, comma-separated.
    pub fn column_names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    pub fn into_columns(self) -> Vec<List> {
        self.columns.into_iter().map(|(_, values)| values).collect()
    }
}

macro_rules! value_from {
    ($($variant:ident($t:ty) => |$v:ident| $e:expr;)*) => {
        $(impl From<$t> for Value {
            fn from($v: $t) -> Value {
                Value::$variant($e)
            }
        })*
    };
}

value_from! {
    List(List) => |v| v;
    Int(i64) => |v| Some(v);
    Int(Option<i64>) => |v| v;
    Real(f64) => |v| Some(v);
    Real(Option<f64>) => |v| v;
    Bool(bool) => |v| Some(v);
    Bool(Option<bool>) => |v| v;
    Text(String) => |v| Some(v);
    Text(Option<String>) => |v| v;
    Text(&str) => |v| Some(v.to_owned());
    Text(&String) => |v| Some(v.clone());
    Text(Option<&str>) => |v| v.map(str::to_owned);
    Text(&Option<String>) => |v| v.clone();
}

/// A statement and its values, in placeholder order (`$1`, `$2`, …).
#[derive(Debug)]
pub struct Query {
    sql: Cow<'static, str>,
    values: Vec<Value>,
}

/// A statement written out in the source.
pub fn query(sql: &'static str) -> Query {
    Query {
        sql: Cow::Borrowed(sql),
        values: Vec::new(),
    }
}

/// A statement put together from constants (column lists, table names, closed sets of
/// states), never from input.
pub fn query_built(sql: String) -> Query {
    Query {
        sql: Cow::Owned(sql),
        values: Vec::new(),
    }
}

impl Query {
    pub fn bind(mut self, value: impl Into<Value>) -> Query {
        self.values.push(value.into());
        self
    }

    /// The statement `sql`, its values bound after this one's.
    pub fn then(mut self, sql: &str) -> Query {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// How many rows it changed.
    pub async fn execute(self, conn: &mut dyn Conn) -> sqlx::Result<u64> {
        conn.execute(self).await
    }

    pub async fn fetch_all(self, conn: &mut dyn Conn) -> sqlx::Result<Vec<Row>> {
        conn.fetch_all(self).await
    }

    pub async fn fetch_optional(self, conn: &mut dyn Conn) -> sqlx::Result<Option<Row>> {
        conn.fetch_optional(self).await
    }

    /// The rows one by one as the database sends them: a table of millions never sits in
    /// memory.
    pub fn fetch(self, conn: &mut dyn Conn) -> BoxStream<'_, sqlx::Result<Row>> {
        conn.fetch(self)
    }

    /// The first row; `RowNotFound` when there is none, as sqlx's `fetch_one`.
    pub async fn fetch_one(self, conn: &mut dyn Conn) -> sqlx::Result<Row> {
        conn.fetch_optional(self)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Binds the values in order, each as the Rust type it was given as. A list is a
    /// mistake of the store's own SQL here (`Dialect::with_rows` writes SQLite's rows out),
    /// and fails the statement.
    fn into_sqlite(
        self,
    ) -> sqlx::Result<sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for value in self.values {
            q = match value {
                Value::Int(v) => q.bind(v),
                Value::Real(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
                Value::List(_) => {
                    return Err(sqlx::Error::Encode(
                        "SQLite has no arrays: rows are written out by Dialect::with_rows".into(),
                    ))
                }
            };
        }
        Ok(q)
    }

    /// Binds the values in order, each as the Rust type it was given as, a list as an array.
    fn into_postgres(
        self,
    ) -> sqlx::Result<sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for value in self.values {
            q = match value {
                Value::Int(v) => q.bind(v),
                Value::Real(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
                Value::List(List::Ints(v)) => q.bind(v),
                Value::List(List::Reals(v)) => q.bind(v),
                Value::List(List::Texts(v)) => q.bind(v),
            };
        }
        Ok(q)
    }
}

/// A row as its backend returned it, read with that backend's decoders (so a SQLite
/// integer still reads as a `bool`, and a mismatched type fails as it did with sqlx).
pub enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A Rust type both backends can read a column into.
pub trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A column by name or by position.
pub trait Index: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}

impl<I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>> Index for I {}

impl Row {
    pub fn get<T: Column>(&self, index: impl Index) -> sqlx::Result<T> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(row) => row.try_get(index),
            Row::Postgres(row) => row.try_get(index),
        }
    }
}

/// Somewhere to run statements: a pool (each statement on its own) or a transaction.
#[async_trait]
pub trait Conn: Send {
    async fn execute(&mut self, query: Query) -> sqlx::Result<u64>;
    async fn fetch_all(&mut self, query: Query) -> sqlx::Result<Vec<Row>>;
    async fn fetch_optional(&mut self, query: Query) -> sqlx::Result<Option<Row>>;
    fn fetch(&mut self, query: Query) -> BoxStream<'_, sqlx::Result<Row>>;
}

/// A transaction; dropped without `commit`, it rolls back.
#[async_trait]
pub trait Tx: Conn {
    async fn commit(self: Box<Self>) -> sqlx::Result<()>;
}

/// One `Conn` implementation per backend and kind of executor: they differ only in the
/// executor expression and the row variant.
macro_rules! conn {
    ($t:ty, $into:ident, $row:ident, |$s:ident| $exec:expr) => {
        #[async_trait]
        impl Conn for $t {
            async fn execute(&mut self, query: Query) -> sqlx::Result<u64> {
                let $s = self;
                Ok(query.$into()?.execute($exec).await?.rows_affected())
            }

            async fn fetch_all(&mut self, query: Query) -> sqlx::Result<Vec<Row>> {
                let $s = self;
                let rows = query.$into()?.fetch_all($exec).await?;
                Ok(rows.into_iter().map(Row::$row).collect())
            }

            async fn fetch_optional(&mut self, query: Query) -> sqlx::Result<Option<Row>> {
                let $s = self;
                Ok(query.$into()?.fetch_optional($exec).await?.map(Row::$row))
            }

            fn fetch(&mut self, query: Query) -> BoxStream<'_, sqlx::Result<Row>> {
                let $s = self;
                match query.$into() {
                    Ok(query) => query.fetch($exec).map(|row| row.map(Row::$row)).boxed(),
                    // A statement that cannot be bound yields its error as its only row.
                    Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
                }
            }
        }
    };
}

conn!(sqlx::SqlitePool, into_sqlite, Sqlite, |pool| &*pool);
conn!(sqlx::PgPool, into_postgres, Postgres, |pool| &*pool);
conn!(
    sqlx::Transaction<'static, Sqlite>,
    into_sqlite,
    Sqlite,
    |tx| &mut **tx
);
conn!(
    sqlx::Transaction<'static, Postgres>,
    into_postgres,
    Postgres,
    |tx| &mut **tx
);

#[async_trait]
impl Tx for sqlx::Transaction<'static, Sqlite> {
    async fn commit(self: Box<Self>) -> sqlx::Result<()> {
        (*self).commit().await
    }
}

#[async_trait]
impl Tx for sqlx::Transaction<'static, Postgres> {
    async fn commit(self: Box<Self>) -> sqlx::Result<()> {
        (*self).commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_bind_in_placeholder_order_and_read_back_as_their_types() {
        let mut pool: Box<dyn Conn> = Box::new(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect("sqlite::memory:")
                .await
                .unwrap(),
        );
        query("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BOOLEAN)")
            .execute(&mut *pool)
            .await
            .unwrap();
        let written = query("INSERT INTO t (i, r, s, b) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)")
            .bind(7_i64)
            .bind(0.5)
            .bind("seven")
            .bind(true)
            .bind(None::<i64>)
            .bind(None::<f64>)
            .bind(None::<&str>)
            .bind(None::<bool>)
            .execute(&mut *pool)
            .await
            .unwrap();
        assert_eq!(written, 2);
        let rows = query("SELECT i, r, s, b FROM t ORDER BY i IS NULL")
            .fetch_all(&mut *pool)
            .await
            .unwrap();
        let read = |row: &Row| -> (Option<i64>, Option<f64>, Option<String>, Option<bool>) {
            (
                row.get(0).unwrap(),
                row.get("r").unwrap(),
                row.get(2).unwrap(),
                row.get("b").unwrap(),
            )
        };
        assert_eq!(
            read(&rows[0]),
            (Some(7), Some(0.5), Some("seven".into()), Some(true))
        );
        assert_eq!(read(&rows[1]), (None, None, None, None));
        let none = query("SELECT i FROM t WHERE s = $1")
            .bind("eight")
            .fetch_one(&mut *pool)
            .await;
        assert!(matches!(none, Err(sqlx::Error::RowNotFound)));
    }
}
