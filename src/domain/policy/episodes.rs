//! Episodes: a condition that lasts (a low battery, a forger, a bad connection) raises its
//! alert once, or at a measured pace, not once per message that shows it.

use super::PolicyConfig;
use crate::domain::Millis;

/// A device's low battery as its heartbeats report it: one alert per episode, not one update
/// per heartbeat. The episode ends with the first heartbeat at or above the threshold, or
/// charging.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LowBatteryEpisode {
    raised: bool,
}

impl LowBatteryEpisode {
    /// Notes a heartbeat; true when it starts an episode (the alert is due).
    pub fn note(&mut self, policy: &PolicyConfig, battery: u8, charging: bool) -> bool {
        let low = !charging && battery < policy.low_battery_pct;
        let starts = low && !self.raised;
        self.raised = low;
        starts
    }
}

/// A device's missing messages over the policy's window: one technical alert per episode,
/// not one per lost message. An episode ends once a whole window passes with none missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MissingEpisode {
    /// When seqs were found missing and how many, a minute to an entry.
    recent: std::collections::VecDeque<(Millis, u64)>,
    raised: bool,
}

impl MissingEpisode {
    /// Notes `missing` seqs found at `at` (0 too: time passes); the count within the window
    /// when it has just reached the threshold and this episode has had no alert yet.
    pub fn note(&mut self, policy: &PolicyConfig, at: Millis, missing: u64) -> Option<u64> {
        const MINUTE: Millis = 60_000;
        if missing > 0 {
            match self.recent.back_mut() {
                Some((t, n)) if *t / MINUTE == at / MINUTE => *n += missing,
                _ => self.recent.push_back((at, missing)),
            }
        }
        let window_ms = policy.messages_missing_window_s as Millis * 1000;
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| at - t >= window_ms)
        {
            self.recent.pop_front();
        }
        let count: u64 = self.recent.iter().map(|(_, n)| n).sum();
        if count == 0 {
            self.raised = false;
            return None;
        }
        if count >= policy.messages_missing_count && !self.raised {
            self.raised = true;
            return Some(count);
        }
        None
    }
}

/// The "repeated bad signatures" alert is written and pushed to the consoles at most this
/// often per device: a forger flooding one topic costs a store write every few seconds, not
/// one per message.
pub const BAD_SIGNATURE_ALERT_EVERY_MS: Millis = 5_000;

/// A device's bad signatures: the alert once the policy's threshold is reached within its
/// window, then at most every `BAD_SIGNATURE_ALERT_EVERY_MS`, each raise counting every bad
/// signature since the one before (none is lost between two raises).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BadSignatureTally {
    /// The latest bad signatures, at most the threshold's worth (enough to tell whether it
    /// is reached within the window; a flood holds no more).
    recent: std::collections::VecDeque<Millis>,
    /// Bad signatures not yet counted in a raise.
    unreported: u32,
    last_raised: Option<Millis>,
}

