//! Moving a database whole, from either backend to either: every table written out as JSON
//! Lines beside a manifest of counts and SHA-256 checksums (`vakt export`), and read into a
//! new, empty database (`vakt import`). Values are written as stored, sealed secrets still
//! sealed: the master key never travels with an export. The format is docs/export.md.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::db::{query, query_built, Conn, Row, Value};
use super::dialect::{Dialect, SqlStore, TableShape};
use super::StoreError;
use crate::domain::Millis;

/// What the manifest calls the format, and the version of it this vakt writes and reads.
pub const FORMAT: &str = "vakt-export";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

/// Every table of the schema, each after the tables its foreign keys refer to: the order an
/// import writes them in. Every export and import checks it against the database's own
/// catalogue, so a table a migration adds and this list lacks stops both, instead of being
/// left behind without a word.
pub const TABLES: &[&str] = &[
    "users",
    "sessions",
    "api_tokens",
    "persons",
    "cases",
    "orders",
    "devices",
    "alerts",
    "alert_history",
    "alert_events",
    "device_messages",
    "security_events",
    "audit_log",
    "instances",
    "broker_sessions",
    "regions",
    "local_areas",
    "login_failures",
    "data_upgrades",
    "master_key_fingerprint",
    "risk_assessments",
];

/// Values bound per INSERT on import (both backends take far more).
const VALUES_PER_INSERT: usize = 8_000;

/// What a column holds, the same on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Int,
    Real,
    Text,
    Bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub vakt_version: String,
    /// The newest migration applied to the exported database.
    pub schema_version: i64,
    /// The backend exported from: `sqlite` or `postgres`.
    pub source: String,
    pub exported_at: String,
    pub tables: Vec<TableFile>,
    /// SHA-256 of `tables` as compact JSON: the list itself cannot be edited unseen.
    pub tables_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    pub table: String,
    pub file: String,
    pub rows: u64,
    pub sha256: String,
    pub columns: Vec<ColumnFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnFile {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// What an import wrote: rows per table, in the order written.
pub type Imported = Vec<(String, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database's schema does not match this vakt's list of tables to move (src/store/export.rs, TABLES): {0}")]
    Schema(String),
    #[error("{0}: an export is written into a new or empty directory")]
    OutNotEmpty(PathBuf),
    #[error("no database at {0}")]
    NoDatabase(String),
    #[error("{file}: {why}; nothing was imported")]
    Damaged { file: PathBuf, why: String },
    #[error("{0}; nothing was imported")]
    Refused(String),
    #[error("the database is not empty (table {table} holds {rows} rows): an export is imported only into a new, empty database, which has not been started or migrated yet; nothing was imported")]
    NotEmpty { table: String, rows: i64 },
    #[error("the export's device keys and one-time-code secrets are sealed, and its audit chain linked, under another master key than the one configured here: carry the master key over first (docs/export.md, \"The master key\"); nothing was imported")]
    WrongMasterKey,
}

impl From<sqlx::Error> for MoveError {
    fn from(e: sqlx::Error) -> MoveError {
        MoveError::Store(e.into())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MoveError + '_ {
    move |e| MoveError::Io(path.to_owned(), e)
}

/// The digest `tables_sha256` holds.
pub fn tables_digest(tables: &[TableFile]) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(tables).expect("plain data serialises"),
    ))
}

/// A row as one line of JSON (newline included), its columns in the table's order.
/// A real that JSON cannot hold (NaN, infinity) is refused rather than written as null.
pub fn to_line(columns: &[ColumnFile], values: &[Value]) -> Result<String, String> {
    let mut line = String::from("{");
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&serde_json::to_string(&column.name).expect("a string serialises"));
        line.push(':');
        match value {
            Value::Int(Some(v)) => line.push_str(&v.to_string()),
            // serde_json writes the shortest text that reads back as the same bits.
            Value::Real(Some(v)) if v.is_finite() => {
                line.push_str(&serde_json::to_string(v).expect("a finite real serialises"))
            }
            Value::Real(Some(v)) => return Err(format!("column {}: {v} has no JSON", column.name)),
            Value::Text(Some(v)) => {
                line.push_str(&serde_json::to_string(v).expect("a string serialises"))
            }
            Value::Bool(Some(v)) => line.push_str(if *v { "true" } else { "false" }),
            Value::Int(None) | Value::Real(None) | Value::Text(None) | Value::Bool(None) => {
                line.push_str("null")
            }
            // A table's columns are read one value each; a list is only ever bound.
            Value::List(_) => {
                return Err(format!("column {}: a list is no column value", column.name))
            }
        }
    }
    line.push_str("}\n");
    Ok(line)
}

