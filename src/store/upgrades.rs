//! The master key in the store, which a SQL migration never sees. Opening a store makes sure
//! the key is the database's own, and runs the one-time upgrades of stored data that need
//! it (the audit chain moved onto keyed links, the device keys and one-time-code secrets an
//! older version stored in the clear sealed): `store::open` runs this right after the
//! migrations, before anything else writes, in one transaction that holds the audit chain;
//! each upgrade is recorded in `data_upgrades` when done and never runs again, so a value in
//! the clear written later is refused when opened rather than sealed at the next start.
//!
//! Replacing the master key (`store::rotate_master_key`, `vakt master-key rotate`) lives
//! here too: every sealed value opened and sealed again, the audit chain re-linked and the
//! fingerprint replaced, in one transaction, with every instance stopped.

use super::db::{query, Tx};
use super::dialect::{Dialect, SqlStore};
use super::{Audit, Result, StoreError};
use crate::audit::Upgrade;
use crate::domain::Millis;
use crate::keys::{is_sealed, KeyVault, SecretOf};
use crate::protocol::DeviceKey;

const AUDIT_CHAIN_KEYED: &str = "audit_chain_keyed";
const SECRETS_SEALED: &str = "secrets_sealed";
const MASTER_KEY_ROTATED: &str = "master_key_rotated";

/// An instance that said it was alive this recently is taken to be running: they say so
/// every second (`mqtt::cluster`), and one that stops cleanly removes its line.
const RUNNING_IF_SEEN_WITHIN_MS: Millis = 10_000;

/// What replacing the master key did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterKeyRotated {
    pub device_keys: u64,
    /// Next keys of devices whose key rotation is under way.
    pub next_device_keys: u64,
    pub totp_secrets: u64,
    /// Audit entries re-linked under the new key, before the rotation's own entry.
    pub audit_entries: u64,
    /// Stored values that did not open under the old key (put in the clear or damaged
    /// behind vakt's back), by where they are: left as they were, as refused under the new
    /// key as under the old one.
    pub not_opened: Vec<String>,
}

impl MasterKeyRotated {
    /// What the audit entry says: counts, never a key.
    fn detail(&self) -> String {
        let mut detail = format!(
            "{} device keys, {} next device keys and {} one-time-code secrets re-sealed and {} audit entries re-linked under a new master key",
            self.device_keys, self.next_device_keys, self.totp_secrets, self.audit_entries
        );
        if !self.not_opened.is_empty() {
            detail += &format!(
                "; {} stored values that did not open under the old key left as they were",
                self.not_opened.len()
            );
        }
        detail
    }
}