impl BadSignatureTally {
    /// Notes a bad signature at `at`; the count to raise (or update) the alert with, if due.
    pub fn note(&mut self, policy: &PolicyConfig, at: Millis) -> Option<u32> {
        let window_ms = policy.bad_signature_window_s as Millis * 1000;
        while self.recent.front().is_some_and(|t| at - t > window_ms) {
            self.recent.pop_front();
        }
        if self.recent.is_empty() && self.last_raised.is_none_or(|t| at - t > window_ms) {
            // A quiet window ends the episode: old strays do not add up with new ones.
            self.unreported = 0;
        }
        self.recent.push_back(at);
        while self.recent.len() > policy.bad_signature_count.max(1) as usize {
            self.recent.pop_front();
        }
        self.unreported = self.unreported.saturating_add(1);
        let reached = self.recent.len() >= policy.bad_signature_count as usize;
        let due = self
            .last_raised
            .is_none_or(|t| at - t >= BAD_SIGNATURE_ALERT_EVERY_MS);
        if !(reached && due) {
            return None;
        }
        self.recent.clear();
        self.last_raised = Some(at);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat's battery and charging, and whether the alert is due.
    type Heartbeat = (u8, bool, bool);

    #[test]
    fn a_low_battery_raises_once_per_episode_and_again_after_it_ends() {
        let policy = PolicyConfig::default();
        #[rustfmt::skip]
        let table: &[(&str, &[Heartbeat])] = &[
            ("a full battery raises nothing", &[(80, false, false), (15, false, false)]),
            ("the first low heartbeat raises", &[(14, false, true)]),
            ("the next low ones do not", &[(14, false, true), (12, false, false), (9, false, false)]),
            ("charging ends the episode, the next dip raises again",
                &[(14, false, true), (14, true, false), (13, false, true)]),
            ("a recovered battery ends it too", &[(14, false, true), (15, false, false), (14, false, true)]),
            ("a low battery while charging raises nothing", &[(5, true, false)]),
        ];
        for (name, heartbeats) in table {
            let mut episode = LowBatteryEpisode::default();
            let got: Vec<bool> = heartbeats
                .iter()
                .map(|&(batt, chg, _)| episode.note(&policy, batt, chg))
                .collect();
            let want: Vec<bool> = heartbeats.iter().map(|h| h.2).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    /// Minutes since the start, seqs found missing then, the alert due with this count.
    type Step = (Millis, u64, Option<u64>);

    #[test]
    fn missing_messages_raise_one_alert_per_episode() {
        let policy = PolicyConfig::default();
        const MIN: Millis = 60_000;
        #[rustfmt::skip]
        let table: &[(&str, &[Step])] = &[
            ("a few lost messages raise nothing",
                &[(0, 5, None), (10, 5, None), (20, 9, None)]),
            ("the threshold within the hour raises once",
                &[(0, 10, None), (30, 10, Some(20)), (40, 5, None), (50, 30, None)]),
            ("one big gap reaches it at once",
                &[(0, 36, Some(36))]),
            ("losses spread over more than an hour never add up",
                &[(0, 15, None), (61, 15, None), (122, 15, None)]),
            ("the episode lasts while messages keep going missing",
                &[(0, 20, Some(20)), (50, 1, None), (100, 20, None), (150, 20, None)]),
            ("an hour without loss ends the episode, and a new one raises again",
                &[(0, 20, Some(20)), (60, 0, None), (61, 20, Some(20))]),
        ];
        for (name, steps) in table {
            let mut episode = MissingEpisode::default();
            let got: Vec<Option<u64>> = steps
                .iter()
                .map(|&(min, n, _)| episode.note(&policy, min * MIN, n))
                .collect();
            let want: Vec<Option<u64>> = steps.iter().map(|s| s.2).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn three_bad_signatures_within_the_window_raise_the_alert_with_their_count() {
        let policy = PolicyConfig::default();
        let mut tally = BadSignatureTally::default();
        assert_eq!(tally.note(&policy, 0), None);
        assert_eq!(tally.note(&policy, 60_000), None);
        assert_eq!(tally.note(&policy, 120_000), Some(3));
        // Strays further apart than the window never add up.
        let mut strays = BadSignatureTally::default();
        for i in 0..10 {
            assert_eq!(strays.note(&policy, i * 601_000), None);
        }
    }

    #[test]
    fn a_flood_of_bad_signatures_updates_the_alert_every_few_seconds_with_every_one_counted() {
        let policy = PolicyConfig::default();
        let mut tally = BadSignatureTally::default();
        // 100,000 bad signatures over 10 s, one every 100 µs (at ms resolution: 10 a ms).
        let raised: Vec<u32> = (0..100_000)
            .filter_map(|i| tally.note(&policy, i / 10))
            .collect();
        assert_eq!(raised.len(), 2, "{raised:?}");
        assert_eq!(raised[0], 3);
        // The rest are counted into the next raise once it is due, none lost.
        assert_eq!(
            tally.note(&policy, 10_000 + BAD_SIGNATURE_ALERT_EVERY_MS),
            Some(100_000 + 1 - raised.iter().sum::<u32>())
        );
    }
}
