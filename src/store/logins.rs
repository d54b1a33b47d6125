//! Failed logins, counted in the database so that every instance slows the same guesser.
//! Only counters and times live here; how long an attempt waits is the throttle's rule
//! (`web::throttle`).

use async_trait::async_trait;

use super::db::{query, Conn, Row};
use super::dialect::{Dialect, SqlStore};
use super::Result;
use crate::domain::Millis;

/// Whose failures an attempt counts: one username at one client address (empty when the
/// address is unknown), and that address whatever the username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginKey<'a> {
    pub username: &'a str,
    pub address: &'a str,
}

/// One counter as stored: failures in a row, and when the last one was counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: u32,
    pub last_failure_at: Millis,
}

/// Both counters of an attempt; `None`: nothing counted (or swept out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCounters {
    pub user_at_address: Option<FailureCount>,
    pub address: Option<FailureCount>,
}

#[async_trait]
pub trait LoginStore: Send + Sync {
    async fn login_counters(&self, key: &LoginKey<'_>) -> Result<LoginCounters>;
    /// Stores both counters of an attempt, in one transaction, if they are still as `seen`:
    /// false, and nothing written, when another attempt (on any instance) counted in
    /// between, so that no count is lost and the caller decides again on the new counters.
    async fn count_login_failure(
        &self,
        key: &LoginKey<'_>,
        seen: &LoginCounters,
        user_at_address: FailureCount,
        address: FailureCount,
    ) -> Result<bool>;
    /// The user at the address starts afresh; the address is forgiven one failure.
    async fn login_succeeded(&self, key: &LoginKey<'_>) -> Result<()>;
    /// Sweeps out the counters whose last failure was before `before`; how many.
    async fn forget_login_failures(&self, before: Millis) -> Result<u64>;
}

const USER_AT_ADDRESS: &str = "user_at_address";
const ADDRESS: &str = "address";

/// The stored key of each counter: the per-address one has no username.
fn rows_of<'a>(key: &LoginKey<'a>) -> [(&'static str, &'a str); 2] {
    [(USER_AT_ADDRESS, key.username), (ADDRESS, "")]
}

fn count_from(row: &Row) -> Result<FailureCount> {
    Ok(FailureCount {
        failures: u32::try_from(row.get::<i64>("failures")?).unwrap_or(u32::MAX),
        last_failure_at: row.get("last_failure_at")?,
    })
}

async fn counter(
    conn: &mut dyn Conn,
    scope: &str,
    address: &str,
    username: &str,
) -> Result<Option<FailureCount>> {
    query(
        "SELECT failures, last_failure_at FROM login_failures \
         WHERE scope = $1 AND address = $2 AND username = $3",
    )
    .bind(scope)
    .bind(address)
    .bind(username)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(count_from)
    .transpose()
}

#[async_trait]
impl<D: Dialect> LoginStore for SqlStore<D> {
    async fn login_counters(&self, key: &LoginKey<'_>) -> Result<LoginCounters> {
        let [(user_scope, username), (address_scope, none)] = rows_of(key);
        let mut pool = self.pool();
        Ok(LoginCounters {
            user_at_address: counter(&mut *pool, user_scope, key.address, username).await?,
            address: counter(&mut *pool, address_scope, key.address, none).await?,
        })
    }

    async fn count_login_failure(
        &self,
        key: &LoginKey<'_>,
        seen: &LoginCounters,
        user_at_address: FailureCount,
        address: FailureCount,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let writes = rows_of(key)
            .into_iter()
            .zip([seen.user_at_address, seen.address])
            .zip([user_at_address, address]);
        for (((scope, username), seen), new) in writes {
            // An atomic compare-and-set: the row is written only if it is still what the
            // caller decided on (a counter that did not exist matches no row, -1).
            let (seen_failures, seen_at) =
                seen.map_or((-1, -1), |c| (i64::from(c.failures), c.last_failure_at));
            let written = query(
                "INSERT INTO login_failures (scope, address, username, failures, last_failure_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, address, username) DO UPDATE \
                 SET failures = excluded.failures, last_failure_at = excluded.last_failure_at \
                 WHERE login_failures.failures = $6 AND login_failures.last_failure_at = $7",
            )
            .bind(scope)
            .bind(key.address)
            .bind(username)
            .bind(i64::from(new.failures))
            .bind(new.last_failure_at)
            .bind(seen_failures)
            .bind(seen_at)
            .execute(&mut *tx)
            .await?;
            if written != 1 {
                // Dropped without commit: the other counter's write is undone too.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn login_succeeded(&self, key: &LoginKey<'_>) -> Result<()> {
        let mut pool = self.pool();
        query("DELETE FROM login_failures WHERE scope = $1 AND address = $2 AND username = $3")
            .bind(USER_AT_ADDRESS)
            .bind(key.address)
            .bind(key.username)
            .execute(&mut *pool)
            .await?;
        query(
            "UPDATE login_failures SET failures = failures - 1 \
             WHERE scope = $1 AND address = $2 AND username = '' AND failures > 0",
        )
        .bind(ADDRESS)
        .bind(key.address)
        .execute(&mut *pool)
        .await?;
        Ok(())
    }

    async fn forget_login_failures(&self, before: Millis) -> Result<u64> {
        Ok(
            query("DELETE FROM login_failures WHERE last_failure_at < $1")
                .bind(before)
                .execute(&mut *self.pool())
                .await?,
        )
    }
}