/// A line written by `to_line` read back as the values of `columns`: every column there,
/// none other, each of its kind.
pub fn from_line(columns: &[ColumnFile], line: &str) -> Result<Vec<Value>, String> {
    let mut fields: HashMap<String, Box<RawValue>> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut values = Vec::with_capacity(columns.len());
    for column in columns {
        let raw = fields
            .remove(&column.name)
            .ok_or_else(|| format!("column {} is missing", column.name))?;
        let text = raw.get();
        let bad = |e: &dyn std::fmt::Display| format!("column {}: {text}: {e}", column.name);
        let null = text == "null";
        values.push(match column.kind {
            // The text itself, not serde_json's numbers: Rust parses reals correctly rounded,
            // so each reads back as the bits it was written from.
            Kind::Int => Value::Int(match null {
                true => None,
                false => Some(text.parse().map_err(|e| bad(&e))?),
            }),
            Kind::Real => Value::Real(match null {
                true => None,
                false if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                    Some(text.parse().map_err(|e| bad(&e))?)
                }
                false => return Err(bad(&"not a number")),
            }),
            Kind::Text => Value::Text(serde_json::from_str(text).map_err(|e| bad(&e))?),
            Kind::Bool => Value::Bool(serde_json::from_str(text).map_err(|e| bad(&e))?),
        });
    }
    if let Some(extra) = fields.keys().next() {
        return Err(format!("column {extra} is not in the table"));
    }
    Ok(values)
}

/// A name the catalogue gave that can be put in SQL as it is, quoted.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The catalogue's tables in `TABLES` order, each checked: one of the list, with a primary
/// key, columns of kinds the format carries, and its foreign keys pointing to tables before
/// it. A list and a catalogue that differ are named in full.
fn checked(catalogue: Vec<TableShape>) -> Result<Vec<TableShape>, MoveError> {
    let unlisted: Vec<&str> = catalogue
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !TABLES.contains(name))
        .collect();
    let missing: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|name| !catalogue.iter().any(|t| t.name == *name))
        .collect();
    if !unlisted.is_empty() || !missing.is_empty() {
        return Err(MoveError::Schema(format!(
            "tables in the database but not in the list: {unlisted:?}; in the list but not in the database: {missing:?}"
        )));
    }
    let mut ordered = catalogue;
    ordered.sort_by_key(|t| TABLES.iter().position(|name| *name == t.name));
    for (i, table) in ordered.iter().enumerate() {
        let name = &table.name;
        if !is_plain_name(name) {
            return Err(MoveError::Schema(format!("table name {name:?}")));
        }
        if table.primary_key.is_empty() {
            return Err(MoveError::Schema(format!(
                "table {name} has no primary key to order its rows by"
            )));
        }
        for column in &table.columns {
            if !is_plain_name(&column.name) {
                return Err(MoveError::Schema(format!(
                    "column name {name}.{:?}",
                    column.name
                )));
            }
            if column.kind.is_none() {
                return Err(MoveError::Schema(format!(
                    "column {name}.{} is of type {}, which the export format does not carry yet",
                    column.name, column.declared
                )));
            }
        }
        for referred in &table.references {
            if !TABLES[..i].contains(&referred.as_str()) {
                return Err(MoveError::Schema(format!(
                    "table {name} refers to {referred}, which is not listed before it"
                )));
            }
        }
    }
    Ok(ordered)
}

fn columns_of(table: &TableShape) -> Vec<ColumnFile> {
    table
        .columns
        .iter()
        .map(|c| ColumnFile {
            name: c.name.clone(),
            kind: c.kind.expect("checked"),
        })
        .collect()
}

async fn schema_version(conn: &mut dyn Conn) -> Result<i64, MoveError> {
    Ok(
        query("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(conn)
            .await?
            .get::<Option<i64>>(0)?
            .unwrap_or(0),
    )
}

fn read_row(row: &Row, columns: &[ColumnFile]) -> sqlx::Result<Vec<Value>> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind {
                Kind::Int => Value::Int(row.get(i)?),
                Kind::Real => Value::Real(row.get(i)?),
                Kind::Text => Value::Text(row.get(i)?),
                Kind::Bool => Value::Bool(row.get(i)?),
            })
        })
        .collect()
}

