//! Who the ingest serves next: a rate limit per device, and one queue per device served in
//! turn, alarms first. However much one device sends (a stolen key, a broken firmware), it
//! cannot sit ahead of another device's alarm: that alarm waits for at most one message of
//! each other device, never for a flood.
//!
//! The policy (`Bucket`, `Lanes`) is plain data and pure functions; `IngestQueue` only locks
//! it and wakes whoever waits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::Delivery;
use crate::domain::Millis;
use crate::metrics::Metrics;
use crate::protocol;

/// How many messages a device may send: `burst` at once, then `per_s` a second. A device
/// that keeps to the protocol sends a few a minute; a reconnect with unanswered alarms to
/// repeat stays far below the burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// 0: no limit.
    pub per_s: u32,
    pub burst: u32,
}

impl RateLimit {
    fn unlimited(&self) -> bool {
        self.per_s == 0
    }
}

/// A token bucket: full at first, one token a message, refilled at the limit's rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Millis,
    /// A message found the bucket empty and waits for a token.
    waiting: bool,
}

impl Bucket {
    pub fn full(limit: &RateLimit, now: Millis) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst.max(1)),
            at: now,
            waiting: false,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Millis) {
        let elapsed = (now - self.at).max(0) as f64 / 1000.0;
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_s)).min(f64::from(limit.burst.max(1)));
        self.at = now;
    }

    /// Takes a token for a message that may wait for it: `Ok(true)` when it had to (it
    /// counts once as throttled), `Err(ms)` until the next token.
    pub fn take(&mut self, limit: &RateLimit, now: Millis) -> Result<bool, Millis> {
        if limit.unlimited() {
            return Ok(false);
        }
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(std::mem::take(&mut self.waiting));
        }
        self.waiting = true;
        let ms = ((1.0 - self.tokens) * 1000.0 / f64::from(limit.per_s)).ceil() as Millis;
        Err(ms.max(1))
    }

    /// Takes a token for a message that cannot wait: false when there is none.
    pub fn try_take(&mut self, limit: &RateLimit, now: Millis) -> bool {
        if limit.unlimited() {
            return true;
        }
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, limit: &RateLimit, now: Millis) -> bool {
        self.refill(limit, now);
        self.tokens >= f64::from(limit.burst.max(1)) && !self.waiting
    }
}