/// Why the master key was not replaced; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyRotationError {
    #[error("the new master key is the one in use: nothing to rotate")]
    SameKey,
    #[error("{0}: stop every vakt instance of this deployment before rotating the master key (one running on with the old key would seal and link under it); nothing was changed")]
    InstanceRunning(String),
    #[error("the audit chain is broken at entry {0} under the master key in use (an entry was edited or deleted there), so the master key was not rotated and nothing was changed: look into that entry first (`vakt audit verify`; docs/operations.md, \"The audit chain\"), since re-linking the chain under a new key would vouch for whatever was changed")]
    AuditChainBroken(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
        let (mut device_keys, mut totp_secrets) = (0, 0);
        for secret in stored_secrets(&mut *tx).await? {
            if is_sealed(&secret.stored) {
                continue;
            }
            let sealed = match secret.place.of() {
                SecretOf::Device(id) => {
                    let Some(key) = DeviceKey::from_hex(&secret.stored) else {
                        // Neither sealed nor a key: it stays refused, and says so when opened.
                        tracing::error!(device = %id, "a stored device key is neither sealed nor a key: left as it is");
                        continue;
                    };
                    device_keys += 1;
                    vault.seal(&key, id)
                }
                SecretOf::User(username) => {
                    totp_secrets += 1;
                    vault.seal_totp(&secret.stored, username)
                }
            };
            store_secret(&mut *tx, &secret.place, &sealed).await?;
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

impl<D: Dialect> SqlStore<D> {
    /// Replaces the master key `old`, the one this store was opened with, by `new`, in one
    /// transaction that holds the audit chain: the chain verified under `old` (a broken one
    /// is refused), every sealed value opened and sealed again, the chain re-linked, the
    /// fingerprint replaced and an audit entry `master_key_rotated` appended under `new`.
    /// Any failure rolls all of it back. Every instance must be stopped: this store is of no
    /// further use either (it links under `old`).
    pub(super) async fn rotate_master_key(
        &self,
        old: &KeyVault,
        new: &KeyVault,
        at: Millis,
    ) -> std::result::Result<MasterKeyRotated, MasterKeyRotationError> {
        if old.fingerprint() == new.fingerprint() {
            return Err(MasterKeyRotationError::SameKey);
        }
        let (_one_writer, mut tx) = self.begin_audited().await?;
        check_master_key(&mut *tx, old, at).await?;
        self.refuse_while_running(&mut *tx, at).await?;
        // The chain first: whoever rotates must see a break before the proof is re-keyed.
        let verdict = self
            .rekey_audit_chain(&mut *tx, old.audit_chain_key(), new.audit_chain_key())
            .await?;
        if let Some(id) = verdict.first_broken {
            return Err(MasterKeyRotationError::AuditChainBroken(id));
        }
        let mut done = MasterKeyRotated {
            audit_entries: verdict.entries,
            ..Default::default()
        };
        for secret in stored_secrets(&mut *tx).await? {
            let resealed = match old.reseal(&secret.stored, secret.place.of(), new) {
                Ok(resealed) => resealed,
                Err(e) => {
                    tracing::warn!(error = %e, "left as it was: it does not open under the master key in use");
                    done.not_opened.push(secret.place.to_string());
                    continue;
                }
            };
            store_secret(&mut *tx, &secret.place, &resealed).await?;
            *match secret.place {
                Place::DeviceKey(_) => &mut done.device_keys,
                Place::NextDeviceKey(_) => &mut done.next_device_keys,
                Place::TotpSecret(_) => &mut done.totp_secrets,
            } += 1;
        }
        replace_fingerprint(&mut *tx, new, at).await?;
        let detail = done.detail();
        let entry = Audit::new(None, MASTER_KEY_ROTATED).detail(&detail);
        super::audit::append_linked_under(&mut *tx, new.audit_chain_key(), &entry, at).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(
            device_keys = done.device_keys,
            next_device_keys = done.next_device_keys,
            totp_secrets = done.totp_secrets,
            audit_entries = done.audit_entries,
            "the master key was replaced"
        );
        Ok(done)
    }

    /// Refuses while an instance runs on this database, as far as the database shows it:
    /// the supervision leader's lock (PostgreSQL), or an instance that said it was alive.
    async fn refuse_while_running(
        &self,
        tx: &mut dyn Tx,
        at: Millis,
    ) -> std::result::Result<(), MasterKeyRotationError> {
        if self.dialect.instance_leads(&mut *tx).await? {
            return Err(MasterKeyRotationError::InstanceRunning(
                "a vakt instance leads supervision on this database (it holds the leader's lock)"
                    .into(),
            ));
        }
        let seen = super::instances::seen_since(&mut *tx, at - RUNNING_IF_SEEN_WITHIN_MS).await?;
        if !seen.is_empty() {
            let said: Vec<String> = seen
                .iter()
                .map(|(id, last)| format!("{id} {} s ago", (at - last).max(0) / 1000))
                .collect();
            return Err(MasterKeyRotationError::InstanceRunning(format!(
                "vakt instances said they were alive on this database: {}",
                said.join(", ")
            )));
        }
        Ok(())
    }
}

async fn replace_fingerprint(tx: &mut dyn Tx, vault: &KeyVault, at: Millis) -> Result<()> {
    query("UPDATE master_key_fingerprint SET fingerprint = $1, since = $2 WHERE id = 1")
        .bind(vault.fingerprint())
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}

/// Where a secret sealed under the master key is stored. Every such column is here, so the
/// upgrade that seals them, the check of a key and the rotation to a new one see the same.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    DeviceKey(String),
    /// A device's next key, while a key rotation of the device is under way.
    NextDeviceKey(String),
    TotpSecret(String),
}

impl Place {
    fn of(&self) -> SecretOf<'_> {
        match self {
            Place::DeviceKey(id) | Place::NextDeviceKey(id) => SecretOf::Device(id),
            Place::TotpSecret(username) => SecretOf::User(username),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Place::DeviceKey(id) => write!(f, "the key of device {id}"),
            Place::NextDeviceKey(id) => write!(f, "the next key of device {id}"),
            Place::TotpSecret(username) => write!(f, "the one-time-code secret of user {username}"),
        }
    }
}

struct StoredSecret {
    place: Place,
    stored: String,
}

/// Every device key, next device key and one-time-code secret as stored.
async fn stored_secrets(tx: &mut dyn Tx) -> Result<Vec<StoredSecret>> {
    let mut secrets = Vec::new();
    let devices = query("SELECT id, key_hex, next_key_hex FROM devices ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    for row in &devices {
        let id: String = row.get(0)?;
        secrets.push(StoredSecret {
            place: Place::DeviceKey(id.clone()),
            stored: row.get(1)?,
        });
        if let Some(next) = row.get::<Option<String>>(2)? {
            secrets.push(StoredSecret {
                place: Place::NextDeviceKey(id),
                stored: next,
            });
        }
    }
    let users = query(
        "SELECT username, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY username",
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in &users {
        secrets.push(StoredSecret {
            place: Place::TotpSecret(row.get(0)?),
            stored: row.get(1)?,
        });
    }
    Ok(secrets)
}

async fn store_secret(tx: &mut dyn Tx, place: &Place, value: &str) -> Result<()> {
    let (sql, owner) = match place {
        Place::DeviceKey(id) => ("UPDATE devices SET key_hex = $1 WHERE id = $2", id),
        Place::NextDeviceKey(id) => ("UPDATE devices SET next_key_hex = $1 WHERE id = $2", id),
        Place::TotpSecret(username) => (
            "UPDATE users SET totp_secret = $1 WHERE username = $2",
            username,
        ),
    };
    query(sql).bind(value).bind(owner).execute(tx).await?;
    Ok(())
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
    // The first sealed value of each kind tells: all of a kind are sealed under one key.
    let secrets = stored_secrets(&mut *tx).await?;
    let sealed = |device: bool| {
        secrets
            .iter()
            .find(|s| is_sealed(&s.stored) && matches!(s.place.of(), SecretOf::Device(_)) == device)
    };
    if sealed(true).is_some_and(|s| !vault.opens(&s.stored, s.place.of())) {
        return Err(StoreError::WrongMasterKey(
            "a sealed device key does not open with it",
        ));
    }
    if sealed(false).is_some_and(|s| !vault.opens(&s.stored, s.place.of())) {
        return Err(StoreError::WrongMasterKey(
            "a sealed one-time-code secret does not open with it",
        ));
    }
    query("INSERT INTO master_key_fingerprint (id, fingerprint, since) VALUES (1, $1, $2)")
        .bind(vault.fingerprint())
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}
