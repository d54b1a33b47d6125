//! Silence: the heartbeat interval the backend holds a device to, how long it may stay
//! quiet before it counts as silent, and how often a silent device is brought up again.

use crate::domain::{Millis, Reason};

/// A reminder on a silence alert every 15 minutes while the device stays silent.
pub const REMINDER_EVERY_MS: Millis = 15 * 60 * 1000;

/// The interval a device is held to: the coordinator's setting, else the one the device
/// announced in its last `hello`, else the configured default.
pub fn effective_interval_s(coordinator: Option<u32>, hello: Option<u32>, default_s: u32) -> u32 {
    coordinator.or(hello).unwrap_or(default_s)
}

/// How long after its last message a device is silent: `2 × interval + grace` (two missed
/// heartbeats, plus the supervision class's allowance for a slow network).
pub fn silence_window(interval: Millis, grace: Millis) -> Millis {
    2 * interval + grace
}

/// When a device's silence is counted from: its last message, but a device heard before
/// the backend started gets a whole deadline from the start (nobody is declared silent for
/// the time the backend itself was down), and one never heard counts from now.
pub fn counted_from(last_heard: Option<Millis>, started: Millis, now: Millis) -> Millis {
    last_heard.unwrap_or(now).max(started)
}

/// The history note of the `n`th reminder on a silence alert.
pub fn still_silent(n: u32) -> Reason {
    let minutes = n * (REMINDER_EVERY_MS / 60_000) as u32;
    Reason::new(
        "still_silent",
        format!("still silent: reminder {n} ({minutes} min)"),
    )
    .with("n", n)
    .with("minutes", minutes)
}

/// The history note of a silent device heard again long enough to count as back.
pub fn heard_again() -> Reason {
    Reason::new("heard_again", "heard again for two heartbeat intervals")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinators_interval_wins_over_the_hello_which_wins_over_the_default() {
        #[rustfmt::skip]
        let table: &[(&str, Option<u32>, Option<u32>, u32)] = &[
            ("set by a coordinator", Some(30), Some(120), 30),
            ("set by a coordinator, no hello yet", Some(30), None, 30),
            ("announced in hello", None, Some(120), 120),
            ("neither: the default", None, None, 60),
        ];
        for (name, coordinator, hello, want) in table {
            assert_eq!(
                effective_interval_s(*coordinator, *hello, 60),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_device_is_silent_after_twice_its_interval_plus_grace() {
        #[rustfmt::skip]
        let table: &[(Millis, Millis, Millis)] = &[
            (60_000, 30_000, 150_000),
            (2_000, 1_000, 5_000),
            (60_000, 0, 120_000),
        ];
        for (interval, grace, window) in table {
            assert_eq!(
                silence_window(*interval, *grace),
                *window,
                "{interval} + {grace}"
            );
        }
    }

    #[test]
    fn silence_counts_from_the_last_message_but_never_from_before_the_backend_started() {
        const STARTED: Millis = 1_000_000;
        const NOW: Millis = 1_005_000;
        #[rustfmt::skip]
        let table: &[(&str, Option<Millis>, Millis)] = &[
            ("heard since the start", Some(1_002_000), 1_002_000),
            ("heard before the start", Some(10), STARTED),
            ("never heard", None, NOW),
        ];
        for (name, last_heard, want) in table {
            assert_eq!(counted_from(*last_heard, STARTED, NOW), *want, "{name}");
        }
    }

    #[test]
    fn a_reminder_says_how_long_the_device_has_been_silent_in_whole_reminder_periods() {
        let note = still_silent(2);
        assert_eq!(note.text, "still silent: reminder 2 (30 min)");
        assert_eq!(note.code, "still_silent");
    }
}