/// One first-in-first-out lane per device, served one message per device in turn; devices
/// whose next message is an alarm are served before the others. A device's own messages
/// keep their order.
#[derive(Debug)]
pub struct Lanes<T> {
    lanes: HashMap<String, VecDeque<(bool, T)>>,
    /// Devices whose next message is an alarm, in turn; every non-empty lane is in exactly
    /// one of the two rings.
    alarms: VecDeque<String>,
    others: VecDeque<String>,
    len: usize,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: HashMap::new(),
            alarms: VecDeque::new(),
            others: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Lanes<T> {
    pub fn push(&mut self, device: &str, alarm: bool, item: T) {
        let lane = self.lanes.entry(device.to_owned()).or_default();
        let first = lane.is_empty();
        lane.push_back((alarm, item));
        if first {
            self.ring(alarm).push_back(device.to_owned());
        }
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        let device = self
            .alarms
            .pop_front()
            .or_else(|| self.others.pop_front())?;
        let lane = self.lanes.get_mut(&device).expect("a ringed lane");
        let (_, item) = lane.pop_front().expect("a ringed lane is not empty");
        match lane.front().map(|&(alarm, _)| alarm) {
            Some(alarm) => self.ring(alarm).push_back(device),
            None => {
                self.lanes.remove(&device);
            }
        }
        self.len -= 1;
        Some(item)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ring(&mut self, alarm: bool) -> &mut VecDeque<String> {
        if alarm {
            &mut self.alarms
        } else {
            &mut self.others
        }
    }
}

/// The device a delivery is counted against: the publisher the embedded broker
/// authenticated, else the device of the topic (an external broker's ACL keeps devices on
/// their own); anything else shares one budget.
pub fn lane_of(d: &Delivery) -> String {
    match &d.publisher {
        Some(p) => p.clone(),
        None => protocol::parse_topic(&d.publish.topic)
            .map(|(id, _)| id.as_str().to_owned())
            .unwrap_or_else(|_| UNKNOWN.to_owned()),
    }
}

/// The lane and budget of publishes whose topic names no device.
const UNKNOWN: &str = "*";
/// Past this many devices' buckets, full (idle) ones are forgotten: a fresh one is full too.
const BUCKETS_MAX: usize = 100_000;

fn is_alarm(d: &Delivery) -> bool {
    protocol::Uplink::of_leaf(&d.publish.topic) == Some(protocol::Uplink::Alarm)
}

struct Queued {
    delivery: Delivery,
    /// When the broker side handed it over, for the ingest's latency.
    arrived: tokio::time::Instant,
    /// Its place in the queue's capacity, given back once the ingest takes it.
    _room: OwnedSemaphorePermit,
}

struct State {
    lanes: Lanes<Queued>,
    buckets: HashMap<String, Bucket>,
    /// Messages over their device's rate since the ingest last asked: delayed on the
    /// embedded broker, dropped on an external one.
    throttled: HashMap<String, u64>,
}

struct Shared {
    state: Mutex<State>,
    room: Arc<Semaphore>,
    ready: Notify,
    limit: RateLimit,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

/// Where the broker side hands messages to the ingest.
#[derive(Clone)]
pub struct IngestQueue {
    shared: Arc<Shared>,
}

/// The ingest's end of the queue; dropping it closes the queue.
pub struct Inbox {
    queue: IngestQueue,
}

/// The ingest has stopped.
#[derive(Debug)]
pub struct Closed;

/// Why `offer` did not queue a message.
pub enum Refused {
    /// The device is over its rate: the message is dropped (counted).
    Throttled(Delivery),
    Closed,
}

/// A place in the queue, and the sender's token: `send` cannot fail or wait.
pub struct Permit {
    queue: IngestQueue,
    room: OwnedSemaphorePermit,
    device: String,
}

impl Permit {
    pub fn send(self, delivery: Delivery) {
        self.queue.push(&self.device, delivery, self.room);
    }
}

impl IngestQueue {
    /// A queue of at most `capacity` messages, each device held to `limit`.
    pub fn new(capacity: usize, limit: RateLimit, metrics: Arc<Metrics>) -> (IngestQueue, Inbox) {
        let queue = IngestQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    lanes: Lanes::default(),
                    buckets: HashMap::new(),
                    throttled: HashMap::new(),
                }),
                room: Arc::new(Semaphore::new(capacity)),
                ready: Notify::new(),
                limit,
                epoch: Instant::now(),
                metrics,
            }),
        };
        let inbox = Inbox {
            queue: queue.clone(),
        };
        (queue, inbox)
    }

    fn now(&self) -> Millis {
        self.shared.epoch.elapsed().as_millis() as Millis
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("ingest queue lock")
    }

    fn push(&self, device: &str, delivery: Delivery, room: OwnedSemaphorePermit) {
        let alarm = is_alarm(&delivery);
        self.state().lanes.push(
            device,
            alarm,
            Queued {
                delivery,
                arrived: tokio::time::Instant::now(),
                _room: room,
            },
        );
        self.shared.ready.notify_one();
    }

    fn count_throttled(&self, state: &mut State, device: &str) {
        Metrics::inc(&self.shared.metrics.messages_throttled_total);
        let key = if state.throttled.len() < 10_000 || state.throttled.contains_key(device) {
            device
        } else {
            UNKNOWN
        };
        *state.throttled.entry(key.to_owned()).or_default() += 1;
    }

    fn bucket<'a>(&self, state: &'a mut State, device: &str, now: Millis) -> &'a mut Bucket {
        let limit = self.shared.limit;
        if state.buckets.len() >= BUCKETS_MAX && !state.buckets.contains_key(device) {
            state.buckets.retain(|_, b| !b.is_full(&limit, now));
        }
        state
            .buckets
            .entry(device.to_owned())
            .or_insert_with(|| Bucket::full(&limit, now))
    }

    /// A place in the queue, waiting while it is full.
    async fn room(&self) -> Result<OwnedSemaphorePermit, Closed> {
        self.shared
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)
    }

    /// For a broker that cannot be told to wait for one device (an external one: all devices
    /// come over one connection): a device over its rate has the message dropped at once,
    /// before it costs anything else. Waits only while the whole queue is full.
    pub async fn offer(&self, delivery: Delivery) -> Result<(), Refused> {
        let device = lane_of(&delivery);
        {
            let now = self.now();
            let mut state = self.state();
            let limit = self.shared.limit;
            if !self.bucket(&mut state, &device, now).try_take(&limit, now) {
                self.count_throttled(&mut state, &device);
                return Err(Refused::Throttled(delivery));
            }
        }
        let room = self.room().await.map_err(|Closed| Refused::Closed)?;
        self.push(&device, delivery, room);
        Ok(())
    }

    /// For the embedded broker, which can stop reading one device: waits for a place in the
    /// queue and for the device's next token. Cancel-safe: nothing is taken until it returns.
    pub async fn reserve(&self, device: &str) -> Result<Permit, Closed> {
        let room = self.room().await?;
        loop {
            let taken = {
                let now = self.now();
                let mut state = self.state();
                let limit = self.shared.limit;
                let taken = self.bucket(&mut state, device, now).take(&limit, now);
                if taken == Ok(true) {
                    self.count_throttled(&mut state, device);
                }
                taken
            };
            match taken {
                Ok(_) => {
                    return Ok(Permit {
                        queue: self.clone(),
                        room,
                        device: device.to_owned(),
                    })
                }
                Err(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await,
            }
        }
    }

    /// Beyond any rate: what is owed already (a dead connection's last will, a dead
    /// instance's queued messages). Waits while the queue is full.
    pub async fn send(&self, delivery: Delivery) -> Result<(), Closed> {
        let room = self.room().await?;
        self.push(&lane_of(&delivery), delivery, room);
        Ok(())
    }
}

