//! Which kind of message each broker PUBACK acknowledges, from the order of the MQTT client's events.
//!
//! rumqttc reports a publish going out and its PUBACK by packet id only. It
//! takes requests in the order they were queued, so the kinds queued, in
//! order, name the packet ids as they are handed out; a packet id seen again
//! while unacknowledged is a retransmission. A broker that lost the session
//! never acknowledges what was in flight or waiting in the client.

use std::collections::{HashMap, HashSet, VecDeque};

/// What is known about the connection when a new session starts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Publishes waiting without a packet id (they were still queued).
    pub fresh: usize,
    /// Packet ids of publishes waiting for retransmission.
    pub retransmit: Vec<u16>,
}

#[derive(Debug, Default)]
pub(crate) struct PubackTally {
    /// Kinds queued and not yet given a packet id, oldest first.
    queued: VecDeque<String>,
    inflight: HashMap<u16, String>,
    /// A publish held back because its packet id was still unacknowledged.
    collided: Option<(u16, String)>,
    /// Packet ids whose outgoing event may still come once, for a publish the broker lost.
    stale: HashSet<u16>,
    acked: HashMap<String, u64>,
}

impl PubackTally {
    pub fn queued(&mut self, kind: &str) {
        self.queued.push_back(kind.to_owned());
    }

    /// The last `queued` never reached the client.
    pub fn unqueued(&mut self) {
        self.queued.pop_back();
    }

    /// rumqttc wrote (or rewrote) the publish with this packet id.
    pub fn outgoing(&mut self, pkid: u16) {
        if self.stale.remove(&pkid) || self.inflight.contains_key(&pkid) {
            return;
        }
        if let Some(kind) = self.queued.pop_front() {
            self.inflight.insert(pkid, kind);
        }
    }

    /// rumqttc held the next publish back until `pkid` is acknowledged.
    pub fn collided(&mut self, pkid: u16) {
        if let Some(kind) = self.queued.pop_front() {
            self.collided = Some((pkid, kind));
        }
    }

    pub fn puback(&mut self, pkid: u16) {
        if let Some(kind) = self.inflight.remove(&pkid) {
            *self.acked.entry(kind).or_default() += 1;
        }
        if self
            .collided
            .as_ref()
            .is_some_and(|(held, _)| *held == pkid)
        {
            let (pkid, kind) = self.collided.take().expect("checked");
            self.inflight.insert(pkid, kind);
        }
    }

    /// The broker started a new session: whatever `pending` held is gone.
    pub fn session_lost(&mut self, pending: &Pending) {
        // A retransmission the tally never saw go out is still first in line.
        let unseen: Vec<u16> = pending
            .retransmit
            .iter()
            .copied()
            .filter(|pkid| !self.inflight.contains_key(pkid))
            .collect();
        let gone = pending.fresh + unseen.len();
        self.queued.drain(..gone.min(self.queued.len()));
        self.stale = unseen.into_iter().collect();
        self.inflight.clear();
        self.collided = None;
    }

    /// PUBACKs received for publishes on topics ending in `/{kind}`.
    pub fn acked(&self, kind: &str) -> u64 {
        self.acked.get(kind).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_puback_counts_for_the_kind_queued_in_that_place() {
        let mut tally = PubackTally::default();
        for kind in ["hello", "hb", "alarm", "hb"] {
            tally.queued(kind);
        }
        for pkid in 1..=4 {
            tally.outgoing(pkid);
        }

        tally.puback(2);
        tally.puback(3);

        assert_eq!((tally.acked("hb"), tally.acked("alarm")), (1, 1));
        assert_eq!(tally.acked("hello"), 0);
    }

    #[test]
    fn a_retransmission_is_not_a_new_publish() {
        let mut tally = PubackTally::default();
        tally.queued("hb");
        tally.queued("alarm");
        tally.outgoing(1);
        tally.outgoing(1);
        tally.outgoing(2);

        tally.puback(1);
        tally.puback(2);

        assert_eq!((tally.acked("hb"), tally.acked("alarm")), (1, 1));
    }

    #[test]
    fn a_collided_publish_takes_its_packet_id_once_that_is_acknowledged() {
        let mut tally = PubackTally::default();
        tally.queued("hb");
        tally.queued("alarm");
        tally.outgoing(1);
        tally.collided(1);

        tally.puback(1);
        tally.outgoing(1);
        tally.puback(1);

        assert_eq!((tally.acked("hb"), tally.acked("alarm")), (1, 1));
    }

    #[test]
    fn after_a_lost_session_what_was_in_flight_or_waiting_is_never_counted() {
        let mut tally = PubackTally::default();
        for kind in ["hb", "hb", "alarm", "hb", "pos"] {
            tally.queued(kind);
        }
        tally.outgoing(1);
        tally.outgoing(2);
        // Packet id 3 was written as the connection failed; its event is still to come.
        let pending = Pending {
            fresh: 1,
            retransmit: vec![1, 2, 3],
        };

        tally.session_lost(&pending);
        tally.outgoing(3);
        tally.puback(1);
        tally.puback(3);
        assert_eq!((tally.acked("hb"), tally.acked("alarm")), (0, 0));

        tally.outgoing(4);
        tally.puback(4);
        assert_eq!((tally.acked("pos"), tally.acked("hb")), (1, 0));
    }
}