/// A file only its owner reads: an export holds everything the database does.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes through to a file and hashes what it wrote.
struct Hashed {
    file: std::io::BufWriter<std::fs::File>,
    hash: Sha256,
}

impl Hashed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.file.write_all(bytes)
    }

    fn finish(self) -> std::io::Result<String> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

/// The SHA-256 and line count of a file, read through once.
fn digest_and_lines(path: &Path) -> std::io::Result<(String, u64)> {
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut hash = Sha256::new();
    let mut lines = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        hash.update(&line);
        lines += 1;
    }
    Ok((hex::encode(hash.finalize()), lines))
}

/// The manifest in `dir`, checked as far as it can be alone: its format and version, and
/// that its list of tables is the one it was written with.
pub fn read_manifest(dir: &Path) -> Result<Manifest, MoveError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let damaged = |why: String| MoveError::Damaged {
        file: path.clone(),
        why,
    };
    let head: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| damaged(format!("not JSON: {e}")))?;
    if head["format"] != FORMAT {
        return Err(damaged(format!(
            "not a vakt export (format {}, expected {FORMAT:?})",
            head["format"]
        )));
    }
    if head["format_version"] != FORMAT_VERSION {
        return Err(MoveError::Refused(format!(
            "{}: format version {}, and this vakt reads version {FORMAT_VERSION} only",
            path.display(),
            head["format_version"]
        )));
    }
    let manifest: Manifest = serde_json::from_value(head).map_err(|e| damaged(e.to_string()))?;
    if tables_digest(&manifest.tables) != manifest.tables_sha256 {
        return Err(damaged(
            "its list of tables does not match tables_sha256 (edited or damaged)".into(),
        ));
    }
    Ok(manifest)
}

/// Every table file of the manifest holds its count of rows and its checksum; the first
/// that does not is named.
pub fn check_files(dir: &Path, manifest: &Manifest) -> Result<(), MoveError> {
    for table in &manifest.tables {
        let path = dir.join(&table.file);
        if table.file != format!("{}.jsonl", table.table) || !is_plain_name(&table.table) {
            return Err(MoveError::Damaged {
                file: dir.join(MANIFEST),
                why: format!("table {:?} in file {:?}", table.table, table.file),
            });
        }
        let (sha256, rows) = digest_and_lines(&path).map_err(io(&path))?;
        if sha256 != table.sha256 {
            return Err(MoveError::Damaged {
                file: path,
                why: "its SHA-256 is not the manifest's (edited or damaged)".into(),
            });
        }
        if rows != table.rows {
            return Err(MoveError::Damaged {
                file: path,
                why: format!("{rows} rows, the manifest says {}", table.rows),
            });
        }
    }
    Ok(())
}

