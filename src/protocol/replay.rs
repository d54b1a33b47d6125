//! The per-device anti-replay window over `(boot, seq)` (RFC 4303 section 3.4.3 style), and
//! the count of the seqs that never arrived.

/// How many sequence numbers below the highest one are still remembered.
pub const WINDOW: u32 = 64;

/// What the window says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Never seen: process it.
    Fresh,
    /// Seen before inside the window: a QoS 1 redelivery.
    Duplicate,
    /// Below the window, or from an older boot: the window can no longer tell. Old traffic
    /// replayed, or a device repeating a message that was never answered.
    Replay,
}

/// Highest `(boot, seq)` seen and a bitmap of the 64 seqs at and below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    highest: Option<(u32, u32)>,
    /// Bit `i` set: `highest.seq - i` has been seen.
    seen: u64,
    /// Seqs of the current boot below this one are never counted as missing: before the
    /// first message this window saw (or the one it was restored at) nothing is known.
    counted_from: u32,
}

impl ReplayWindow {
    /// A window that knows only the highest message, e.g. as restored from the store.
    pub fn starting_at(boot: u32, seq: u32) -> ReplayWindow {
        ReplayWindow {
            highest: Some((boot, seq)),
            seen: 1,
            counted_from: seq,
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

    /// Records a message that has been taken in, and returns how many seqs just became
    /// missing: they left the window (or were jumped over, or were still unseen when a new
    /// boot began) without ever arriving. A message from an older boot or below the window
    /// changes nothing: what it fills was counted missing already.
    pub fn record(&mut self, boot: u32, seq: u32) -> u64 {
        let Some((hboot, hseq)) = self.highest else {
            *self = ReplayWindow::starting_at(boot, seq);
            return 0;
        };
        if boot < hboot {
            return 0;
        }
        if boot > hboot {
            // Every seq of the old boot still unseen is lost for good; the new boot counts
            // from 0, since a device starts every boot there.
            let missing = self.unseen_leaving(WINDOW);
            self.highest = Some((boot, seq));
            self.seen = 1;
            self.counted_from = 0;
            return missing + u64::from(seq.saturating_sub(WINDOW - 1));
        }
        if seq <= hseq {
            let behind = hseq - seq;
            if behind < WINDOW {
                self.seen |= 1u64 << behind;
            }
            return 0;
        }
        let ahead = seq - hseq;
        let missing = self.unseen_leaving(ahead.min(WINDOW))
            // Jumped over without ever entering the window.
            + u64::from(ahead.saturating_sub(WINDOW));
        self.seen = if ahead >= WINDOW {
            0
        } else {
            self.seen << ahead
        } | 1;
        self.highest = Some((boot, seq));
        missing
    }

    /// How many of the `n` oldest seqs of the window were never seen, leaving out seqs below
    /// `counted_from` (and, low in a boot, below 0).
    fn unseen_leaving(&self, n: u32) -> u64 {
        let Some((_, hseq)) = self.highest else {
            return 0;
        };
        if n == 0 {
            return 0;
        }
        // Bit i is seq hseq - i: leaving are bits WINDOW - n ..= WINDOW - 1, counted are
        // bits 0 ..= hseq - counted_from.
        let leaving = u64::MAX << (WINDOW - n);
        let span = hseq - self.counted_from;
        let counted = if span >= WINDOW - 1 {
            u64::MAX
        } else {
            (1u64 << (span + 1)) - 1
        };
        u64::from((!self.seen & leaving & counted).count_ones())
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

    /// `(boot, seq)` recorded, and how many seqs that makes missing.
    type Step = (u32, u32, u64);

    /// Records each step's `(boot, seq)` in turn on `w`.
    fn missing_per_step(mut w: ReplayWindow, steps: &[Step]) -> Vec<u64> {
        steps.iter().map(|&(b, s, _)| w.record(b, s)).collect()
    }

    #[test]
    fn seqs_count_as_missing_only_once_they_leave_the_window_unseen() {
        let fresh = ReplayWindow::default();
        #[rustfmt::skip]
        let table: &[(&str, ReplayWindow, &[Step])] = &[
            ("counting up loses nothing", fresh,
                &[(1, 0, 0), (1, 1, 0), (1, 2, 0), (1, 3, 0)]),
            ("a skipped seq is missing once it leaves the window, not before", fresh,
                &[(1, 0, 0), (1, 2, 0), (1, 64, 0), (1, 65, 1), (1, 66, 0)]),
            ("a late message inside the window fills its gap", fresh,
                &[(1, 0, 0), (1, 2, 0), (1, 1, 0), (1, 3, 0), (1, 67, 0)]),
            ("a jump past the window counts every seq jumped over at once", fresh,
                &[(1, 10, 0), (1, 110, 36), (1, 111, 1)]),
            ("a new boot counts what the old one left unseen, and the new one from 0", fresh,
                &[(1, 0, 0), (1, 5, 0), (2, 3, 4), (2, 67, 3)]),
            ("a new boot first heard far from 0 counts the seqs below its window", fresh,
                &[(1, 0, 0), (1, 5, 0), (2, 100, 4 + 37)]),
            ("an older boot or a seq below the window changes nothing", fresh,
                &[(2, 100, 0), (1, 5, 0), (2, 10, 0), (2, 101, 0)]),
            ("seqs before the first one heard are not counted", fresh,
                &[(1, 1000, 0), (1, 1064, 0), (1, 1065, 1)]),
            ("a window restored from the store counts nothing below where it starts",
                ReplayWindow::starting_at(1, 500),
                &[(1, 564, 0), (1, 565, 1)]),
            ("early in a boot there is nothing below seq 0 to miss", fresh,
                &[(1, 0, 0), (1, 3, 0), (1, 66, 2)]),
        ];
        for (name, start, steps) in table {
            let expected: Vec<u64> = steps.iter().map(|s| s.2).collect();
            assert_eq!(missing_per_step(*start, steps), expected, "{name}");
        }
    }

    #[test]
    fn a_message_from_an_older_boot_leaves_the_window_where_it_was() {
        let mut w = ReplayWindow::default();
        w.record(3, 7);
        w.record(2, 1000);
        assert_eq!(w.highest(), Some((3, 7)));
        assert_eq!(w.check(3, 7), Freshness::Duplicate);
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

        #[test]
        fn what_is_missing_at_a_new_boot_is_exactly_what_never_arrived(
            seqs in proptest::collection::vec(0u32..300, 1..300),
        ) {
            let mut w = ReplayWindow::default();
            let mut accepted = std::collections::BTreeSet::new();
            let mut missing = 0;
            for s in &seqs {
                if w.check(1, *s) == Freshness::Fresh {
                    accepted.insert(*s);
                    missing += w.record(1, *s);
                }
            }
            missing += w.record(2, 0);
            let first = seqs[0];
            let last = *accepted.iter().next_back().unwrap();
            let never = (first..=last).filter(|s| !accepted.contains(s)).count() as u64;
            prop_assert_eq!(missing, never);
        }
    }
}
