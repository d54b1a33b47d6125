//! The liveness table: when every supervised device was last heard, and a deadline queue
//! that says which ones have gone silent. No task or timer per device: one heap entry per
//! device, re-checked lazily when it comes due, so a million devices cost megabytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::domain::policy::silence::{silence_window, REMINDER_EVERY_MS};
use crate::domain::Millis;

/// Liveness keeps time in ticks of this many milliseconds (u32: 13 years from its epoch).
pub const TICK_MS: Millis = 100;

/// What the table reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LivenessEvent {
    /// Nothing heard since `last_heard` and the deadline `deadline` has passed.
    Silent {
        device: String,
        last_heard: Millis,
        deadline: Millis,
    },
    /// Still silent; the `n`th reminder.
    Reminder { device: String, n: u32 },
    /// Heard again for two whole intervals after being silent.
    BackOnline { device: String },
}

/// One supervised device, 28 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_heard: u32,
    /// The due tick of this device's current queue entry; older entries are stale.
    queued: u32,
    /// Ticks of silence allowed: `2 × interval + grace`.
    window: u32,
    /// Ticks of one heartbeat interval.
    interval: u32,
    /// 0: not silent; else the tick it was declared silent (at least 1).
    silent_since: u32,
    /// While silent: the first tick it was heard again, 0 if not.
    heard_again_since: u32,
    reminders: u16,
    tracked: bool,
}

#[derive(Debug)]
pub struct Liveness {
    epoch: Millis,
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    slots: Vec<Slot>,
    /// `(due tick, slot)`: at least one entry per tracked device, stale ones skipped.
    queue: BinaryHeap<Reverse<(u32, u32)>>,
    silent: usize,
}

impl Liveness {
    /// `epoch`: tick 0; times before it count as tick 0.
    pub fn new(epoch: Millis) -> Liveness {
        Liveness {
            epoch,
            ids: HashMap::new(),
            names: Vec::new(),
            slots: Vec::new(),
            queue: BinaryHeap::new(),
            silent: 0,
        }
    }

    fn tick(&self, at: Millis) -> u32 {
        // Rounded up, so a deadline is never reported early.
        let t = (at - self.epoch).max(0);
        u32::try_from((t + TICK_MS - 1) / TICK_MS).unwrap_or(u32::MAX)
    }

    fn millis(&self, tick: u32) -> Millis {
        self.epoch + tick as Millis * TICK_MS
    }

    fn ticks(ms: Millis) -> u32 {
        u32::try_from((ms.max(TICK_MS) + TICK_MS - 1) / TICK_MS).unwrap_or(u32::MAX)
    }

