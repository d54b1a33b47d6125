//! What opening a store does with the master key, which a SQL migration never sees: it
//! makes sure the key is the database's own, and runs the one-time upgrades of stored data
//! that need it (the audit chain moved onto keyed links, the device keys and one-time-code
//! secrets an older version stored in the clear sealed). `store::open` runs this right after
//! the migrations, before anything else writes, in one transaction that holds the audit
//! chain; each upgrade is recorded in `data_upgrades` when done and never runs again, so a
//! value in the clear written later is refused when opened rather than sealed at the next
//! start.

use super::db::{query, Tx};
use super::dialect::{Dialect, SqlStore};
use super::{Audit, Result, StoreError};
use crate::audit::Upgrade;
use crate::domain::Millis;
use crate::keys::{is_sealed, KeyVault};
use crate::protocol::DeviceKey;

const AUDIT_CHAIN_KEYED: &str = "audit_chain_keyed";
const SECRETS_SEALED: &str = "secrets_sealed";

impl<D: Dialect> SqlStore<D> {
    /// Runs the upgrades not done yet. Several instances starting at once take turns on the
    /// audit chain's lock; the later ones find them done.
    pub(super) async fn upgrade_with_keys(&self, vault: &KeyVault, at: Millis) -> Result<()> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        check_master_key(&mut *tx, vault, at).await?;
        let done: Vec<String> = query("SELECT name FROM data_upgrades")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect::<sqlx::Result<_>>()?;
        let done = |name: &str| done.iter().any(|d| d == name);
        if !done(AUDIT_CHAIN_KEYED) {
            self.upgrade_audit_chain(&mut *tx, at).await?;
            record(&mut *tx, AUDIT_CHAIN_KEYED, at).await?;
        }
        if !done(SECRETS_SEALED) {
            self.seal_secrets(&mut *tx, vault, at).await?;
            record(&mut *tx, SECRETS_SEALED, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Re-links a chain written before keying under the key, and says so in the chain; a
    /// chain whose plain links do not hold is left as it is, and that is said instead.
    async fn upgrade_audit_chain(&self, tx: &mut dyn Tx, at: Millis) -> Result<()> {
        match self.key_audit_chain(&mut *tx).await? {
            Upgrade::Empty | Upgrade::AlreadyKeyed => {}
            Upgrade::Relink => {
                let entries: i64 = query("SELECT COUNT(*) FROM audit_log")
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0)?;
                tracing::info!(
                    entries,
                    "the audit chain is now linked under the key derived from the master key"
                );
                let detail = format!(
                    "{entries} entries written before the chain was keyed verified and re-linked under the master key"
                );
                let entry = Audit::new(None, AUDIT_CHAIN_KEYED).detail(&detail);
                self.append_audit(&mut *tx, &entry, at).await?;
            }
            Upgrade::Broken(id) => {
                tracing::error!(
                    entry = id,
                    "the audit chain written before keying is broken at this entry (edited or deleted there): it is left as it was, not re-linked under the key; `vakt audit verify` reports where it breaks"
                );
                let detail = format!(
                    "the chain written before keying is broken at entry {id}: left as it was, not re-linked"
                );
                let entry = Audit::new(None, "audit_chain_not_keyed").detail(&detail);
                self.append_audit(&mut *tx, &entry, at).await?;
            }
        }
        Ok(())
    }

    /// Seals every device key, next device key and one-time-code secret still in the clear.
    async fn seal_secrets(&self, tx: &mut dyn Tx, vault: &KeyVault, at: Millis) -> Result<()> {
        let mut device_keys = 0;
        let devices = query("SELECT id, key_hex, next_key_hex FROM devices")
            .fetch_all(&mut *tx)
            .await?;
        for row in &devices {
            let id: String = row.get(0)?;
            for (column, stored) in [
                ("key_hex", Some(row.get::<String>(1)?)),
                ("next_key_hex", row.get::<Option<String>>(2)?),
            ] {
                let Some(plain) = stored.filter(|s| !is_sealed(s)) else {
                    continue;
                };
                let Some(key) = DeviceKey::from_hex(&plain) else {
                    // Neither sealed nor a key: it stays refused, and says so when opened.
                    tracing::error!(device = %id, column, "a stored device key is neither sealed nor a key: left as it is");
                    continue;
                };
                let sql = match column {
                    "key_hex" => "UPDATE devices SET key_hex = $1 WHERE id = $2",
                    _ => "UPDATE devices SET next_key_hex = $1 WHERE id = $2",
                };
                query(sql)
                    .bind(vault.seal(&key, &id))
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                device_keys += 1;
            }
        }
        let mut totp_secrets = 0;
        let users = query("SELECT username, totp_secret FROM users WHERE totp_secret IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
        for row in &users {
            let (username, stored): (String, String) = (row.get(0)?, row.get(1)?);
            if is_sealed(&stored) {
                continue;
            }
            query("UPDATE users SET totp_secret = $1 WHERE username = $2")
                .bind(vault.seal_totp(&stored, &username))
                .bind(&username)
                .execute(&mut *tx)
                .await?;
            totp_secrets += 1;
        }
        if device_keys + totp_secrets > 0 {
            tracing::info!(
                device_keys,
                totp_secrets,
                "sealed secrets an older version stored in the clear"
            );
            let detail = format!(
                "{device_keys} device keys and {totp_secrets} one-time-code secrets stored in the clear sealed under the master key"
            );
            let entry = Audit::new(None, SECRETS_SEALED).detail(&detail);
            self.append_audit(&mut *tx, &entry, at).await?;
        }
        Ok(())
    }
}

async fn record(tx: &mut dyn Tx, name: &str, at: Millis) -> Result<()> {
    query("INSERT INTO data_upgrades (name, done_at) VALUES ($1, $2)")
        .bind(name)
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}

/// Refuses a master key other than the one the database knows. A database that knows none
/// yet (a new one, or one from an older version) learns this one, unless a value it holds
/// sealed does not open with it: sealing the rest and re-linking the chain under a wrong
/// key would leave a deployment no instance can run.
async fn check_master_key(tx: &mut dyn Tx, vault: &KeyVault, at: Millis) -> Result<()> {
    let known = query("SELECT fingerprint FROM master_key_fingerprint WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = known {
        return match row.get::<String>(0)? == vault.fingerprint() {
            true => Ok(()),
            false => Err(StoreError::WrongMasterKey("the database knows another one")),
        };
    }
    let devices = query("SELECT id, key_hex FROM devices")
        .fetch_all(&mut *tx)
        .await?;
    for row in &devices {
        let (id, stored): (String, String) = (row.get(0)?, row.get(1)?);
        if is_sealed(&stored) {
            if vault.open(&stored, &id).is_err() {
                return Err(StoreError::WrongMasterKey(
                    "a sealed device key does not open with it",
                ));
            }
            break;
        }
    }
    let users = query("SELECT username, totp_secret FROM users WHERE totp_secret IS NOT NULL")
        .fetch_all(&mut *tx)
        .await?;
    for row in &users {
        let (username, stored): (String, String) = (row.get(0)?, row.get(1)?);
        if is_sealed(&stored) {
            if vault.open_totp(&stored, &username).is_err() {
                return Err(StoreError::WrongMasterKey(
                    "a sealed one-time-code secret does not open with it",
                ));
            }
            break;
        }
    }
    query("INSERT INTO master_key_fingerprint (id, fingerprint, since) VALUES (1, $1, $2)")
        .bind(vault.fingerprint())
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}