impl<D: Dialect> SqlStore<D> {
    /// Writes every table into `out` (made, or empty) from one snapshot, then the manifest.
    pub(super) async fn export_to(&self, out: &Path, at: Millis) -> Result<Manifest, MoveError> {
        match std::fs::read_dir(out) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(MoveError::OutNotEmpty(out.to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::private_dir(out).map_err(io(out))?
            }
            Err(e) => return Err(MoveError::Io(out.to_owned(), e)),
        }
        let mut tx = self.dialect.begin_snapshot().await?;
        let shapes = checked(self.dialect.catalogue(&mut *tx).await?)?;
        let schema_version = schema_version(&mut *tx).await?;
        let mut tables = Vec::with_capacity(shapes.len());
        for shape in &shapes {
            tables.push(self.export_table(&mut *tx, shape, out).await?);
        }
        drop(tx);
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            vakt_version: env!("CARGO_PKG_VERSION").into(),
            schema_version,
            source: self.dialect.backend().into(),
            exported_at: crate::domain::rfc3339(at),
            tables_sha256: tables_digest(&tables),
            tables,
        };
        // Written last: an export without its manifest is plainly unfinished.
        let path = out.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(&manifest).expect("plain data serialises");
        text.push('\n');
        let mut file = create_private(&path).map_err(io(&path))?;
        file.write_all(text.as_bytes()).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(manifest)
    }

    /// One table in primary-key order (bytewise for text, so both backends agree), page by
    /// page: after the last key read, or through a cursor (`Dialect::pages_by_cursor`).
    async fn export_table(
        &self,
        tx: &mut dyn Conn,
        shape: &TableShape,
        out: &Path,
    ) -> Result<TableFile, MoveError> {
        let columns = columns_of(shape);
        let file = format!("{}.jsonl", shape.name);
        let path = out.join(&file);
        let mut written = Hashed {
            file: std::io::BufWriter::new(create_private(&path).map_err(io(&path))?),
            hash: Sha256::new(),
        };
        let select: Vec<String> = shape
            .columns
            .iter()
            .map(|c| match c.narrow_int {
                true => format!("CAST(\"{0}\" AS BIGINT) AS \"{0}\"", c.name),
                false => format!("\"{}\"", c.name),
            })
            .collect();
        let order: Vec<String> = shape
            .primary_key
            .iter()
            .map(|k| {
                let column = columns.iter().find(|c| &c.name == k).ok_or_else(|| {
                    MoveError::Schema(format!("{}: key column {k} not found", shape.name))
                })?;
                let sql = format!("\"{k}\"");
                Ok(match column.kind {
                    Kind::Text => self.dialect.in_byte_order(&sql),
                    _ => sql,
                })
            })
            .collect::<Result<_, MoveError>>()?;
        let all = format!(
            "SELECT {} FROM \"{}\" ORDER BY {}",
            select.join(", "),
            shape.name,
            order.join(", ")
        );
        let mut rows_written = 0u64;
        let mut rows = query_built(all).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let values = read_row(&row, &columns)?;
            let line = to_line(&columns, &values).map_err(|why| MoveError::Damaged {
                file: path.clone(),
                why: format!("table {}: {why}", shape.name),
            })?;
            written.write(line.as_bytes()).map_err(io(&path))?;
            rows_written += 1;
        }
        drop(rows);
        // Read in the same snapshot: a row the export did not write is noticed.
        let counted: i64 = query_built(format!("SELECT COUNT(*) FROM \"{}\"", shape.name))
            .fetch_one(&mut *tx)
            .await?
            .get(0)?;
        if counted as u64 != rows_written {
            return Err(MoveError::Schema(format!(
                "table {}: {rows_written} rows read of {counted}",
                shape.name
            )));
        }
        Ok(TableFile {
            table: shape.name.clone(),
            file,
            rows: rows_written,
            sha256: written.finish().map_err(io(&path))?,
            columns,
        })
    }

    /// Reads the export in `dir`, its files checked against `manifest` already, into this
    /// database, which must be migrated and empty: every row in one transaction, parents
    /// first. `fingerprint`: the configured master key's, which must be the export's.
    pub(super) async fn import_from(
        &self,
        dir: &Path,
        manifest: &Manifest,
        fingerprint: &str,
    ) -> Result<Imported, MoveError> {
        let mut tx = self.begin_write().await?;
        let shapes = checked(self.dialect.catalogue(&mut *tx).await?)?;
        let here = schema_version(&mut *tx).await?;
        if manifest.schema_version != here {
            return Err(MoveError::Refused(format!(
                "the export is of schema version {} and this vakt's database of {here}: import it with the vakt version that exported it ({}), then upgrade",
                manifest.schema_version, manifest.vakt_version
            )));
        }
        for shape in &shapes {
            let listed = manifest.tables.iter().find(|t| t.table == shape.name);
            let Some(listed) = listed else {
                return Err(MoveError::Refused(format!(
                    "the export has no file for table {}",
                    shape.name
                )));
            };
            if listed.columns != columns_of(shape) {
                return Err(MoveError::Refused(format!(
                    "{}: its columns are not those of table {} here",
                    listed.file, shape.name
                )));
            }
        }
        if let Some(extra) = manifest
            .tables
            .iter()
            .find(|t| !shapes.iter().any(|s| s.name == t.table))
        {
            return Err(MoveError::Refused(format!(
                "{}: no table {} here",
                extra.file, extra.table
            )));
        }
        for shape in &shapes {
            let rows: i64 = query_built(format!("SELECT COUNT(*) FROM \"{}\"", shape.name))
                .fetch_one(&mut *tx)
                .await?
                .get(0)?;
            if rows > 0 {
                return Err(MoveError::NotEmpty {
                    table: shape.name.clone(),
                    rows,
                });
            }
        }
        if let Some(exported) = exported_fingerprint(dir, manifest)? {
            if exported != fingerprint {
                return Err(MoveError::WrongMasterKey);
            }
        }
        let mut imported = Vec::with_capacity(shapes.len());
        for shape in &shapes {
            let listed = manifest
                .tables
                .iter()
                .find(|t| t.table == shape.name)
                .expect("checked above");
            let rows = self.import_table(&mut *tx, dir, listed).await?;
            imported.push((shape.name.clone(), rows));
        }
        self.dialect
            .continue_generated_keys(&mut *tx, &shapes)
            .await?;
        tx.commit().await?;
        Ok(imported)
    }

    /// One table's file, in batches; its checksum is taken again as it is read, so a file
    /// changed since the check is refused before anything commits.
    async fn import_table(
        &self,
        tx: &mut dyn Conn,
        dir: &Path,
        table: &TableFile,
    ) -> Result<u64, MoveError> {
        let path = dir.join(&table.file);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&path).map_err(io(&path))?);
        let names: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let head = format!(
            "INSERT INTO \"{}\" ({}){} VALUES ",
            table.table,
            names.join(", "),
            self.dialect.keep_generated_keys()
        );
        let per_insert = (VALUES_PER_INSERT / table.columns.len().max(1)).max(1);
        let mut hash = Sha256::new();
        let mut rows = 0u64;
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_insert);
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(io(&path))?;
            if read > 0 {
                hash.update(line.as_bytes());
                rows += 1;
                let values =
                    from_line(&table.columns, &line).map_err(|why| MoveError::Damaged {
                        file: path.clone(),
                        why: format!("line {rows}: {why}"),
                    })?;
                batch.push(values);
            }
            if batch.len() == per_insert || (read == 0 && !batch.is_empty()) {
                insert(&mut *tx, &head, std::mem::take(&mut batch)).await?;
            }
            if read == 0 {
                break;
            }
        }
        if hex::encode(hash.finalize()) != table.sha256 || rows != table.rows {
            return Err(MoveError::Damaged {
                file: path,
                why: "it changed while it was being imported".into(),
            });
        }
        Ok(rows)
    }
}