    /// Supervises a device, or changes its interval and grace. `last_heard` is when it was
    /// last heard (a restart passes its start time for devices heard recently, so nobody is
    /// declared silent for the time the backend was down).
    pub fn track(
        &mut self,
        device: &str,
        interval_ms: Millis,
        grace_ms: Millis,
        last_heard: Millis,
    ) {
        let interval = Self::ticks(interval_ms);
        let window = Self::ticks(silence_window(interval_ms, grace_ms.max(0)));
        let heard = self.tick(last_heard);
        let idx = match self.ids.get(device) {
            Some(&i) => i,
            None => {
                let i = self.slots.len() as u32;
                self.ids.insert(device.into(), i);
                self.names.push(device.into());
                self.slots.push(Slot::default());
                i
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.interval = interval;
        slot.window = window;
        slot.last_heard = slot.last_heard.max(heard);
        if !slot.tracked {
            slot.tracked = true;
            slot.silent_since = 0;
            slot.heard_again_since = 0;
            slot.reminders = 0;
        }
        let due = slot.last_heard.saturating_add(window);
        self.schedule(idx, due);
    }

    /// Queues the device's next check; any entry queued before is stale from now on.
    fn schedule(&mut self, i: u32, due: u32) {
        self.slots[i as usize].queued = due;
        self.queue.push(Reverse((due, i)));
    }

    /// Marks a tracked device as already silent (its alert is open), e.g. after a restart.
    pub fn mark_silent(&mut self, device: &str, since: Millis) {
        let since = self.tick(since).max(1);
        if let Some(&i) = self.ids.get(device) {
            let slot = &mut self.slots[i as usize];
            if slot.tracked && slot.silent_since == 0 {
                slot.silent_since = since;
                self.silent += 1;
                let due = since.saturating_add(Self::ticks(REMINDER_EVERY_MS));
                self.schedule(i, due);
            }
        }
    }

    /// Stops supervising (returned, lost, case closed).
    pub fn untrack(&mut self, device: &str) {
        if let Some(&i) = self.ids.get(device) {
            let slot = &mut self.slots[i as usize];
            if slot.tracked && slot.silent_since != 0 {
                self.silent -= 1;
            }
            slot.tracked = false;
            slot.silent_since = 0;
        }
    }

    pub fn is_silent(&self, device: &str) -> bool {
        self.ids.get(device).is_some_and(|&i| {
            self.slots[i as usize].tracked && self.slots[i as usize].silent_since != 0
        })
    }

    /// Takes back a silence the leader could not record, so the next sweep finds it again.
    pub fn unmark_silent(&mut self, device: &str) {
        if let Some(&i) = self.ids.get(device) {
            let slot = &mut self.slots[i as usize];
            if slot.tracked && slot.silent_since != 0 {
                slot.silent_since = 0;
                slot.heard_again_since = 0;
                self.silent -= 1;
                let due = slot.last_heard.saturating_add(slot.window);
                self.schedule(i, due);
            }
        }
    }

    pub fn tracked_ids(&self) -> Vec<String> {
        self.slots
            .iter()
            .zip(&self.names)
            .filter(|(s, _)| s.tracked)
            .map(|(_, n)| n.to_string())
            .collect()
    }

    pub fn is_tracked(&self, device: &str) -> bool {
        self.ids
            .get(device)
            .is_some_and(|&i| self.slots[i as usize].tracked)
    }

    /// A message from the device arrived at `at`. The cost of a heartbeat: one hash lookup.
    pub fn heard(&mut self, device: &str, at: Millis) -> Option<LivenessEvent> {
        let now = self.tick(at);
        let &i = self.ids.get(device)?;
        let slot = &mut self.slots[i as usize];
        if !slot.tracked {
            return None;
        }
        slot.last_heard = slot.last_heard.max(now);
        if slot.silent_since == 0 {
            return None;
        }
        if slot.heard_again_since == 0 {
            slot.heard_again_since = now;
            // Check again at the deadline (or the reminder, if sooner): speaking once is not
            // being back.
            let reminder = Self::next_reminder(slot);
            let due = now.saturating_add(slot.window).min(reminder);
            self.schedule(i, due);
            return None;
        }
        if now.saturating_sub(slot.heard_again_since) < slot.interval.saturating_mul(2) {
            return None;
        }
        slot.silent_since = 0;
        slot.heard_again_since = 0;
        slot.reminders = 0;
        self.silent -= 1;
        let due = slot.last_heard.saturating_add(slot.window);
        self.schedule(i, due);
        Some(LivenessEvent::BackOnline {
            device: self.names[i as usize].to_string(),
        })
    }

    fn next_reminder(slot: &Slot) -> u32 {
        let every = Self::ticks(REMINDER_EVERY_MS);
        slot.silent_since
            .saturating_add(every.saturating_mul(slot.reminders as u32 + 1))
    }

    /// Everything that came due up to `at`, in deadline order.
    pub fn sweep(&mut self, at: Millis) -> Vec<LivenessEvent> {
        // Rounded down: a deadline is due only once it has really passed.
        let now = u32::try_from((at - self.epoch).max(0) / TICK_MS).unwrap_or(u32::MAX);
        let mut events = Vec::new();
        while let Some(&Reverse((due, i))) = self.queue.peek() {
            if due > now {
                break;
            }
            self.queue.pop();
            let slot = self.slots[i as usize];
            if !slot.tracked || slot.queued != due {
                continue;
            }
            let deadline = slot.last_heard.saturating_add(slot.window);
            if slot.silent_since == 0 {
                if deadline > now {
                    // Heard since this entry was queued: look again at the new deadline.
                    self.schedule(i, deadline);
                    continue;
                }
                let slot = &mut self.slots[i as usize];
                slot.silent_since = now.max(1);
                let (last_heard, reminder) = (slot.last_heard, Self::next_reminder(slot));
                self.silent += 1;
                events.push(LivenessEvent::Silent {
                    device: self.names[i as usize].to_string(),
                    last_heard: self.millis(last_heard),
                    deadline: self.millis(deadline),
                });
                self.schedule(i, reminder);
                continue;
            }
            let slot = &mut self.slots[i as usize];
            // Heard once, then quiet again for a whole window: still silent, start over.
            if slot.heard_again_since != 0 && deadline <= now {
                slot.heard_again_since = 0;
            }
            if Self::next_reminder(slot) <= now {
                slot.reminders = slot.reminders.saturating_add(1);
                events.push(LivenessEvent::Reminder {
                    device: self.names[i as usize].to_string(),
                    n: slot.reminders as u32,
                });
            }
            let slot = self.slots[i as usize];
            let mut due = Self::next_reminder(&slot);
            if slot.heard_again_since != 0 {
                due = due.min(deadline);
            }
            self.schedule(i, due);
        }
        events
    }

    /// When the next entry comes due, to sleep until then.
    pub fn next_due(&self) -> Option<Millis> {
        self.queue.peek().map(|Reverse((due, _))| self.millis(*due))
    }

    pub fn silent_count(&self) -> usize {
        self.silent
    }

    pub fn tracked_count(&self) -> usize {
        self.slots.iter().filter(|s| s.tracked).count()
    }

    /// Heap bytes held, for the benchmark's memory per device.
    pub fn approx_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len() * 2).sum();
        self.ids.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.names.capacity() * std::mem::size_of::<Box<str>>()
            + names
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.queue.capacity() * std::mem::size_of::<Reverse<(u32, u32)>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Millis = 1000;

    fn silent_devices(events: &[LivenessEvent]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                LivenessEvent::Silent { device, .. } => Some(device.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_device_is_silent_at_twice_its_interval_plus_grace_and_not_a_tick_before() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 10 * S);
        assert!(l.sweep(15 * S - 1).is_empty());
        let events = l.sweep(15 * S);
        assert_eq!(
            events,
            vec![LivenessEvent::Silent {
                device: "d1".into(),
                last_heard: 10 * S,
                deadline: 15 * S
            }]
        );
        assert_eq!(l.silent_count(), 1);
        assert!(l.sweep(20 * S).is_empty(), "declared once");
    }

    #[test]
    fn a_device_that_keeps_beating_is_never_silent() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        for t in (0..600).map(|n| n * 2 * S) {
            l.heard("d1", t);
            assert!(l.sweep(t + S).is_empty(), "silent at {t}");
        }
    }

