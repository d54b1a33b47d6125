//! Login throttling: guessing gets slower and slower, and nobody can lock a colleague out.
//!
//! Two counters slow a login attempt. One per username *and* client address: the real user
//! at another desk is never slowed by a guesser elsewhere. One per client address alone,
//! much looser, for someone trying many usernames from one place. Both grow delays
//! (doubling per failure, capped at a minute or fifteen seconds) rather than block: an
//! attacker gets one guess per delay, the duty officer who mistyped waits seconds. Behind a
//! reverse proxy that is not in `trusted_proxies`, every login seems to come from the
//! proxy's address: then the per-address counter slows the whole centre by at most fifteen
//! seconds an attempt, and never locks it out (docs/operations.md says how to set it).
//!
//! An attempt counts as failed from the moment it starts and is forgiven when it succeeds,
//! so a burst of concurrent guesses cannot all slip through before the first one fails.
//! The counters live in the database (`LoginStore`), shared by every instance: a guesser
//! gets no more tries from two instances than from one. The rule ([`pace`]) is pure; the
//! [`Throttle`] reads the counters, asks the rule, and writes back only if no attempt on any
//! instance counted in between, else it reads and decides again.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::Millis;
use crate::store::{FailureCount, LoginCounters, LoginKey, LoginStore, StoreError};

/// How many failures each counter forgives before it starts to slow, the first delay, and
/// the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub free: u32,
    pub first_delay_ms: Millis,
    pub max_delay_ms: Millis,
}

impl Pace {
    /// The wait before the next attempt after `failures` failures in a row.
    pub fn delay_after(&self, failures: u32) -> Millis {
        if failures < self.free {
            return 0;
        }
        let doublings = (failures - self.free).min(32);
        self.first_delay_ms
            .saturating_mul(1 << doublings)
            .min(self.max_delay_ms)
    }
}

/// One username at one address: five free tries, then 1 s, 2 s, 4 s … up to a minute.
pub const PER_USER_AND_ADDRESS: Pace = Pace {
    free: 5,
    first_delay_ms: 1_000,
    max_delay_ms: 60_000,
};

/// One address, whatever the username: thirty free, then 1 s, 2 s … up to 15 s. Looser
/// because a whole alarm centre may share one address.
pub const PER_ADDRESS: Pace = Pace {
    free: 30,
    first_delay_ms: 1_000,
    max_delay_ms: 15_000,
};

/// A counter with no failure for this long starts again from nothing.
pub const FORGET_AFTER_MS: Millis = 15 * 60 * 1000;

/// How often an instance sweeps the forgotten counters out of the database.
const SWEEP_EVERY_MS: Millis = 60 * 1000;

/// Usernames are cut to this length in the key, so a guesser cannot fill the table with
/// megabyte-long names.
const NAME_KEY_LEN: usize = 128;

/// How many times an attempt decides again after losing a race with other attempts on the
/// same counters, before it is answered as slowed.
const RACES: usize = 10;

/// The attempt must wait this long; answered as 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Millis);

impl Wait {
    /// Whole seconds, rounded up, as `Retry-After` wants them.
    pub fn seconds(&self) -> u64 {
        ((self.0 + 999) / 1000).max(1) as u64
    }
}

/// The counters of `username` at `address`, the username cut to its key length.
pub fn key<'a>(username: &'a str, address: &'a str) -> LoginKey<'a> {
    let cut = username
        .char_indices()
        .nth(NAME_KEY_LEN)
        .map_or(username.len(), |(i, _)| i);
    LoginKey {
        username: &username[..cut],
        address,
    }
}

/// A counter as it stands at `now`: one quiet for a quarter of an hour starts afresh.
fn current(counter: Option<FailureCount>, now: Millis) -> FailureCount {
    counter
        .filter(|c| now - c.last_failure_at < FORGET_AFTER_MS)
        .unwrap_or_default()
}

/// Milliseconds still to wait at `now` under `pace`, or 0.
fn wait(counter: FailureCount, pace: Pace, now: Millis) -> Millis {
    if counter.failures == 0 {
        return 0;
    }
    (counter.last_failure_at + pace.delay_after(counter.failures) - now).max(0)
}

