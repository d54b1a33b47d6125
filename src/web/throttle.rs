//! Login throttling: guessing gets slower and slower, and nobody can lock a colleague out.
//!
//! Two counters slow a login attempt. One per username *and* client address: the real user
//! at another desk is never slowed by a guesser elsewhere. One per client address alone,
//! much looser, for someone trying many usernames from one place. Both grow delays
//! (doubling per failure, capped at a few seconds or a minute) rather than block: an
//! attacker gets one guess per delay, the duty officer who mistyped waits seconds.
//!
//! An attempt counts as failed from the moment it starts and is forgiven when it succeeds,
//! so a burst of concurrent guesses cannot all slip through before the first one fails.
//! Only the decision lives here; the login handler carries it out.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::Millis;

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

/// Entries kept before the forgotten ones are swept out.
const SWEEP_ABOVE: usize = 100_000;

/// Usernames are cut to this length in the key, so a guesser cannot fill memory with
/// megabyte-long names.
const NAME_KEY_LEN: usize = 128;

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    failures: u32,
    last_failure: Millis,
}

impl Counter {
    fn current(&mut self, now: Millis) -> &mut Counter {
        if now - self.last_failure >= FORGET_AFTER_MS {
            *self = Counter::default();
        }
        self
    }

    /// Milliseconds still to wait at `now`, or 0.
    fn wait(&self, pace: Pace, now: Millis) -> Millis {
        let until = self.last_failure + pace.delay_after(self.failures);
        (until - now).max(0)
    }
}

#[derive(Default)]
struct Counters {
    by_user: HashMap<(String, String), Counter>,
    by_address: HashMap<String, Counter>,
}

/// Failed logins, in memory: a restart forgives everyone, which costs an attacker a
/// restart they cannot cause.
#[derive(Default)]
pub struct Throttle {
    counters: Mutex<Counters>,
}

/// The attempt must wait this long; answered as 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Millis);

impl Wait {
    /// Whole seconds, rounded up, as `Retry-After` wants them.
    pub fn seconds(&self) -> u64 {
        ((self.0 + 999) / 1000).max(1) as u64
    }
}

fn user_key(username: &str, address: &str) -> (String, String) {
    let name: String = username.chars().take(NAME_KEY_LEN).collect();
    (name, address.to_owned())
}

impl Throttle {
    /// Starts a login attempt of `username` from `address` (empty when unknown): refused
    /// with the time to wait, or counted as a failure until [`Throttle::succeeded`].
    pub fn attempt(&self, username: &str, address: &str, now: Millis) -> Result<(), Wait> {
        let mut guard = self.counters.lock().expect("throttle lock");
        let c = &mut *guard;
        if c.by_user.len() + c.by_address.len() > SWEEP_ABOVE {
            c.by_user
                .retain(|_, v| now - v.last_failure < FORGET_AFTER_MS);
            c.by_address
                .retain(|_, v| now - v.last_failure < FORGET_AFTER_MS);
        }
        let key = user_key(username, address);
        let user_wait = c
            .by_user
            .get_mut(&key)
            .map(|v| v.current(now).wait(PER_USER_AND_ADDRESS, now))
            .unwrap_or(0);
        let address_wait = c
            .by_address
            .get_mut(address)
            .map(|v| v.current(now).wait(PER_ADDRESS, now))
            .unwrap_or(0);
        let wait = user_wait.max(address_wait);
        if wait > 0 {
            return Err(Wait(wait));
        }
        for counter in [
            c.by_user.entry(key).or_default(),
            c.by_address.entry(address.to_owned()).or_default(),
        ] {
            let counter = counter.current(now);
            counter.failures += 1;
            counter.last_failure = now;
        }
        Ok(())
    }