    #[test]
    fn a_late_heartbeat_just_before_the_deadline_moves_it() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        l.heard("d1", 4900);
        assert!(l.sweep(9 * S).is_empty());
        assert_eq!(silent_devices(&l.sweep(9900)), vec!["d1"]);
    }

    #[test]
    fn back_online_needs_two_whole_intervals_of_being_heard() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        l.sweep(5 * S);
        assert_eq!(l.heard("d1", 6 * S), None);
        assert_eq!(l.heard("d1", 8 * S), None);
        assert_eq!(
            l.heard("d1", 10 * S),
            Some(LivenessEvent::BackOnline {
                device: "d1".into()
            })
        );
        assert_eq!(l.silent_count(), 0);
        assert_eq!(
            silent_devices(&l.sweep(15 * S)),
            vec!["d1"],
            "and silent again later"
        );
    }

    #[test]
    fn one_word_after_silence_is_not_back_online_and_does_not_flap() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        l.sweep(5 * S);
        l.heard("d1", 6 * S);
        assert!(l
            .sweep(20 * S)
            .iter()
            .all(|e| !matches!(e, LivenessEvent::Silent { .. })));
        // It went quiet again, so the next word starts the two intervals afresh.
        assert_eq!(l.heard("d1", 21 * S), None);
        assert_eq!(l.heard("d1", 23 * S), None);
        assert!(l.heard("d1", 25 * S).is_some());
    }

    #[test]
    fn a_silent_device_gets_a_reminder_every_15_minutes() {
        let mut l = Liveness::new(0);
        l.track("d1", 60 * S, 30 * S, 0);
        assert_eq!(silent_devices(&l.sweep(150 * S)), vec!["d1"]);
        assert!(l.sweep(150 * S + REMINDER_EVERY_MS - S).is_empty());
        assert_eq!(
            l.sweep(150 * S + REMINDER_EVERY_MS),
            vec![LivenessEvent::Reminder {
                device: "d1".into(),
                n: 1
            }]
        );
        assert_eq!(
            l.sweep(150 * S + 2 * REMINDER_EVERY_MS),
            vec![LivenessEvent::Reminder {
                device: "d1".into(),
                n: 2
            }]
        );
    }

    #[test]
    fn an_untracked_device_is_never_reported() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        l.untrack("d1");
        assert!(l.sweep(100 * S).is_empty());
        assert_eq!(l.heard("d1", 100 * S), None);
    }

    #[test]
    fn a_device_restored_as_silent_is_not_declared_again() {
        let mut l = Liveness::new(0);
        l.track("d1", 2 * S, S, 0);
        l.mark_silent("d1", 0);
        assert!(silent_devices(&l.sweep(100 * S)).is_empty());
    }

    #[test]
    fn a_shorter_interval_from_a_hello_brings_the_deadline_forward() {
        let mut l = Liveness::new(0);
        l.track("d1", 60 * S, 30 * S, 0);
        l.track("d1", 2 * S, S, 0);
        assert_eq!(silent_devices(&l.sweep(5 * S)), vec!["d1"]);
    }

    #[test]
    fn many_devices_go_silent_in_deadline_order() {
        let mut l = Liveness::new(0);
        for n in 0..1000 {
            l.track(&format!("d{n}"), 2 * S, S, n * 10);
        }
        let events = l.sweep(16 * S);
        assert_eq!(events.len(), 1000);
        let deadlines: Vec<Millis> = events
            .iter()
            .map(|e| match e {
                LivenessEvent::Silent { deadline, .. } => *deadline,
                _ => 0,
            })
            .collect();
        assert!(deadlines.windows(2).all(|w| w[0] <= w[1]));
    }
}