/// The rule: an attempt at `now` against the counters as stored is refused with the time
/// to wait, or let through with both counters counting it as a failure (the user's and the
/// address's, in that order).
pub fn pace(seen: &LoginCounters, now: Millis) -> Result<(FailureCount, FailureCount), Wait> {
    let user = current(seen.user_at_address, now);
    let address = current(seen.address, now);
    let wait = wait(user, PER_USER_AND_ADDRESS, now).max(wait(address, PER_ADDRESS, now));
    if wait > 0 {
        return Err(Wait(wait));
    }
    let counted = |c: FailureCount| FailureCount {
        failures: c.failures.saturating_add(1),
        last_failure_at: now,
    };
    Ok((counted(user), counted(address)))
}

/// Carries the rule out against the counters in the database.
#[derive(Default)]
pub struct Throttle {
    last_sweep: AtomicI64,
}

impl Throttle {
    /// Starts a login attempt of `username` from `address` (empty when unknown): refused
    /// with the time to wait, or counted as a failure until [`Throttle::succeeded`].
    pub async fn attempt<S: LoginStore + ?Sized>(
        &self,
        store: &S,
        username: &str,
        address: &str,
        now: Millis,
    ) -> Result<Result<(), Wait>, StoreError> {
        self.sweep(store, now).await;
        let key = key(username, address);
        for _ in 0..RACES {
            let seen = store.login_counters(&key).await?;
            let (user, address) = match pace(&seen, now) {
                Ok(counted) => counted,
                Err(wait) => return Ok(Err(wait)),
            };
            if store
                .count_login_failure(&key, &seen, user, address)
                .await?
            {
                return Ok(Ok(()));
            }
        }
        // Many attempts on these very counters at this very moment: a guesser's burst.
        Ok(Err(Wait(PER_USER_AND_ADDRESS.first_delay_ms)))
    }

    /// The attempt was right: this user at this address starts afresh, and the address is
    /// forgiven the attempt.
    pub async fn succeeded<S: LoginStore + ?Sized>(
        &self,
        store: &S,
        username: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        store.login_succeeded(&key(username, address)).await
    }

