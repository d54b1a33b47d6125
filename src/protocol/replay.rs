//! The per-device anti-replay window over `(boot, seq)` (RFC 4303 section 3.4.3 style).

/// How many sequence numbers below the highest one are still remembered.
pub const WINDOW: u32 = 64;

/// What the window says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Never seen: process it.
    Fresh,
    /// Seen before inside the window: a QoS 1 redelivery.
    Duplicate,
    /// Below the window, or from an older boot: someone is replaying old traffic.
    Replay,
}

/// Highest `(boot, seq)` seen and a bitmap of the 64 seqs at and below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    highest: Option<(u32, u32)>,
    /// Bit `i` set: `highest.seq - i` has been seen.
    seen: u64,
}

impl ReplayWindow {
    /// A window that knows only the highest message, e.g. as restored from the store.
    pub fn starting_at(boot: u32, seq: u32) -> ReplayWindow {
        ReplayWindow {
            highest: Some((boot, seq)),
            seen: 1,
        }
    }

    pub fn highest(&self) -> Option<(u32, u32)> {
        self.highest
    }

    /// Classifies a message without recording it.
    pub fn check(&self, boot: u32, seq: u32) -> Freshness {
        let Some((hboot, hseq)) = self.highest else {
            return Freshness::Fresh;
        };
        if boot != hboot {
            return if boot > hboot {
                Freshness::Fresh
            } else {
                Freshness::Replay
            };
        }
        if seq > hseq {
            return Freshness::Fresh;
        }
        let behind = hseq - seq;
        if behind >= WINDOW {
            Freshness::Replay
        } else if self.seen & (1u64 << behind) != 0 {
            Freshness::Duplicate
        } else {
            Freshness::Fresh
        }
    }

    /// Records a message that was found fresh and has been accepted.
    pub fn record(&mut self, boot: u32, seq: u32) {
        match self.highest {
            Some((hboot, hseq)) if hboot == boot && seq <= hseq => {
                let behind = hseq - seq;
                if behind < WINDOW {
                    self.seen |= 1u64 << behind;
                }
            }
            Some((hboot, hseq)) if hboot == boot => {
                let ahead = seq - hseq;
                self.seen = if ahead >= WINDOW {
                    0
                } else {
                    self.seen << ahead
                } | 1;
                self.highest = Some((boot, seq));
            }
            _ => {
                self.highest = Some((boot, seq));
                self.seen = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_message_of_a_device_is_fresh() {
        assert_eq!(ReplayWindow::default().check(1, 0), Freshness::Fresh);
    }

    #[test]
    fn a_redelivery_is_a_duplicate() {
        let mut w = ReplayWindow::default();
        w.record(1, 5);
        assert_eq!(w.check(1, 5), Freshness::Duplicate);
    }

    #[test]
    fn a_late_message_inside_the_window_is_fresh_once() {
        let mut w = ReplayWindow::default();
        w.record(1, 10);
        assert_eq!(w.check(1, 8), Freshness::Fresh);
        w.record(1, 8);
        assert_eq!(w.check(1, 8), Freshness::Duplicate);
        assert_eq!(w.check(1, 9), Freshness::Fresh);
    }

    #[test]
    fn a_message_below_the_window_is_a_replay() {
        let mut w = ReplayWindow::default();
        w.record(1, 100);
        assert_eq!(w.check(1, 36), Freshness::Replay);
        assert_eq!(w.check(1, 37), Freshness::Fresh);
    }

    #[test]
    fn an_older_boot_is_a_replay_and_a_newer_boot_starts_afresh() {
        let mut w = ReplayWindow::default();
        w.record(3, 7);
        assert_eq!(w.check(2, 1000), Freshness::Replay);
        assert_eq!(w.check(4, 0), Freshness::Fresh);
        w.record(4, 0);
        assert_eq!(w.check(3, 8), Freshness::Replay);
        assert_eq!(w.check(4, 0), Freshness::Duplicate);
    }

    #[test]
    fn a_window_restored_from_the_store_refuses_the_old_highest_again() {
        let w = ReplayWindow::starting_at(2, 50);
        assert_eq!(w.check(2, 50), Freshness::Duplicate);
        assert_eq!(w.check(2, 51), Freshness::Fresh);
    }

    proptest! {
        #[test]
        fn every_seq_is_accepted_at_most_once(seqs in proptest::collection::vec(0u32..200, 1..300)) {
            let mut w = ReplayWindow::default();
            let mut accepted = std::collections::HashSet::new();
            for s in seqs {
                if w.check(1, s) == Freshness::Fresh {
                    prop_assert!(accepted.insert(s), "seq {} accepted twice", s);
                    w.record(1, s);
                }
            }
        }

        #[test]
        fn a_device_counting_up_is_never_refused(start in 0u32..1000, n in 1u32..200) {
            let mut w = ReplayWindow::default();
            for s in start..start + n {
                prop_assert_eq!(w.check(1, s), Freshness::Fresh);
                w.record(1, s);
            }
        }
    }
}