    /// The attempt was right: this user at this address starts afresh, and the address is
    /// forgiven the attempt.
    pub fn succeeded(&self, username: &str, address: &str) {
        let mut c = self.counters.lock().expect("throttle lock");
        c.by_user.remove(&user_key(username, address));
        if let Some(counter) = c.by_address.get_mut(address) {
            counter.failures = counter.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    /// Fails `n` attempts at `now`, each of which must be let through.
    fn fail(t: &Throttle, user: &str, address: &str, n: u32, now: Millis) {
        for i in 0..n {
            assert_eq!(t.attempt(user, address, now), Ok(()), "attempt {i}");
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
    fn after_five_failures_the_next_guess_waits_and_is_allowed_once_the_delay_is_over() {
        let t = Throttle::default();
        fail(&t, "anna", "10.0.0.9", 5, T0);
        assert_eq!(t.attempt("anna", "10.0.0.9", T0 + 400), Err(Wait(600)));
        assert_eq!(t.attempt("anna", "10.0.0.9", T0 + 1_000), Ok(()));
        // Six failures now: two seconds from the last one.
        assert_eq!(t.attempt("anna", "10.0.0.9", T0 + 2_999), Err(Wait(1)));
        assert_eq!(t.attempt("anna", "10.0.0.9", T0 + 3_000), Ok(()));
    }

    #[test]
    fn a_guesser_elsewhere_never_slows_the_same_user_at_another_address() {
        let t = Throttle::default();
        fail(&t, "anna", "203.0.113.66", 5, T0);
        for _ in 0..20 {
            let _ = t.attempt("anna", "203.0.113.66", T0);
        }
        assert_eq!(t.attempt("anna", "10.0.0.9", T0), Ok(()));
        t.succeeded("anna", "10.0.0.9");
    }

    #[test]
    fn a_hundred_failures_still_only_delay_by_the_cap_and_never_block_for_good() {
        let t = Throttle::default();
        let mut now = T0;
        for _ in 0..100 {
            match t.attempt("anna", "10.0.0.9", now) {
                Ok(()) => {}
                Err(Wait(ms)) => {
                    assert!(ms <= 60_000, "{ms}");
                    now += ms;
                    assert_eq!(t.attempt("anna", "10.0.0.9", now), Ok(()));
                }
            }
        }
        let wait = t.attempt("anna", "10.0.0.9", now).unwrap_err();
        assert_eq!(wait, Wait(60_000));
        assert_eq!(wait.seconds(), 60);
    }

    #[test]
    fn a_success_starts_the_user_afresh() {
        let t = Throttle::default();
        fail(&t, "anna", "10.0.0.9", 4, T0);
        fail(&t, "anna", "10.0.0.9", 1, T0);
        t.succeeded("anna", "10.0.0.9");
        fail(&t, "anna", "10.0.0.9", 5, T0);
    }

    #[test]
    fn counters_are_forgotten_after_a_quiet_quarter_of_an_hour() {
        let t = Throttle::default();
        fail(&t, "anna", "10.0.0.9", 5, T0);
        assert!(t.attempt("anna", "10.0.0.9", T0).is_err());
        fail(&t, "anna", "10.0.0.9", 5, T0 + FORGET_AFTER_MS);
    }

    #[test]
    fn many_usernames_from_one_address_are_slowed_by_seconds_not_locked_out() {
        let t = Throttle::default();
        for i in 0..30 {
            assert_eq!(t.attempt(&format!("random-{i}"), "192.0.2.1", T0), Ok(()));
        }
        // Everyone at that address now waits a second, a known user included: a refusal
        // for unknown names only would tell which names exist.
        assert_eq!(t.attempt("random-30", "192.0.2.1", T0), Err(Wait(1_000)));
        assert_eq!(t.attempt("anna", "192.0.2.1", T0), Err(Wait(1_000)));
        assert_eq!(t.attempt("anna", "192.0.2.1", T0 + 1_000), Ok(()));
        t.succeeded("anna", "192.0.2.1");
        // However long it goes on, the wait stays at most fifteen seconds.
        let mut now = T0 + 1_000;
        for i in 0..200 {
            if let Err(Wait(ms)) = t.attempt(&format!("more-{i}"), "192.0.2.1", now) {
                assert!(ms <= 15_000, "{ms}");
                now += ms;
            }
        }
        assert!(t.attempt("anna", "192.0.2.1", now + 15_000).is_ok());
        // Other addresses are not touched.
        assert_eq!(t.attempt("anna", "192.0.2.2", T0), Ok(()));
    }

    #[test]
    fn concurrent_guesses_count_before_any_of_them_is_answered() {
        let t = Throttle::default();
        let let_through = (0..50)
            .filter(|_| t.attempt("anna", "10.0.0.9", T0).is_ok())
            .count();
        assert_eq!(let_through, 5);
    }

    #[test]
    fn a_very_long_username_is_kept_short_in_the_key() {
        let t = Throttle::default();
        let long = "x".repeat(1_000_000);
        fail(&t, &long, "10.0.0.9", 5, T0);
        let c = t.counters.lock().unwrap();
        assert!(c.by_user.keys().all(|(n, _)| n.len() <= NAME_KEY_LEN));
    }
}
