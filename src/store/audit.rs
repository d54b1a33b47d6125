//! The audit log (a chain of keyed links, see `crate::audit`) and the security events.
//! The chain is linked under one key at a time: re-linking it under another (the upgrade to
//! keyed links, a new master key) happens here, whole, in the caller's transaction.

use async_trait::async_trait;

use super::db::{query, Conn, Query, Tx};
use super::dialect::{conflict_on_unique, Dialect, SqlStore};
use super::{Audit, AuditEntry, AuditFilter, Result, SecurityEvent};
use crate::domain::{rfc3339, Millis};

#[async_trait]
pub trait AuditStore: Send + Sync {
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
    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// Recomputes the audit chain's links from the first entry, under the key.
    async fn verify_audit(&self) -> Result<crate::audit::Verdict>;
}

impl<D: Dialect> SqlStore<D> {
    /// Begins a transaction that extends the audit chain. One writer at a time extends it:
    /// in this process by the mutex (always taken before the database's write lock), across
    /// instances by the dialect's lock taken inside the transaction.
    pub(super) async fn begin_audited(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Box<dyn Tx>)> {
        let one_writer = self.audit_lock.lock().await;
        let mut tx = self.begin_write().await?;
        self.dialect.lock_audit_chain(&mut *tx).await?;
        Ok((one_writer, tx))
    }

    /// Makes one change and writes its audit entry in the same transaction; a unique or
    /// foreign-key violation is a `Conflict` saying `what`. How many rows it changed.
    pub(super) async fn execute_audited(
        &self,
        change: Query,
        what: &str,
        audit: &Audit<'_>,
        at: Millis,
    ) -> Result<u64> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let done = change
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, what))?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Appends `entry` to the audit chain in a transaction from `begin_audited`: it commits
    /// with the change it records, or neither does.
    pub(super) async fn append_audit(
        &self,
        tx: &mut dyn Tx,
        entry: &Audit<'_>,
        at: Millis,
    ) -> Result<()> {
        append_linked_under(tx, self.chain_key()?, entry, at).await
    }
}

/// Appends `entry` linked under `key`: the store's own key, or, in the transaction that
/// replaces the master key, the new one.
pub(super) async fn append_linked_under(
    tx: &mut dyn Tx,
    key: &crate::audit::ChainKey,
    entry: &Audit<'_>,
    at: Millis,
) -> Result<()> {
    let record = entry.record(at);
    let prev: Option<String> = match query("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?
    {
        Some(row) => Some(row.get(0)?),
        None => None,
    };
    let prev = prev.unwrap_or_else(|| crate::audit::GENESIS.to_owned());
    let hash = crate::audit::entry_link(key, &prev, &record);
    query(
        "INSERT INTO audit_log (at, actor, action, subject, case_id, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.at)
    .bind(record.actor)
    .bind(record.action)
    .bind(record.subject)
    .bind(record.case_id)
    .bind(record.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Dialect> AuditStore for SqlStore<D> {
    async fn security_events(&self, limit: i64) -> Result<Vec<SecurityEvent>> {
        let rows = query(
            "SELECT id, at, device_id, kind, detail FROM security_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SecurityEvent {
                    id: row.get(0)?,
                    at: rfc3339(row.get(1)?),
                    device_id: row.get(2)?,
                    kind: row.get(3)?,
                    detail: row.get(4)?,
                })
            })
            .collect()
    }

    async fn security_event(
        &self,
        device_id: Option<&str>,
        kind: &str,
        detail: &str,
        at: Millis,
    ) -> Result<()> {
        query("INSERT INTO security_events (at, device_id, kind, detail) VALUES ($1, $2, $3, $4)")
            .bind(at)
            .bind(device_id)
            .bind(kind)
            .bind(detail)
            .execute(&mut *self.pool())
            .await?;
        Ok(())
    }

    async fn audit(
        &self,
        actor: Option<&str>,
        action: &str,
        subject: Option<&str>,
        case_id: Option<&str>,
        detail: Option<&str>,
        at: Millis,
    ) -> Result<()> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let entry = Audit {
            actor,
            action,
            subject,
            case_id,
            detail,
        };
        self.append_audit(&mut *tx, &entry, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let rows = query(
            "SELECT id, at, actor, action, subject, case_id, detail FROM audit_log \
             WHERE ($1 IS NULL OR case_id = $1) AND ($2 IS NULL OR actor = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) ORDER BY id DESC LIMIT $5",
        )
        .bind(&filter.case_id)
        .bind(&filter.actor)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.limit)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.get(0)?,
                    at: rfc3339(row.get(1)?),
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    subject: row.get(4)?,
                    case_id: row.get(5)?,
                    detail: row.get(6)?,
                })
            })
            .collect()
    }

    async fn verify_audit(&self) -> Result<crate::audit::Verdict> {
        let key = self.chain_key()?;
        let entries = chain_entries(&mut *self.pool()).await?;
        Ok(crate::audit::verify(
            key,
            entries.iter().map(ChainEntry::row),
        ))
    }
}