    /// Forgotten counters leave the table, by one instance about once a minute.
    async fn sweep<S: LoginStore + ?Sized>(&self, store: &S, now: Millis) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY_MS
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = store.forget_login_failures(now - FORGET_AFTER_MS).await {
            tracing::warn!(error = %e, "cannot sweep forgotten login failures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    fn counters(user: Option<(u32, Millis)>, address: Option<(u32, Millis)>) -> LoginCounters {
        let c = |(failures, last_failure_at)| FailureCount {
            failures,
            last_failure_at,
        };
        LoginCounters {
            user_at_address: user.map(c),
            address: address.map(c),
        }
    }

    #[test]
    fn delays_double_per_failure_after_the_free_ones_and_stop_growing_at_the_cap() {
        let p = PER_USER_AND_ADDRESS;
        assert_eq!(p.delay_after(0), 0);
        assert_eq!(p.delay_after(4), 0);
        assert_eq!(p.delay_after(5), 1_000);
        assert_eq!(p.delay_after(6), 2_000);
        assert_eq!(p.delay_after(8), 8_000);
        assert_eq!(p.delay_after(11), 60_000);
        assert_eq!(p.delay_after(u32::MAX), 60_000);
    }

    #[test]
    fn an_attempt_counts_on_both_counters_and_the_sixth_in_a_row_waits_a_second() {
        let counted = |n: u32| FailureCount {
            failures: n,
            last_failure_at: T0,
        };
        assert_eq!(
            pace(&LoginCounters::default(), T0),
            Ok((counted(1), counted(1)))
        );
        let five = counters(Some((5, T0)), Some((5, T0)));
        assert_eq!(pace(&five, T0 + 400), Err(Wait(600)));
        assert_eq!(
            pace(&five, T0 + 1_000),
            Ok((
                FailureCount {
                    failures: 6,
                    last_failure_at: T0 + 1_000
                },
                FailureCount {
                    failures: 6,
                    last_failure_at: T0 + 1_000
                }
            ))
        );
    }

    #[test]
    fn the_longer_of_the_two_waits_holds() {
        // The user is fresh at this address, but the address has failed forty times.
        let busy_address = counters(None, Some((40, T0)));
        assert_eq!(pace(&busy_address, T0), Err(Wait(15_000)));
        let busy_user = counters(Some((20, T0)), Some((20, T0)));
        assert_eq!(pace(&busy_user, T0), Err(Wait(60_000)));
    }

    #[test]
    fn however_many_failures_the_wait_never_exceeds_the_caps() {
        let worst = counters(Some((u32::MAX, T0)), Some((u32::MAX, T0)));
        assert_eq!(pace(&worst, T0), Err(Wait(60_000)));
        assert!(pace(&worst, T0 + 60_000).is_ok(), "a delay, not a lock-out");
        let address_only = counters(None, Some((u32::MAX, T0)));
        assert!(pace(&address_only, T0 + 15_000).is_ok());
    }

    #[test]
    fn counters_are_forgotten_after_a_quiet_quarter_of_an_hour() {
        let five = counters(Some((5, T0)), Some((5, T0)));
        assert!(pace(&five, T0).is_err());
        let (user, address) = pace(&five, T0 + FORGET_AFTER_MS).unwrap();
        assert_eq!((user.failures, address.failures), (1, 1));
    }

    #[test]
    fn a_very_long_username_is_kept_short_in_the_key() {
        let long = "å".repeat(1_000_000);
        assert_eq!(
            key(&long, "10.0.0.9").username.chars().count(),
            NAME_KEY_LEN
        );
        assert_eq!(key("anna", "10.0.0.9").username, "anna");
    }

    /// A throttle over a fresh SQLite database of its own.
    async fn throttle() -> (Throttle, crate::store::SharedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vakt.db").display());
        let vault = crate::keys::KeyVault::new(&[7; 32]);
        let store = crate::store::open(&url, &vault).await.unwrap();
        (Throttle::default(), store, dir)
    }

    async fn try_login(
        (t, store, _): &(Throttle, crate::store::SharedStore, tempfile::TempDir),
        user: &str,
        address: &str,
        now: Millis,
    ) -> Result<(), Wait> {
        t.attempt(&**store, user, address, now).await.unwrap()
    }

    #[tokio::test]
    async fn after_five_failures_the_next_guess_waits_and_is_allowed_once_the_delay_is_over() {
        let t = throttle().await;
        for i in 0..5 {
            assert_eq!(try_login(&t, "anna", "10.0.0.9", T0).await, Ok(()), "{i}");
        }
        assert_eq!(
            try_login(&t, "anna", "10.0.0.9", T0 + 400).await,
            Err(Wait(600))
        );
        assert_eq!(try_login(&t, "anna", "10.0.0.9", T0 + 1_000).await, Ok(()));
        // Six failures now: two seconds from the last one.
        assert_eq!(
            try_login(&t, "anna", "10.0.0.9", T0 + 2_999).await,
            Err(Wait(1))
        );
        assert_eq!(try_login(&t, "anna", "10.0.0.9", T0 + 3_000).await, Ok(()));
    }

    #[tokio::test]
    async fn a_guesser_elsewhere_never_slows_the_same_user_at_another_address() {
        let t = throttle().await;
        for _ in 0..25 {
            let _ = try_login(&t, "anna", "203.0.113.66", T0).await;
        }
        assert!(try_login(&t, "anna", "203.0.113.66", T0).await.is_err());
        assert_eq!(try_login(&t, "anna", "10.0.0.9", T0).await, Ok(()));
    }

    #[tokio::test]
    async fn a_success_starts_the_user_afresh_and_forgives_the_address_one_failure() {
        let t = throttle().await;
        for _ in 0..5 {
            try_login(&t, "anna", "10.0.0.9", T0).await.unwrap();
        }
        t.0.succeeded(&*t.1, "anna", "10.0.0.9").await.unwrap();
        let seen = t.1.login_counters(&key("anna", "10.0.0.9")).await.unwrap();
        assert_eq!(seen.user_at_address, None);
        assert_eq!(seen.address.unwrap().failures, 4);
        for _ in 0..5 {
            try_login(&t, "anna", "10.0.0.9", T0).await.unwrap();
        }
    }

    #[tokio::test]
    async fn many_usernames_from_one_address_are_slowed_by_seconds_not_locked_out() {
        let t = throttle().await;
        for i in 0..30 {
            assert_eq!(
                try_login(&t, &format!("random-{i}"), "192.0.2.1", T0).await,
                Ok(())
            );
        }
        // Everyone at that address now waits a second, a known user included: a refusal
        // for unknown names only would tell which names exist.
        assert_eq!(
            try_login(&t, "random-30", "192.0.2.1", T0).await,
            Err(Wait(1_000))
        );
        assert_eq!(
            try_login(&t, "anna", "192.0.2.1", T0).await,
            Err(Wait(1_000))
        );
        assert_eq!(try_login(&t, "anna", "192.0.2.1", T0 + 1_000).await, Ok(()));
        t.0.succeeded(&*t.1, "anna", "192.0.2.1").await.unwrap();
        // However long it goes on, the wait stays at most fifteen seconds.
        let mut now = T0 + 1_000;
        for i in 0..60 {
            if let Err(Wait(ms)) = try_login(&t, &format!("more-{i}"), "192.0.2.1", now).await {
                assert!(ms <= 15_000, "{ms}");
                now += ms;
            }
        }
        assert!(try_login(&t, "anna", "192.0.2.1", now + 15_000)
            .await
            .is_ok());
        // Other addresses are not touched.
        assert_eq!(try_login(&t, "anna", "192.0.2.2", T0).await, Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_guesses_count_before_any_of_them_is_answered() {
        let t = std::sync::Arc::new(throttle().await);
        let guesses = (0..30).map(|_| {
            let t = t.clone();
            tokio::spawn(async move { try_login(&t, "anna", "10.0.0.9", T0).await })
        });
        let mut let_through = 0;
        for g in guesses {
            if g.await.unwrap().is_ok() {
                let_through += 1;
            }
        }
        assert_eq!(let_through, 5);
        let seen = t.1.login_counters(&key("anna", "10.0.0.9")).await.unwrap();
        assert_eq!(seen.user_at_address.unwrap().failures, 5, "no count lost");
    }

    #[tokio::test]
    async fn of_two_counts_decided_on_the_same_counters_only_one_lands_and_the_other_decides_again()
    {
        let t = throttle().await;
        let store = &*t.1;
        let key = key("anna", "10.0.0.9");
        // Two attempts read the counters at the same moment and both decide to count.
        let seen = store.login_counters(&key).await.unwrap();
        let (user, address) = pace(&seen, T0).unwrap();
        assert!(store
            .count_login_failure(&key, &seen, user, address)
            .await
            .unwrap());
        assert!(
            !store
                .count_login_failure(&key, &seen, user, address)
                .await
                .unwrap(),
            "the second write would have lost the first count"
        );
        // The throttle's attempt reads again and counts on top.
        try_login(&t, "anna", "10.0.0.9", T0).await.unwrap();
        let seen = store.login_counters(&key).await.unwrap();
        assert_eq!(seen.user_at_address.unwrap().failures, 2);
        assert_eq!(seen.address.unwrap().failures, 2);
    }

    #[tokio::test]
    async fn forgotten_counters_are_swept_out_of_the_database() {
        let t = throttle().await;
        try_login(&t, "anna", "10.0.0.9", T0).await.unwrap();
        // The next attempt a quarter of an hour later, on another key, sweeps the old one.
        try_login(&t, "bo", "10.0.0.8", T0 + FORGET_AFTER_MS + 1)
            .await
            .unwrap();
        let seen = t.1.login_counters(&key("anna", "10.0.0.9")).await.unwrap();
        assert_eq!(seen, LoginCounters::default());
    }
}
