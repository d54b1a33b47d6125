//! Users, their sessions and API tokens.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::db::{query, Row, Rows};
use super::dialect::{corrupt, Dialect, SqlStore};
use super::{Audit, Result, Role, StoreError, User};
use crate::domain::Millis;

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn insert_user(&self, user: &User, at: Millis, audit: &Audit<'_>) -> Result<()>;
    /// Creates the user or replaces its role, region and password (demo and admin resets).
    async fn upsert_user(&self, user: &User, at: Millis) -> Result<()>;
    async fn user(&self, username: &str) -> Result<User>;
    /// Takes a one-time-code time step for a login: false when this user has logged in
    /// with this step or a later one already (on any instance).
    async fn claim_totp_step(&self, username: &str, step: i64) -> Result<bool>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn insert_session(&self, token_hash: &str, username: &str, at: Millis) -> Result<()>;
    /// The session's user, if the session exists and was used after `idle_since`; touches it.
    async fn session_user(
        &self,
        token_hash: &str,
        idle_since: Millis,
        created_since: Millis,
        at: Millis,
    ) -> Result<Option<User>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// When the session was created and last used, if it exists; does not touch it, so a
    /// live stream that asks is not taken for use.
    async fn session_times(&self, token_hash: &str) -> Result<Option<(Millis, Millis)>>;
    /// [`UserStore::session_times`] of many sessions in one read (the live streams' shared
    /// check): the sessions that exist, by hash; the others are gone.
    async fn sessions_times(
        &self,
        token_hashes: &[String],
    ) -> Result<HashMap<String, (Millis, Millis)>>;
    /// Which of these API tokens are still stored, with their user: the live streams'
    /// shared check, in one read.
    async fn tokens_held(&self, token_hashes: &[String]) -> Result<HashSet<String>>;
    async fn insert_api_token(
        &self,
        token_hash: &str,
        username: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<()>;
    async fn token_user(&self, token_hash: &str) -> Result<Option<User>>;
    /// Replaces a secret the user logs in with and ends every session of the user but
    /// `keep_session` (the caller's own, when users change their own password), in the
    /// transaction of the audit entry: whoever held the old secret keeps no way in. The
    /// hashes of the sessions ended, for their live streams.
    async fn set_user_secret(
        &self,
        username: &str,
        secret: UserSecret<'_>,
        keep_session: Option<&str>,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>>;
    /// Removes every API token of the user, audited; the hashes removed.
    async fn delete_api_tokens(
        &self,
        username: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>>;
    /// When each of the user's API tokens was created, oldest first.
    async fn api_token_times(&self, username: &str) -> Result<Vec<Millis>>;
}

/// A secret a user logs in with, as stored.
#[derive(Debug, Clone, Copy)]
pub enum UserSecret<'a> {
    /// An argon2id hash.
    PasswordHash(&'a str),
    /// A one-time-code secret sealed under the master key. The codes already used were
    /// codes of the old secret: the record of the last one used goes with it.
    SealedTotp(&'a str),
}

/// Hashes asked for in one statement: well under SQLite's limit of bound values (on
/// PostgreSQL they are one array).
const HASHES_PER_READ: usize = 500;

fn user_from(row: &Row) -> Result<User> {
    Ok(User {
        username: row.get("username")?,
        role: Role::parse(&row.get::<String>("role")?).ok_or_else(|| corrupt("role"))?,
        region: row.get("region")?,
        password_hash: row.get("password_hash")?,
        totp_secret: row.get("totp_secret")?,
    })
}

#[async_trait]
impl<D: Dialect> UserStore for SqlStore<D> {
    async fn insert_user(&self, u: &User, at: Millis, audit: &Audit<'_>) -> Result<()> {
        let change = query(
            "INSERT INTO users (username, role, region, password_hash, totp_secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.username)
        .bind(u.role.as_str())
        .bind(&u.region)
        .bind(&u.password_hash)
        .bind(&u.totp_secret)
        .bind(at);
        self.execute_audited(change, "a user with that name exists", audit, at)
            .await?;
        Ok(())
    }

    async fn upsert_user(&self, u: &User, at: Millis) -> Result<()> {
        query(
            "INSERT INTO users (username, role, region, password_hash, totp_secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO UPDATE SET role = excluded.role, \
             region = excluded.region, password_hash = excluded.password_hash, totp_secret = excluded.totp_secret",
        )
        .bind(&u.username)
        .bind(u.role.as_str())
        .bind(&u.region)
        .bind(&u.password_hash)
        .bind(&u.totp_secret)
        .bind(at)
        .execute(&mut *self.pool())
        .await?;
        Ok(())
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = query("SELECT * FROM users ORDER BY username")
            .fetch_all(&mut *self.pool())
            .await?;
        rows.iter().map(user_from).collect()
    }

    async fn user(&self, username: &str) -> Result<User> {
        let row = query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from(&row)
    }

    async fn claim_totp_step(&self, username: &str, step: i64) -> Result<bool> {
        let done = query(
            "UPDATE users SET totp_last_step = $1 WHERE username = $2 \
             AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(username)
        .execute(&mut *self.pool())
        .await?;
        Ok(done == 1)
    }

    async fn insert_session(&self, token_hash: &str, username: &str, at: Millis) -> Result<()> {
        query(
            "INSERT INTO sessions (token_hash, username, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(token_hash)
        .bind(username)
        .bind(at)
        .execute(&mut *self.pool())
        .await?;
        Ok(())
    }

    async fn session_user(
        &self,
        token_hash: &str,
        idle_since: Millis,
        created_since: Millis,
        at: Millis,
    ) -> Result<Option<User>> {
        let touched = query(
            "UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2 AND last_seen_at >= $3 AND created_at >= $4",
        )
        .bind(at)
        .bind(token_hash)
        .bind(idle_since)
        .bind(created_since)
        .execute(&mut *self.pool())
        .await?;
        if touched == 0 {
            return Ok(None);
        }
        let row = query(
            "SELECT u.* FROM users u JOIN sessions s ON s.username = u.username WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *self.pool())
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *self.pool())
            .await?;
        Ok(())
    }

    async fn session_times(&self, token_hash: &str) -> Result<Option<(Millis, Millis)>> {
        let row = query("SELECT created_at, last_seen_at FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *self.pool())
            .await?;
        Ok(match row {
            Some(row) => Some((row.get(0)?, row.get(1)?)),
            None => None,
        })
    }

    async fn sessions_times(
        &self,
        token_hashes: &[String],
    ) -> Result<HashMap<String, (Millis, Millis)>> {
        let mut found = HashMap::new();
        for chunk in token_hashes.chunks(HASHES_PER_READ) {
            let read = self
                .dialect
                .with_rows(Rows::new("asked").texts("hash", chunk.iter().cloned()))
                .then(
                    "SELECT token_hash, created_at, last_seen_at FROM sessions \
                     WHERE token_hash IN (SELECT hash FROM asked)",
                );
            for row in read.fetch_all(&mut *self.pool()).await? {
                found.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
            }
        }
        Ok(found)
    }

    async fn tokens_held(&self, token_hashes: &[String]) -> Result<HashSet<String>> {
        let mut held = HashSet::new();
        for chunk in token_hashes.chunks(HASHES_PER_READ) {
            let read = self
                .dialect
                .with_rows(Rows::new("asked").texts("hash", chunk.iter().cloned()))
                .then(
                    "SELECT t.token_hash FROM api_tokens t JOIN users u ON u.username = t.username \
                     WHERE t.token_hash IN (SELECT hash FROM asked)",
                );
            for row in read.fetch_all(&mut *self.pool()).await? {
                held.insert(row.get(0)?);
            }
        }
        Ok(held)
    }

    async fn insert_api_token(
        &self,
        token_hash: &str,
        username: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let change =
            query("INSERT INTO api_tokens (token_hash, username, created_at) VALUES ($1, $2, $3)")
                .bind(token_hash)
                .bind(username)
                .bind(at);
        self.execute_audited(change, "token", audit, at).await?;
        Ok(())
    }

    async fn token_user(&self, token_hash: &str) -> Result<Option<User>> {
        let row = query(
            "SELECT u.* FROM users u JOIN api_tokens t ON t.username = u.username WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *self.pool())
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_user_secret(
        &self,
        username: &str,
        secret: UserSecret<'_>,
        keep_session: Option<&str>,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>> {
        let change = match secret {
            UserSecret::PasswordHash(hash) => {
                query("UPDATE users SET password_hash = $1 WHERE username = $2").bind(hash)
            }
            UserSecret::SealedTotp(sealed) => query(
                "UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE username = $2",
            )
            .bind(sealed),
        };
        let (_one_writer, mut tx) = self.begin_audited().await?;
        if change.bind(username).execute(&mut *tx).await? == 0 {
            return Err(StoreError::NotFound);
        }
        // No session token hashes to the empty text: without one to keep, all end.
        let ended = query(
            "DELETE FROM sessions WHERE username = $1 AND token_hash <> $2 RETURNING token_hash",
        )
        .bind(username)
        .bind(keep_session.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        ended.iter().map(|row| Ok(row.get(0)?)).collect()
    }

    async fn delete_api_tokens(
        &self,
        username: &str,
        at: Millis,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>> {
        let (_one_writer, mut tx) = self.begin_audited().await?;
        let removed = query("DELETE FROM api_tokens WHERE username = $1 RETURNING token_hash")
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
        self.append_audit(&mut *tx, audit, at).await?;
        tx.commit().await?;
        removed.iter().map(|row| Ok(row.get(0)?)).collect()
    }

    async fn api_token_times(&self, username: &str) -> Result<Vec<Millis>> {
        let rows = query(
            "SELECT created_at FROM api_tokens WHERE username = $1 ORDER BY created_at, token_hash",
        )
        .bind(username)
        .fetch_all(&mut *self.pool())
        .await?;
        rows.iter().map(|row| Ok(row.get(0)?)).collect()
    }
}