/// An audit entry as the chain sees it: its id, its links and its fields.
pub(super) struct ChainEntry {
    id: i64,
    at: Millis,
    actor: Option<String>,
    action: String,
    subject: Option<String>,
    case_id: Option<String>,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

impl ChainEntry {
    fn record(&self) -> crate::audit::Record<'_> {
        crate::audit::Record {
            at: self.at,
            actor: self.actor.as_deref(),
            action: &self.action,
            subject: self.subject.as_deref(),
            case_id: self.case_id.as_deref(),
            detail: self.detail.as_deref(),
        }
    }

    fn row(&self) -> (i64, &str, &str, crate::audit::Record<'_>) {
        (self.id, &self.prev_hash, &self.hash, self.record())
    }
}

/// The whole chain in id order.
async fn chain_entries(conn: &mut dyn Conn) -> Result<Vec<ChainEntry>> {
    let rows = query(
        "SELECT id, at, actor, action, subject, case_id, detail, prev_hash, hash FROM audit_log ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ChainEntry {
                id: row.get(0)?,
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                subject: row.get(4)?,
                case_id: row.get(5)?,
                detail: row.get(6)?,
                prev_hash: row.get(7)?,
                hash: row.get(8)?,
            })
        })
        .collect()
}

impl<D: Dialect> SqlStore<D> {
    /// Moves a chain written before it was keyed onto keyed links, in a transaction from
    /// `begin_audited`: all of it, or, when its plain links do not hold, none of it.
    pub(super) async fn key_audit_chain(&self, tx: &mut dyn Tx) -> Result<crate::audit::Upgrade> {
        use crate::audit::{upgrade, verify, verify_plain, Upgrade};
        let key = self.chain_key()?;
        let entries = chain_entries(&mut *tx).await?;
        let decided = upgrade(
            &verify(key, entries.iter().map(ChainEntry::row)),
            &verify_plain(entries.iter().map(ChainEntry::row)),
        );
        if decided == Upgrade::Relink {
            write_links(&mut *tx, key, &entries).await?;
        }
        Ok(decided)
    }

    /// Moves the whole chain from the links under `old` to links under `new`, in a
    /// transaction from `begin_audited`, for a new master key: only when every link holds
    /// under `old`, else nothing is written (re-linking would vouch for whatever was
    /// changed). The chain's verdict under `old`.
    pub(super) async fn rekey_audit_chain(
        &self,
        tx: &mut dyn Tx,
        old: &crate::audit::ChainKey,
        new: &crate::audit::ChainKey,
    ) -> Result<crate::audit::Verdict> {
        let entries = chain_entries(&mut *tx).await?;
        let verdict = crate::audit::verify(old, entries.iter().map(ChainEntry::row));
        if verdict.first_broken.is_none() {
            write_links(&mut *tx, new, &entries).await?;
        }
        Ok(verdict)
    }
}

/// Rewrites the links of `entries` (the whole chain, in id order) as links under `key`.
async fn write_links(
    tx: &mut dyn Tx,
    key: &crate::audit::ChainKey,
    entries: &[ChainEntry],
) -> Result<()> {
    let links = crate::audit::relink(key, entries.iter().map(|e| (e.id, e.record())));
    for (id, prev, hash) in links {
        query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3")
            .bind(prev)
            .bind(hash)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
