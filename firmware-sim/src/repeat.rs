//! The alarms a device still owes the backend and when each goes out again: protocol v1's repetition rule, without IO.
//!
//! A broker's PUBACK only says the broker has a message; it can still lose it.
//! The signed `received` on the device's `ack` topic is the only proof that an
//! alarm is stored, so a device sends every alarm again, byte for byte, until
//! that arrives: 5 s after the first send, 10 s after that, 20 s after that,
//! then every 30 s, for as long as it runs and across reconnects. It holds at
//! least its last 16 unanswered alarms.
//!
//! [`Repeats`] is that bookkeeping and nothing else: the caller tells it what
//! it sent, what was answered and when it reconnected, and asks it what is
//! due. A device maker can read it as the reference for the rule.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The pause before the first, second and third repeat; after that, [`REPEAT_EVERY`].
pub const REPEAT_AFTER: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
];

/// The pause between repeats from the fourth on, for as long as the device runs.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// The fewest unanswered alarms a device must keep repeating.
pub const KEEP_UNANSWERED: usize = 16;

/// The pause after the send that was repeat number `repeats` (0: the first send).
pub fn pause_after(repeats: u32) -> Duration {
    REPEAT_AFTER
        .get(repeats as usize)
        .copied()
        .unwrap_or(REPEAT_EVERY)
}

/// One alarm the backend has not answered yet, exactly as it went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub boot: u32,
    pub seq: u32,
    pub topic: String,
    /// The bytes of the first send; every repeat sends these again.
    pub payload: Vec<u8>,
    pub first_sent: Instant,
    /// Sends after the first.
    pub repeats: u32,
    /// When it goes out again.
    pub next_at: Instant,
}

/// A device's unanswered alarms, oldest first.
#[derive(Debug, Clone)]
pub struct Repeats {
    pending: VecDeque<Unanswered>,
    keep: usize,
    dropped: u64,
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats::new(KEEP_UNANSWERED)
    }
}

impl Repeats {
    /// Holds up to `keep` unanswered alarms (at least 1); the protocol asks for at least
    /// [`KEEP_UNANSWERED`].
    pub fn new(keep: usize) -> Self {
        Repeats {
            pending: VecDeque::new(),
            keep: keep.max(1),
            dropped: 0,
        }
    }

    /// How many unanswered alarms it holds at most.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Changes the bound; past it, the oldest are dropped at once.
    pub fn set_keep(&mut self, keep: usize) -> Vec<Unanswered> {
        self.keep = keep.max(1);
        self.trim()
    }

    /// An alarm went out for the first time at `now`. Returns the alarms dropped
    /// to make room: the oldest, once more than `keep` are unanswered.
    ///
    /// Sending the same `(boot, seq)` again (a crafted duplicate) keeps the first
    /// send's bytes and schedule.
    pub fn sent(
        &mut self,
        boot: u32,
        seq: u32,
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        now: Instant,
    ) -> Vec<Unanswered> {
        if self.position(boot, seq).is_some() {
            return Vec::new();
        }
        self.pending.push_back(Unanswered {
            boot,
            seq,
            topic: topic.into(),
            payload: payload.into(),
            first_sent: now,
            repeats: 0,
            next_at: now + pause_after(0),
        });
        self.trim()
    }

    /// The backend answered `(boot, seq)`: no more repeats. Returns the alarm
    /// when it was still held; an answer for one it no longer holds changes nothing.
    pub fn received(&mut self, boot: u32, seq: u32) -> Option<Unanswered> {
        let at = self.position(boot, seq)?;
        self.pending.remove(at)
    }

    /// The alarms to send again at `now`, oldest first; each is counted as
    /// repeated and its next repeat scheduled.
    pub fn due(&mut self, now: Instant) -> Vec<Unanswered> {
        let mut due = Vec::new();
        for alarm in self.pending.iter_mut().filter(|a| a.next_at <= now) {
            alarm.repeats += 1;
            alarm.next_at = now + pause_after(alarm.repeats);
            due.push(alarm.clone());
        }
        due
    }

    /// The connection came back at `now`: every unanswered alarm is due at once
    /// (one may have been lost with the connection), and then keeps its schedule.
    pub fn reconnected(&mut self, now: Instant) {
        for alarm in &mut self.pending {
            alarm.next_at = alarm.next_at.min(now);
        }
    }