async fn insert(tx: &mut dyn Conn, head: &str, rows: Vec<Vec<Value>>) -> Result<(), MoveError> {
    let mut sql = String::from(head);
    let mut n = 0;
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = row
            .iter()
            .map(|_| {
                n += 1;
                format!("${n}")
            })
            .collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
    let mut statement = query_built(sql);
    for value in rows.into_iter().flatten() {
        statement = statement.bind(value);
    }
    statement.execute(tx).await?;
    Ok(())
}

/// The master key fingerprint the exported database recorded, if it had one.
fn exported_fingerprint(dir: &Path, manifest: &Manifest) -> Result<Option<String>, MoveError> {
    let Some(table) = manifest
        .tables
        .iter()
        .find(|t| t.table == "master_key_fingerprint")
    else {
        return Ok(None);
    };
    let path = dir.join(&table.file);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let Some(line) = text.lines().next() else {
        return Ok(None);
    };
    let at = table.columns.iter().position(|c| c.name == "fingerprint");
    let values = from_line(&table.columns, line).map_err(|why| MoveError::Damaged {
        file: path.clone(),
        why,
    })?;
    match at.map(|i| &values[i]) {
        Some(Value::Text(Some(f))) => Ok(Some(f.clone())),
        _ => Err(MoveError::Damaged {
            file: path,
            why: "no fingerprint in it".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(kinds: &[(&str, Kind)]) -> Vec<ColumnFile> {
        kinds
            .iter()
            .map(|(name, kind)| ColumnFile {
                name: (*name).into(),
                kind: *kind,
            })
            .collect()
    }

    /// Reals compared by their bits: -0.0 is not 0.0 here.
    fn bits(values: &[Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| match v {
                Value::Real(Some(r)) => format!("real {:#x}", r.to_bits()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_value_reads_back_from_its_line_bit_for_bit() {
        let cols = columns(&[
            ("i", Kind::Int),
            ("r", Kind::Real),
            ("t", Kind::Text),
            ("b", Kind::Bool),
        ]);
        let reals = [
            0.1,
            -0.0,
            59.3366,
            18.0612,
            1e-300,
            f64::MIN_POSITIVE / 3.0,
            f64::MAX,
            -123456789.98765433,
            1.0,
        ];
        let texts = [
            "",
            "Åsa Öberg \"the one\" \\ back",
            "line\nbreak\ttab\u{0}nul\u{7f}\u{2028}",
            "🚨 emoji",
        ];
        let ints = [i64::MIN, -1, 0, 1, i64::MAX];
        let mut rows = vec![vec![
            Value::Int(None),
            Value::Real(None),
            Value::Text(None),
            Value::Bool(None),
        ]];
        for (n, r) in reals.iter().enumerate() {
            rows.push(vec![
                Value::Int(Some(ints[n % ints.len()])),
                Value::Real(Some(*r)),
                Value::Text(Some(texts[n % texts.len()].into())),
                Value::Bool(Some(n % 2 == 0)),
            ]);
        }
        for row in rows {
            let line = to_line(&cols, &row).unwrap();
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line}"
            );
            let back = from_line(&cols, &line).unwrap();
            assert_eq!(bits(&back), bits(&row), "{line}");
            assert_eq!(to_line(&cols, &back).unwrap(), line);
        }
    }

    #[test]
    fn a_real_json_cannot_hold_is_refused_rather_than_written_as_null() {
        let cols = columns(&[("lat", Kind::Real)]);
        for r in [f64::NAN, f64::INFINITY] {
            let e = to_line(&cols, &[Value::Real(Some(r))]).unwrap_err();
            assert!(e.contains("lat"), "{e}");
        }
    }

    #[test]
    fn a_line_with_a_missing_extra_or_mistyped_column_is_refused_naming_it() {
        let cols = columns(&[("id", Kind::Int), ("name", Kind::Text)]);
        let cases = [
            (r#"{"id":1}"#, "name"),
            (r#"{"id":1,"name":"a","x":2}"#, "x"),
            (r#"{"id":"1","name":"a"}"#, "id"),
            (r#"{"id":1.5,"name":"a"}"#, "id"),
            (r#"{"id":1,"name":7}"#, "name"),
        ];
        for (line, named) in cases {
            let e = from_line(&cols, line).unwrap_err();
            assert!(e.contains(named), "{line}: {e}");
        }
        let real = columns(&[("lat", Kind::Real)]);
        assert!(from_line(&real, r#"{"lat":"59.3"}"#).is_err());
        assert!(from_line(&real, r#"{"lat":true}"#).is_err());
    }

    #[test]
    fn the_manifest_digest_changes_with_any_field_of_the_table_list() {
        let table = TableFile {
            table: "cases".into(),
            file: "cases.jsonl".into(),
            rows: 3,
            sha256: "ab".into(),
            columns: columns(&[("id", Kind::Text)]),
        };
        let digest = tables_digest(std::slice::from_ref(&table));
        let changed = TableFile {
            rows: 2,
            ..table.clone()
        };
        assert_ne!(tables_digest(&[changed]), digest);
        assert_eq!(tables_digest(&[table]), digest);
    }

    #[tokio::test]
    async fn the_list_of_tables_to_move_is_the_migrated_schema_in_foreign_key_order() {
        let store = super::super::SqliteStore::connect(
            "sqlite::memory:",
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        super::super::Store::migrate(&store).await.unwrap();
        let catalogue = store.dialect.catalogue(&mut *store.pool()).await.unwrap();
        let ordered = checked(catalogue).expect("the list matches the schema");
        let names: Vec<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, TABLES);
        let alerts = ordered.iter().find(|t| t.name == "alerts").unwrap();
        assert_eq!(alerts.primary_key, ["id"]);
        let messages = ordered
            .iter()
            .find(|t| t.name == "device_messages")
            .unwrap();
        assert_eq!(messages.primary_key, ["device_id", "boot", "seq"]);
        let devices = ordered.iter().find(|t| t.name == "devices").unwrap();
        assert_eq!(devices.references, ["cases", "persons"]);
    }

    #[test]
    fn a_table_missing_from_the_list_or_listed_out_of_order_stops_the_move() {
        let shape = |name: &str, refs: &[&str]| TableShape {
            name: name.into(),
            columns: vec![super::super::dialect::ColumnShape {
                name: "id".into(),
                kind: Some(Kind::Int),
                declared: "INTEGER".into(),
                narrow_int: false,
            }],
            primary_key: vec!["id".into()],
            references: refs.iter().map(|r| (*r).into()).collect(),
            generated_key: None,
        };
        let mut catalogue: Vec<TableShape> = TABLES.iter().map(|t| shape(t, &[])).collect();
        catalogue.push(shape("evidence", &[]));
        let e = checked(catalogue.clone()).unwrap_err().to_string();
        assert!(e.contains("evidence"), "{e}");
        catalogue.pop();
        catalogue[0] = shape("users", &["risk_assessments"]);
        let e = checked(catalogue).unwrap_err().to_string();
        assert!(e.contains("users refers to risk_assessments"), "{e}");
    }
}
