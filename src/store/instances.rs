//! The instances sharing a store: who is alive, who leads supervision, and which broker
//! sessions they hold.

use async_trait::async_trait;

use super::db::{query, Conn};
use super::dialect::{Dialect, SqlStore};
use super::{Leadership, Result};
use crate::domain::Millis;

#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// This instance (its MQTT client id) is alive; `leading` when it leads supervision.
    async fn instance_alive(&self, client_id: &str, leading: bool, at: Millis) -> Result<()>;
    /// Other instances not seen since `before`, and the one that was last marked leading.
    async fn stale_instances(&self, client_id: &str, before: Millis)
        -> Result<Vec<(String, bool)>>;
    async fn forget_instance(&self, client_id: &str) -> Result<()>;
    /// Who leads supervision among the instances sharing this store.
    fn leadership(&self) -> Box<dyn Leadership>;
    /// Whether the broker has held a persistent session for this MQTT client id (noted at
    /// the first subscription), so that a connection finding none has lost it.
    async fn broker_session_noted(&self, client_id: &str) -> Result<bool>;
    async fn note_broker_session(&self, client_id: &str, at: Millis) -> Result<()>;
    /// The session was ended on purpose: the next connection under this id starts afresh.
    async fn forget_broker_session(&self, client_id: &str) -> Result<()>;
    /// Tells the other instances that a case or device changed (`what`: `case:ID` or
    /// `device:ID`), once it is committed, so their directories read it again; nothing
    /// where this process is the only one.
    async fn announce_directory_change(&self, what: &str) -> Result<()>;
    /// What any instance (this one too) announced so; `None` where this process is the
    /// only one. `*` after a lost connection: something may have been missed.
    fn directory_changes_from_elsewhere(&self) -> Option<tokio::sync::mpsc::Receiver<String>>;
}

#[async_trait]
impl<D: Dialect> InstanceStore for SqlStore<D> {
    async fn announce_directory_change(&self, what: &str) -> Result<()> {
        self.dialect.announce_directory(what).await
    }

    fn directory_changes_from_elsewhere(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.dialect.listen_for_directory()
    }

    async fn instance_alive(&self, client_id: &str, leading: bool, at: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        query(
            "INSERT INTO instances (client_id, last_seen, is_leader) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET last_seen = excluded.last_seen, is_leader = excluded.is_leader",
        )
        .bind(client_id)
        .bind(at)
        .bind(leading)
        .execute(&mut *tx)
        .await?;
        if leading {
            query("UPDATE instances SET is_leader = FALSE WHERE client_id <> $1 AND is_leader")
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stale_instances(
        &self,
        client_id: &str,
        before: Millis,
    ) -> Result<Vec<(String, bool)>> {
        let rows = query(
            "SELECT client_id, is_leader FROM instances WHERE client_id <> $1 AND (last_seen < $2 OR is_leader)",
        )
        .bind(client_id)
        .bind(before)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
    }

    async fn forget_instance(&self, client_id: &str) -> Result<()> {
        query("DELETE FROM instances WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *self.pool())
            .await?;
        Ok(())
    }

    fn leadership(&self) -> Box<dyn Leadership> {
        self.dialect.leadership()
    }

    async fn broker_session_noted(&self, client_id: &str) -> Result<bool> {
        let row = query("SELECT client_id FROM broker_sessions WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&mut *self.pool())
            .await?;
        Ok(row.is_some())
    }

    async fn note_broker_session(&self, client_id: &str, at: Millis) -> Result<()> {
        query(
            "INSERT INTO broker_sessions (client_id, since) VALUES ($1, $2) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client_id)
        .bind(at)
        .execute(&mut *self.pool())
        .await?;
        Ok(())
    }

    async fn forget_broker_session(&self, client_id: &str) -> Result<()> {
        query("DELETE FROM broker_sessions WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *self.pool())
            .await?;
        Ok(())
    }
}

/// The instances that said they were alive at `since` or later, and when they last did
/// (they say so every second, see `mqtt::cluster`).
pub(super) async fn seen_since(
    conn: &mut dyn Conn,
    since: Millis,
) -> Result<Vec<(String, Millis)>> {
    let rows = query(
        "SELECT client_id, last_seen FROM instances WHERE last_seen >= $1 ORDER BY client_id",
    )
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.get(0)?, row.get(1)?)))
        .collect()
}