    /// When the next repeat is due, if any alarm is unanswered.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|a| a.next_at).min()
    }

    /// The unanswered alarms, oldest first.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &Unanswered> {
        self.pending.iter()
    }

    /// Alarms given up unanswered because newer ones took their place.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn position(&self, boot: u32, seq: u32) -> Option<usize> {
        self.pending
            .iter()
            .position(|a| (a.boot, a.seq) == (boot, seq))
    }

    fn trim(&mut self) -> Vec<Unanswered> {
        let excess = self.pending.len().saturating_sub(self.keep);
        self.dropped += excess as u64;
        self.pending.drain(..excess).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "vakt/v1/dev/dev-001/alarm";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn seqs(alarms: &[Unanswered]) -> Vec<u32> {
        alarms.iter().map(|a| a.seq).collect()
    }

    /// Steps through time one second at a time and notes the second of every repeat.
    fn repeat_times(repeats: &mut Repeats, start: Instant, until_s: u64) -> Vec<u64> {
        (1..=until_s)
            .filter(|s| !repeats.due(start + secs(*s)).is_empty())
            .collect()
    }

    #[test]
    fn an_alarm_is_repeated_after_5_10_20_then_every_30_seconds() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(3, 7, TOPIC, b"alarm".to_vec(), t0);

        let times = repeat_times(&mut repeats, t0, 200);

        assert_eq!(times, [5, 15, 35, 65, 95, 125, 155, 185]);
    }

    #[test]
    fn a_repeat_is_the_first_send_byte_for_byte() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        let bytes = br#"{"boot":3,"kind":"panic","seq":7,"ts":1,"mac":"ab"}"#.to_vec();
        repeats.sent(3, 7, TOPIC, bytes.clone(), t0);

        let due = repeats.due(t0 + secs(5));

        assert_eq!(due.len(), 1);
        assert_eq!((due[0].topic.as_str(), &due[0].payload), (TOPIC, &bytes));
        assert_eq!((due[0].boot, due[0].seq, due[0].repeats), (3, 7, 1));
    }

    #[test]
    fn nothing_is_due_before_5_seconds() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(1, 0, TOPIC, b"a".to_vec(), t0);

        assert!(repeats.due(t0 + Duration::from_millis(4_999)).is_empty());
        assert_eq!(repeats.next_due(), Some(t0 + secs(5)));
    }

    #[test]
    fn a_received_stops_the_repeats() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(1, 0, TOPIC, b"a".to_vec(), t0);
        repeats.sent(1, 1, TOPIC, b"b".to_vec(), t0);

        let answered = repeats.received(1, 0).unwrap();

        assert_eq!((answered.seq, answered.first_sent), (0, t0));
        assert_eq!(seqs(&repeats.due(t0 + secs(600))), [1]);
        assert_eq!(repeats.pending().len(), 1);
    }

    #[test]
    fn a_received_for_an_alarm_not_held_changes_nothing() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(2, 5, TOPIC, b"a".to_vec(), t0);

        assert_eq!(repeats.received(2, 6), None);
        assert_eq!(repeats.received(1, 5), None);
        assert_eq!(repeats.received(2, 5).map(|a| a.seq), Some(5));
        assert_eq!(repeats.received(2, 5), None);
        assert_eq!(repeats.pending().len(), 0);
        assert_eq!(repeats.next_due(), None);
    }

    #[test]
    fn the_oldest_is_dropped_past_16_unanswered() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        for seq in 0..16 {
            assert!(repeats.sent(1, seq, TOPIC, vec![], t0).is_empty());
        }

        let dropped = repeats.sent(1, 16, TOPIC, vec![], t0);

        assert_eq!(seqs(&dropped), [0]);
        assert_eq!(repeats.dropped(), 1);
        let held: Vec<u32> = repeats.pending().map(|a| a.seq).collect();
        assert_eq!(held, (1..=16).collect::<Vec<_>>());
    }

    #[test]
    fn a_smaller_bound_drops_the_oldest_at_once() {
        let t0 = Instant::now();
        let mut repeats = Repeats::new(64);
        for seq in 0..20 {
            repeats.sent(1, seq, TOPIC, vec![], t0);
        }

        let dropped = repeats.set_keep(16);

        assert_eq!(seqs(&dropped), [0, 1, 2, 3]);
        assert_eq!((repeats.pending().len(), repeats.dropped()), (16, 4));
    }

    #[test]
    fn on_reconnect_every_unanswered_alarm_is_due_at_once_and_then_keeps_its_schedule() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(1, 0, TOPIC, b"a".to_vec(), t0);
        repeats.sent(1, 1, TOPIC, b"b".to_vec(), t0 + secs(1));

        repeats.reconnected(t0 + secs(2));

        assert_eq!(seqs(&repeats.due(t0 + secs(2))), [0, 1]);
        assert!(repeats.due(t0 + secs(11)).is_empty());
        assert_eq!(seqs(&repeats.due(t0 + secs(12))), [0, 1]);
    }

    #[test]
    fn a_repeat_due_while_disconnected_goes_out_at_the_reconnect() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(1, 0, TOPIC, b"a".to_vec(), t0);

        // Offline from 1 s to 40 s: nobody asks what is due.
        repeats.reconnected(t0 + secs(40));
        let due = repeats.due(t0 + secs(40));

        assert_eq!((due.len(), due[0].repeats), (1, 1));
        assert_eq!(repeats.next_due(), Some(t0 + secs(50)));
    }

    #[test]
    fn the_same_alarm_sent_twice_is_held_once_with_its_first_bytes() {
        let t0 = Instant::now();
        let mut repeats = Repeats::default();
        repeats.sent(1, 0, TOPIC, b"first".to_vec(), t0);
        repeats.sent(1, 0, TOPIC, b"second".to_vec(), t0 + secs(3));

        let due = repeats.due(t0 + secs(5));

        assert_eq!(due.len(), 1);
        assert_eq!(due[0].payload, b"first");
    }
}