impl Inbox {
    /// The next message: one device at a time in turn, alarms first; with when it arrived.
    pub async fn recv(&mut self) -> (Delivery, tokio::time::Instant) {
        loop {
            if let Some(q) = self.queue.state().lanes.pop() {
                return (q.delivery, q.arrived);
            }
            self.queue.shared.ready.notified().await;
        }
    }

    /// The next message if one is waiting, without waiting for one (to fill a group commit).
    pub fn try_recv(&mut self) -> Option<(Delivery, tokio::time::Instant)> {
        let q = self.queue.state().lanes.pop()?;
        Some((q.delivery, q.arrived))
    }

    /// Devices that went over their rate since the last call, and by how many messages.
    pub fn take_throttled(&mut self) -> Vec<(String, u64)> {
        self.queue.state().throttled.drain().collect()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.queue.shared.room.close();
        // Queued messages go unacknowledged: their senders see the ingest gone.
        let mut state = self.queue.state();
        while state.lanes.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_s: 10,
        burst: 5,
    };

    #[test]
    fn a_device_may_send_its_burst_at_once_and_then_its_rate() {
        let mut b = Bucket::full(&LIMIT, 0);
        for _ in 0..5 {
            assert!(b.try_take(&LIMIT, 0));
        }
        assert!(!b.try_take(&LIMIT, 0));
        assert!(!b.try_take(&LIMIT, 99));
        assert!(b.try_take(&LIMIT, 100));
        // A long quiet time refills the burst, no more.
        let taken = (0..20).filter(|_| b.try_take(&LIMIT, 60_000)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn a_message_that_waits_for_its_token_is_told_how_long_and_counted_once() {
        let mut b = Bucket::full(&LIMIT, 0);
        for _ in 0..5 {
            assert_eq!(b.take(&LIMIT, 0), Ok(false));
        }
        assert_eq!(b.take(&LIMIT, 0), Err(100));
        assert_eq!(b.take(&LIMIT, 40), Err(60));
        assert_eq!(b.take(&LIMIT, 100), Ok(true));
        assert_eq!(b.take(&LIMIT, 200), Ok(false));
    }

    #[test]
    fn no_limit_takes_every_message() {
        let none = RateLimit { per_s: 0, burst: 0 };
        let mut b = Bucket::full(&none, 0);
        assert!((0..10_000).all(|_| b.try_take(&none, 0)));
        assert!((0..10_000).all(|_| b.take(&none, 0) == Ok(false)));
    }

    #[test]
    fn another_devices_alarm_waits_for_one_message_of_a_flooding_device_not_for_the_flood() {
        let mut lanes = Lanes::default();
        for i in 0..10_000 {
            lanes.push("attacker", true, format!("garbage {i}"));
        }
        lanes.push("victim", true, "panic".to_owned());
        assert_eq!(lanes.pop().as_deref(), Some("garbage 0"));
        assert_eq!(lanes.pop().as_deref(), Some("panic"));
        assert_eq!(lanes.len(), 9_999);
    }

    #[test]
    fn alarms_go_before_other_traffic_and_each_device_keeps_its_order() {
        let mut lanes = Lanes::default();
        lanes.push("a", false, "a hb 1");
        lanes.push("a", true, "a alarm 2");
        lanes.push("b", false, "b hb 1");
        lanes.push("c", true, "c alarm 1");
        lanes.push("c", false, "c hb 2");
        let order: Vec<&str> = std::iter::from_fn(|| lanes.pop()).collect();
        assert_eq!(
            order,
            ["c alarm 1", "a hb 1", "a alarm 2", "b hb 1", "c hb 2"]
        );
        assert!(lanes.is_empty());
    }
}
