//! The ingest's decisions as a pure state machine over (message, device entry, time): what
//! it remembers per device between messages, and at each step of a message what happens
//! next. The driver (`super::Ingest`) looks devices up, writes to the store and talks to the
//! broker, feeding the answers back in; it decides nothing itself.
//!
//! A message goes `receive` → `signature` (→ `keys_reread` → `rotated`, or
//! `bad_signature`) → `admit` (→ `held` for an alarm below the window) → `take_in` →
//! `stored`. Each step either ends the message, with effects to perform, or says what the
//! driver must find out or write before the next one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::directory::DeviceEntry;
use crate::domain::correlate::DeviceContext;
use crate::domain::policy::episodes::{BadSignatureTally, LowBatteryEpisode, MissingEpisode};
use crate::domain::policy::triage::{self, Trigger};
use crate::domain::policy::{Decision, PolicyConfig};
use crate::domain::{DeviceKind, DeviceStatus, Millis, Position};
use crate::protocol::{self, DeviceKey, Envelope, Freshness, Message, Payload, ReplayWindow};
use crate::store::{DeviceHealth, Raise};

/// A message from an unknown device re-reads that device from the store at most this often
/// (whatever the device, so made-up names cannot make us query the store per message).
const DIRECTORY_RELOAD_MIN_MS: Millis = 2_000;
/// A bad signature re-reads the device's keys (another instance may have rotated them) at
/// most this often per device, so a forger cannot make us query the store per message.
const KEYS_REREAD_MIN_MS: Millis = 10_000;
/// Security events of one kind from one device are stored at most this often.
const SECURITY_EVENT_EVERY_MS: Millis = 10_000;
/// The security-event budget is forgotten past this many (device, kind) pairs.
const SECURITY_BUDGETS_MAX: usize = 100_000;
/// A security event's detail is stored up to this many characters.
const SECURITY_DETAIL_MAX_CHARS: usize = 500;

/// A counter of the ingest's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Message,
    Malformed,
    TopicDenied,
    UnknownDevice,
    BadSignature,
    Duplicate,
    Replay,
    Accepted,
    Late,
    Missing(u64),
    StoreRefused,
}

/// Something the driver does that the message's fate does not wait on.
#[derive(Debug, Clone)]
pub enum Effect {
    Count(Count),
    /// A security event to record (the driver asks `security_event_due` first).
    Security {
        device: Option<String>,
        kind: &'static str,
        detail: String,
    },
    /// Tell the device its alarm `(boot, seq)` is received.
    Received {
        device: String,
        origin: (u32, u32),
    },
    /// The device was heard: its liveness moves on.
    Heard {
        device: String,
        at: Millis,
    },
    /// The device announced its heartbeat interval in `hello`.
    ReportedInterval {
        device: String,
        hb_s: u32,
    },
    /// Publish the device's configuration again (the coordinator's interval, a next key, or
    /// one signed with the key it has just taken up).
    SendConfig {
        device: String,
    },
    /// Store and push an alert no single message caused (bad signatures, missing messages).
    Raise(Box<Raise>),
    /// The device signs with its next key: the rotation is complete (its audit entry
    /// committed with it); to the log.
    KeyRotated {
        device: String,
    },
}

/// What `receive` makes of a publish.
#[derive(Debug)]
pub enum Received {
    /// Done with it: refused, or our own downlink coming back.
    Done(Vec<Effect>),
    /// An uplink of a device: perform the effects, look the device up (`reload_due`), then
    /// `signature`.
    Opened {
        envelope: Envelope,
        effects: Vec<Effect>,
    },
}

/// What a message's signature says.
#[derive(Debug)]
pub enum Signature {
    /// The device's own: go on to `admit` with this entry.
    Signed {
        entry: DeviceEntry,
        effects: Vec<Effect>,
    },
    /// Done with it: unknown device or an unreadable signature.
    Done(Vec<Effect>),
    /// Not the current key, and no next key known here: re-read the device's keys (another
    /// instance or the command line may have started a rotation), then `keys_reread`.
    RereadKeys,
    /// Signed with the device's next key: complete the rotation in the store, re-read the
    /// device's keys, then `rotated`.
    NextKey { entry: DeviceEntry, sealed: String },
    /// A bad signature: `bad_signature`.
    Bad,
}

/// Whether a verified message is taken in.
#[derive(Debug)]
pub enum Admission {
    /// Done with it: a duplicate, a replay, not issued, or unreadable.
    Done(Vec<Effect>),
    /// An alarm below the window: ask the store whether it holds it, then `held`.
    AskHeld {
        message: Message,
        origin: (u32, u32),
    },
    /// Take it in (`take_in`), after these effects.
    TakeIn {
        message: Message,
        /// An alarm taken in after its seq had left the window.
        late: bool,
        effects: Vec<Effect>,
    },
    /// The store could not say: not acknowledged, so the device's repeat asks again.
    Refused,
}

/// What the store must do for a message to be taken in.
#[derive(Debug, Clone)]
pub enum Write {
    Raise(Box<Raise>),
    /// Mark the device's open emergency alert: the holder pressed cancel.
    Cancel {
        device: String,
        origin: (u32, u32),
        at: Millis,
    },
    /// Put the message on record under its `(boot, seq)`.
    Record {
        device: String,
        origin: (u32, u32),
        kind: &'static str,
        at: Millis,
    },
}

/// A message being taken in: effects first, then the write, then `stored` with `then`.
#[derive(Debug)]
pub struct TakeIn {
    pub effects: Vec<Effect>,
    /// `None`: nothing to write, taken in.
    pub write: Option<Write>,
    pub then: Taken,
}

/// What `stored` needs to finish a message off.
#[derive(Debug)]
pub struct Taken {
    device: String,
    context: Arc<DeviceContext>,
    origin: Option<(u32, u32)>,
    is_alarm: bool,
    late: bool,
    at: Millis,
}

/// How a message ends.
#[derive(Debug)]
pub enum Outcome {
    /// Taken in: acknowledge it to the broker once these are done.
    Acknowledge(Vec<Effect>),
    /// The store refused it for good: not acknowledged, not recorded as seen, so a
    /// redelivery or the device's own repeat gets another try.
    Refuse(Vec<Effect>),
}

/// What the ingest remembers per device between messages.
#[derive(Debug, Default)]
struct DeviceMemory {
    window: ReplayWindow,
    bad_signatures: BadSignatureTally,
    low_battery: LowBatteryEpisode,
    /// Missing messages over the policy's window: one technical alert per episode.
    missing: MissingEpisode,
    last_position: Option<Position>,
    /// When a bad signature last made us re-read this device's keys.
    keys_reread_at: Millis,
}

/// The ingest's state: every decision about a message is one of its methods.
pub struct Intake {
    policy: PolicyConfig,
    devices: HashMap<String, DeviceMemory>,
    /// Device health not yet written, flushed in batches.
    pending_health: HashMap<String, DeviceHealth>,
    /// Last stored security event per (device, kind): floods are counted, not stored.
    security_last: HashMap<(String, &'static str), Millis>,
    last_reload: Millis,
}

impl Intake {
    pub fn new(policy: PolicyConfig) -> Intake {
        Intake {
            policy,
            devices: HashMap::new(),
            pending_health: HashMap::new(),
            security_last: HashMap::new(),
            last_reload: 0,
        }
    }

    /// Restores what the store kept of a device: its anti-replay window and last position.
    pub fn remember(&mut self, device: &str, health: &DeviceHealth) {
        let memory = self.devices.entry(device.to_owned()).or_default();
        if let (Some(boot), Some(seq)) = (health.last_boot, health.last_seq) {
            memory.window = ReplayWindow::starting_at(boot, seq);
        }
        memory.last_position = health.last_position.map(|(p, _)| p);
    }

    /// A publish as the broker hands it over. On the embedded broker, which has no ACL of its
    /// own, a device may write only to its own uplink topics and never retained: anything
    /// else is refused here, before it could count against another device (three forged
    /// signatures on a victim's topic would otherwise raise a tamper alert on its case).
    pub fn receive(
        &mut self,
        publisher: Option<&str>,
        topic: &str,
        retain: bool,
        payload: &[u8],
    ) -> Received {
        let mut effects = vec![Effect::Count(Count::Message)];
        if let Some(publisher) = publisher {
            if let Err(why) = protocol::may_publish(publisher, topic, retain) {
                effects.push(Effect::Count(Count::TopicDenied));
                effects.push(security(
                    Some(publisher),
                    "topic_denied",
                    format!("{topic}: {why}"),
                ));
                return Received::Done(effects);
            }
        }
        // Our own downlink comes back to us through the wildcard subscription.
        if protocol::Downlink::of_leaf(topic).is_some() {
            return Received::Done(effects);
        }
        match protocol::open(topic, payload) {
            Ok(envelope) => Received::Opened { envelope, effects },
            Err(e) => {
                let device = protocol::parse_topic(topic)
                    .ok()
                    .map(|(d, _)| d.to_string());
                effects.push(Effect::Count(Count::Malformed));
                effects.push(Effect::Security {
                    device,
                    kind: "malformed",
                    detail: format!("{topic}: {e}"),
                });
                Received::Done(effects)
            }
        }
    }

    /// Whether to re-read the device from the store before going on with `entry`: when it
    /// is unknown or not issued here (another instance may have just issued it), at most
    /// every `DIRECTORY_RELOAD_MIN_MS`.
    pub fn reload_due(&mut self, entry: Option<&DeviceEntry>, now: Millis) -> bool {
        if entry.is_some_and(|e| e.context.is_some()) {
            return false;
        }
        if now - self.last_reload < DIRECTORY_RELOAD_MIN_MS {
            return false;
        }
        self.last_reload = now;
        true
    }

    /// Checks the signature against the device's entry as the directory has it.
    pub fn signature(
        &mut self,
        envelope: &Envelope,
        entry: Option<DeviceEntry>,
        now: Millis,
    ) -> Signature {
        let device = envelope.device.to_string();
        let Some(entry) = entry else {
            return Signature::Done(vec![
                Effect::Count(Count::UnknownDevice),
                security(Some(&device), "unknown_device", envelope.topic.clone()),
            ]);
        };
        match protocol::signed_by(envelope, &entry.key) {
            Ok(true) => Signature::Signed {
                entry,
                effects: Vec::new(),
            },
            Ok(false) => {
                let memory = self.devices.entry(device).or_default();
                if entry.next_key.is_none() && now - memory.keys_reread_at >= KEYS_REREAD_MIN_MS {
                    memory.keys_reread_at = now;
                    return Signature::RereadKeys;
                }
                next_key(envelope, entry)
            }
            Err(e) => Signature::Done(vec![
                Effect::Count(Count::Malformed),
                security(
                    Some(&device),
                    "malformed",
                    format!("{}: {e}", envelope.topic),
                ),
            ]),
        }
    }

    /// The device's keys as re-read from the store (`None`: no longer known).
    pub fn keys_reread(&self, envelope: &Envelope, entry: Option<DeviceEntry>) -> Signature {
        let Some(entry) = entry else {
            return Signature::Bad;
        };
        if protocol::signed_by(envelope, &entry.key).unwrap_or(false) {
            return Signature::Signed {
                entry,
                effects: Vec::new(),
            };
        }
        next_key(envelope, entry)
    }

    /// A message signed with the next key, after the store was asked to complete the
    /// rotation: `completed` is its answer (`None`: it refused for good), `fresh` the entry
    /// re-read since. From now on the new key is the only one.
    pub fn rotated(
        &self,
        envelope: &Envelope,
        entry: DeviceEntry,
        completed: Option<bool>,
        fresh: Option<DeviceEntry>,
    ) -> Signature {
        let device = envelope.device.to_string();
        let fresh = match fresh {
            Some(fresh) => fresh,
            None => DeviceEntry {
                key: entry
                    .next_key
                    .clone()
                    .map(|(key, _)| key)
                    .unwrap_or_else(|| entry.key.clone()),
                next_key: None,
                ..entry
            },
        };
        let effects = match completed {
            // The retained cfg still carries the wrapped key under the old one: replace it
            // with one signed by the new key.
            Some(true) => vec![
                Effect::KeyRotated {
                    device: device.clone(),
                },
                Effect::SendConfig { device },
            ],
            // Another instance completed this rotation (the key is now the device's), or a
            // later rotation replaced it (then this key was never taken up and counts no more).
            Some(false) if !protocol::signed_by(envelope, &fresh.key).unwrap_or(false) => {
                return Signature::Bad;
            }
            Some(false) => Vec::new(),
            // The store refused for good: the message is still the device's own, signed with
            // a key we issued; it is taken in, and the rotation completes at a later message.
            None => Vec::new(),
        };
        Signature::Signed {
            entry: fresh,
            effects,
        }
    }

    /// A message no key of the device signed; `entry` as the directory has it now. Only
    /// devices issued to an open case count towards the alert.
    pub fn bad_signature(
        &mut self,
        device: &str,
        topic: &str,
        entry: Option<&DeviceEntry>,
        now: Millis,
    ) -> Vec<Effect> {
        let mut effects = vec![
            Effect::Count(Count::BadSignature),
            security(Some(device), "bad_signature", topic.to_owned()),
        ];
        let Some(ctx) = entry.and_then(|e| e.context.as_ref()) else {
            return effects;
        };
        let memory = self.devices.entry(device.to_owned()).or_default();
        // A flood updates the alert (a store write and a push to every console) every few
        // seconds, not per message; the count covers every bad signature.
        if let Some(count) = memory.bad_signatures.note(&self.policy, now) {
            let trigger = Trigger::BadSignatures { count };
            let decision = triage::triage(&self.policy, ctx, &trigger, now, &[]);
            effects.extend(Raise::for_decision(decision, ctx, None, false, now).map(raise));
        }
        effects
    }

    /// Decodes a message the device signed and tells a fresh one from a duplicate or replay.
    pub fn admit(&mut self, envelope: Envelope, entry: &DeviceEntry) -> Admission {
        let device = envelope.device.to_string();
        let topic = envelope.topic.clone();
        let message = match protocol::decode(envelope) {
            Ok(m) => m,
            Err(e) => {
                return Admission::Done(vec![
                    Effect::Count(Count::Malformed),
                    security(Some(&device), "malformed", format!("{topic}: {e}")),
                ])
            }
        };
        if entry.status != DeviceStatus::Issued || entry.context.is_none() {
            return Admission::Done(vec![
                Effect::Count(Count::UnknownDevice),
                security(Some(&device), "unissued_device", topic),
            ]);
        }
        let memory = self.devices.entry(device.clone()).or_default();
        let freshness = match message.seq {
            Some(seq) => memory.window.check(message.boot, seq),
            // The last will has no seq: only an older boot gives it away as a replay.
            None => match memory.window.highest() {
                Some((boot, _)) if message.boot < boot => Freshness::Replay,
                _ => Freshness::Fresh,
            },
        };
        let is_alarm = matches!(message.payload, Payload::Alarm { .. });
        match (freshness, message.seq) {
            (Freshness::Duplicate, seq) => {
                let mut effects = vec![Effect::Count(Count::Duplicate)];
                // The first copy may have been stored by a run that died before answering.
                if let (true, Some(seq)) = (is_alarm, seq) {
                    effects.push(Effect::Received {
                        device,
                        origin: (message.boot, seq),
                    });
                }
                Admission::Done(effects)
            }
            // An alarm below the window or from an older boot, validly signed: the device
            // repeats an alarm until it hears `received`, however far its seq has moved on.
            (Freshness::Replay, Some(seq)) if is_alarm => Admission::AskHeld {
                origin: (message.boot, seq),
                message,
            },
            (Freshness::Replay, _) if is_alarm => Admission::Done(Vec::new()),
            (Freshness::Replay, seq) => Admission::Done(vec![
                Effect::Count(Count::Replay),
                security(
                    Some(&device),
                    "replay",
                    format!("{topic}: boot {} seq {seq:?}", message.boot),
                ),
            ]),
            (Freshness::Fresh, _) => Admission::TakeIn {
                message,
                late: false,
                effects: vec![Effect::Count(Count::Accepted)],
            },
        }
    }

    /// An alarm below the window, and whether the store holds it (`None`: it could not say).
    /// Held already: answered again, nothing else changes. Never arrived: taken in late.
    pub fn held(&self, message: Message, origin: (u32, u32), held: Option<bool>) -> Admission {
        match held {
            Some(true) => Admission::Done(vec![
                Effect::Count(Count::Duplicate),
                Effect::Received {
                    device: message.device.to_string(),
                    origin,
                },
            ]),
            Some(false) => Admission::TakeIn {
                message,
                late: true,
                effects: vec![Effect::Count(Count::Accepted)],
            },
            None => Admission::Refused,
        }
    }

    /// Takes in an admitted message: the device's health and memory, and what triage asks
    /// the store to do. `alarm_devices_of_case` names the alarm devices of a case (for a
    /// tag's proximity rule).
    pub fn take_in(
        &mut self,
        entry: &DeviceEntry,
        message: &Message,
        late_alarm: bool,
        alarm_devices_of_case: impl FnOnce(&str) -> Vec<String>,
        now: Millis,
    ) -> TakeIn {
        let device = message.device.to_string();
        let ctx = entry
            .context
            .clone()
            .expect("admit takes in only devices issued to a case");
        let mut effects = Vec::new();
        let memory = self.devices.entry(device.clone()).or_default();
        // A message the window can no longer place is an old one: it says nothing about the
        // device's battery or whereabouts now.
        let late = message
            .seq
            .is_some_and(|seq| memory.window.check(message.boot, seq) == Freshness::Replay);
        let health = self.pending_health.entry(device.clone()).or_default();
        let offline = matches!(message.payload, Payload::Offline);
        // The last will is the broker speaking, not the device: it is no sign of life. Nor is
        // a late message: old traffic played again must not keep a silent device looking
        // alive.
        if !offline && !late {
            health.last_heard_at = Some(now);
            effects.push(Effect::Heard {
                device: device.clone(),
                at: now,
            });
        }
        if !late {
            health.online = Some(!offline);
        }
        let trigger = match &message.payload {
            Payload::Hello { fw, model, hb_s } => {
                health.fw = Some(fw.clone());
                health.reported_model = Some(model.clone());
                health.hello_hb_s = Some(*hb_s);
                effects.push(Effect::ReportedInterval {
                    device: device.clone(),
                    hb_s: *hb_s,
                });
                if entry.hb_interval_s.is_some() || entry.next_key.is_some() {
                    effects.push(Effect::SendConfig {
                        device: device.clone(),
                    });
                }
                None
            }
            Payload::Heartbeat {
                batt,
                charging,
                rssi,
            } => {
                health.battery = Some(*batt);
                health.charging = Some(*charging);
                health.rssi = Some(*rssi);
                memory
                    .low_battery
                    .note(&self.policy, *batt, *charging)
                    .then_some(Trigger::Heartbeat {
                        battery: *batt,
                        charging: *charging,
                    })
            }
            Payload::Alarm { kind, batt, fix } => {
                if let Some(b) = batt.filter(|_| !late) {
                    health.battery = Some(b);
                }
                let position = fix.and_then(|f| Position::new(f.lat(), f.lon(), Some(f.acc_m)));
                if let Some(p) = position.filter(|_| !late) {
                    memory.last_position = Some(p);
                    health.last_position = Some((p, now));
                }
                Some(Trigger::Alarm {
                    kind: *kind,
                    position,
                    battery: *batt,
                })
            }
            Payload::Position { fix, .. } => Position::new(fix.lat(), fix.lon(), Some(fix.acc_m))
                .map(|p| {
                    memory.last_position = Some(p);
                    health.last_position = Some((p, now));
                    Trigger::Position(p)
                }),
            Payload::Offline => None,
        };
        let origin = message.seq.map(|seq| (message.boot, seq));
        let is_alarm = matches!(message.payload, Payload::Alarm { .. });
        let write = trigger.and_then(|trigger| {
            let alarm_positions = if ctx.kind == DeviceKind::Tag {
                self.last_positions(alarm_devices_of_case(&ctx.case.id))
            } else {
                Vec::new()
            };
            let mut decision = triage::triage(&self.policy, &ctx, &trigger, now, &alarm_positions);
            if late {
                decision = triage::arrived_late(decision, message.device_ts_ms);
            }
            write_for(decision, &ctx, &trigger, origin, is_alarm, now)
        });
        TakeIn {
            effects,
            write,
            then: Taken {
                device,
                context: ctx,
                origin,
                is_alarm,
                late: late_alarm,
                at: now,
            },
        }
    }

    /// A message whose write the store has done (`taken_in`) or refused for good.
    pub fn stored(&mut self, taken: Taken, taken_in: bool) -> Outcome {
        let Taken {
            device,
            context,
            origin,
            is_alarm,
            late,
            at,
        } = taken;
        if !taken_in {
            return Outcome::Refuse(vec![Effect::Count(Count::StoreRefused)]);
        }
        let mut effects = Vec::new();
        if let Some((boot, seq)) = origin {
            let memory = self.devices.entry(device.clone()).or_default();
            let missing = memory.window.record(boot, seq);
            let health = self.pending_health.entry(device.clone()).or_default();
            if let Some((boot, seq)) = memory.window.highest() {
                health.last_boot = Some(boot);
                health.last_seq = Some(seq);
            }
            if is_alarm {
                effects.push(Effect::Received {
                    device: device.clone(),
                    origin: (boot, seq),
                });
            }
            if missing > 0 {
                effects.push(Effect::Count(Count::Missing(missing)));
                health.messages_missing += missing;
            }
            // Time passes for the episode even when nothing is missing.
            if let Some(count) = memory.missing.note(&self.policy, at, missing) {
                tracing::warn!(device, count, "messages missing");
                let trigger = Trigger::MessagesMissing { count };
                let decision = triage::triage(&self.policy, &context, &trigger, at, &[]);
                effects.extend(Raise::for_decision(decision, &context, None, false, at).map(raise));
            }
        }
        if late {
            effects.push(Effect::Count(Count::Late));
            self.pending_health.entry(device).or_default().messages_late += 1;
        }
        Outcome::Acknowledge(effects)
    }

    /// Whether a security event is stored: one per device and kind every
    /// `SECURITY_EVENT_EVERY_MS`. Unknown ids are the attacker's choice: `known` false puts
    /// them all on one budget.
    pub fn security_event_due(
        &mut self,
        device: Option<&str>,
        known: bool,
        kind: &'static str,
        now: Millis,
    ) -> bool {
        let key = (
            if known { device.unwrap_or("") } else { "*" }.to_owned(),
            kind,
        );
        if self
            .security_last
            .get(&key)
            .is_some_and(|t| now - t < SECURITY_EVENT_EVERY_MS)
        {
            return false;
        }
        if self.security_last.len() > SECURITY_BUDGETS_MAX {
            self.security_last
                .retain(|_, t| now - *t < SECURITY_EVENT_EVERY_MS);
        }
        self.security_last.insert(key, now);
        true
    }

    /// The health gathered since the last flush, to write as one batch.
    pub fn take_health(&mut self) -> Vec<(String, DeviceHealth)> {
        self.pending_health.drain().collect()
    }

    /// Rows a flush could not write, kept under whatever has been gathered since.
    pub fn keep_unflushed(&mut self, kept: Vec<(String, DeviceHealth)>) {
        for (id, h) in kept {
            self.pending_health.entry(id).or_default().keep_unflushed(h);
        }
    }

    /// The last known positions of these devices, for the proximity rule of tags.
    fn last_positions(&self, devices: Vec<String>) -> Vec<(String, Position)> {
        devices
            .into_iter()
            .filter_map(|id| {
                let p = self.devices.get(&id)?.last_position?;
                Some((id, p))
            })
            .collect()
    }
}

/// A device over its rate: one security event for the messages refused since the last.
pub fn over_rate(device: String, refused: u64) -> Effect {
    Effect::Security {
        device: (device != "*").then_some(device),
        kind: "rate_limited",
        detail: format!("{refused} messages over the device's rate limit"),
    }
}

/// A security event's detail as stored. Topics and refusals carry whatever the sender put
/// in them; a control character (NUL above all) must not make the store refuse the record.
pub fn recordable(detail: &str) -> String {
    let mut clean = String::with_capacity(detail.len().min(SECURITY_DETAIL_MAX_CHARS));
    for c in detail.chars().take(SECURITY_DETAIL_MAX_CHARS) {
        if c.is_control() {
            clean.extend(c.escape_unicode());
        } else {
            clean.push(c);
        }
    }
    clean
}

fn security(device: Option<&str>, kind: &'static str, detail: String) -> Effect {
    Effect::Security {
        device: device.map(str::to_owned),
        kind,
        detail,
    }
}

fn raise(r: Raise) -> Effect {
    Effect::Raise(Box::new(r))
}

/// A message the current key did not sign may carry the device's next key.
fn next_key(envelope: &Envelope, entry: DeviceEntry) -> Signature {
    let Some((next, sealed)) = entry.next_key.clone() else {
        return Signature::Bad;
    };
    if !signed_by(envelope, &next) {
        return Signature::Bad;
    }
    Signature::NextKey { entry, sealed }
}

fn signed_by(envelope: &Envelope, key: &DeviceKey) -> bool {
    protocol::signed_by(envelope, key).unwrap_or(false)
}

/// What the store must do about triage's decision on a device's trigger.
fn write_for(
    decision: Decision,
    ctx: &DeviceContext,
    trigger: &Trigger,
    origin: Option<(u32, u32)>,
    is_alarm: bool,
    at: Millis,
) -> Option<Write> {
    let device = ctx.device_id.clone();
    match decision {
        decision @ Decision::Raise { .. } => {
            Raise::for_decision(decision, ctx, origin, is_alarm, at)
                .map(|r| Write::Raise(Box::new(r)))
        }
        Decision::MarkCancel => origin.map(|origin| Write::Cancel { device, origin, at }),
        Decision::RecordTest => origin.map(|origin| Write::Record {
            device,
            origin,
            kind: "test",
            at,
        }),
        // An alarm is still on record, so that a repeat of it is known as held.
        Decision::Nothing => match (trigger, origin) {
            (Trigger::Alarm { kind, .. }, Some(origin)) if is_alarm => Some(Write::Record {
                device,
                origin,
                kind: kind.as_str(),
                at,
            }),
            _ => None,
        },
        // Escalation is supervision's, never a device trigger's.
        Decision::Escalate { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::correlate::tests::context;
    use crate::domain::Risk;
    use crate::protocol::Body;

    const T0: Millis = 1_764_320_000_000;
    const S: Millis = 1000;

    fn key(byte: u8) -> DeviceKey {
        DeviceKey::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    /// dev-001, issued to a low-risk case, signing with `key(1)`.
    fn issued() -> DeviceEntry {
        DeviceEntry {
            key: key(1),
            next_key: None,
            kind: DeviceKind::Alarm,
            status: DeviceStatus::Issued,
            hb_interval_s: None,
            supervision_class: "standard".into(),
            case_id: Some("c1".into()),
            context: Some(Arc::new(context(Risk::Low))),
        }
    }

    /// The topic and body of an uplink of dev-001 on `leaf`, signed with `key`.
    fn publish(leaf: &str, members: &str, key: &DeviceKey) -> (String, String) {
        let topic = format!("vakt/v1/dev/dev-001/{leaf}");
        let body = Body::parse(members.as_bytes()).unwrap();
        let mac = key.sign(&topic, &body.canonical());
        (topic, body.with_mac(&mac))
    }

    fn uplink(leaf: &str, members: &str, key: &DeviceKey) -> Envelope {
        let (topic, body) = publish(leaf, members, key);
        protocol::open(&topic, body.as_bytes()).unwrap()
    }

    fn alarm(kind: &str, boot: u32, seq: u32) -> Envelope {
        let members =
            format!(r#"{{"boot":{boot},"kind":"{kind}","seq":{seq},"ts":1764320000123}}"#);
        uplink("alarm", &members, &key(1))
    }

    fn heartbeat(batt: u8, charging: bool, seq: u32) -> Envelope {
        let chg = u8::from(charging);
        let members = format!(
            r#"{{"batt":{batt},"boot":1,"chg":{chg},"rssi":-70,"seq":{seq},"ts":1764320000123}}"#
        );
        uplink("hb", &members, &key(1))
    }

    /// Effects in words, to compare them as a table.
    fn said(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Count(c) => format!("count {c:?}"),
                Effect::Security { kind, .. } => format!("security {kind}"),
                Effect::Received { origin, .. } => format!("received {}/{}", origin.0, origin.1),
                Effect::Heard { .. } => "heard".into(),
                Effect::ReportedInterval { hb_s, .. } => format!("interval {hb_s}"),
                Effect::SendConfig { .. } => "config".into(),
                Effect::Raise(r) => format!("raise {}", r.kind.as_str()),
                Effect::KeyRotated { .. } => "key rotated".into(),
            })
            .collect()
    }

    fn write_said(write: &Option<Write>) -> String {
        match write {
            None => "nothing".into(),
            Some(Write::Raise(r)) => format!("raise {}", r.kind.as_str()),
            Some(Write::Cancel { origin, .. }) => format!("cancel {}/{}", origin.0, origin.1),
            Some(Write::Record { kind, origin, .. }) => {
                format!("record {kind} {}/{}", origin.0, origin.1)
            }
        }
    }

    /// Takes a message in as the driver does with a store that writes everything: the
    /// effects of every step, and the write asked for.
    fn take_whole(intake: &mut Intake, envelope: Envelope, now: Millis) -> (Vec<String>, String) {
        let entry = issued();
        let (message, late, mut effects) = match intake.admit(envelope, &entry) {
            Admission::TakeIn {
                message,
                late,
                effects,
            } => (message, late, effects),
            other => panic!("not taken in: {other:?}"),
        };
        let take = intake.take_in(&entry, &message, late, |_| Vec::new(), now);
        effects.extend(take.effects);
        let write = write_said(&take.write);
        match intake.stored(take.then, true) {
            Outcome::Acknowledge(after) => effects.extend(after),
            Outcome::Refuse(_) => panic!("refused"),
        }
        (said(&effects), write)
    }

    fn remembering(boot: u32, seq: u32) -> Intake {
        let mut intake = Intake::new(PolicyConfig::default());
        let health = DeviceHealth {
            last_boot: Some(boot),
            last_seq: Some(seq),
            ..DeviceHealth::default()
        };
        intake.remember("dev-001", &health);
        intake
    }

    #[test]
    fn a_fresh_panic_is_raised_then_answered_received() {
        let mut intake = Intake::new(PolicyConfig::default());
        let (effects, write) = take_whole(&mut intake, alarm("panic", 1, 5), T0);
        assert_eq!(write, "raise panic");
        assert_eq!(effects, ["count Accepted", "heard", "received 1/5"]);
    }

    #[test]
    fn a_duplicate_alarm_is_answered_again_and_not_taken_in_twice() {
        let mut intake = Intake::new(PolicyConfig::default());
        take_whole(&mut intake, alarm("panic", 1, 5), T0);
        let Admission::Done(effects) = intake.admit(alarm("panic", 1, 5), &issued()) else {
            panic!("taken in twice")
        };
        assert_eq!(said(&effects), ["count Duplicate", "received 1/5"]);
    }

    #[test]
    fn a_duplicate_heartbeat_is_only_counted() {
        let mut intake = Intake::new(PolicyConfig::default());
        take_whole(&mut intake, heartbeat(80, false, 5), T0);
        let Admission::Done(effects) = intake.admit(heartbeat(80, false, 5), &issued()) else {
            panic!("taken in twice")
        };
        assert_eq!(said(&effects), ["count Duplicate"]);
    }

    #[test]
    fn a_stale_heartbeat_from_below_the_window_is_a_replay_and_a_security_event() {
        let mut intake = remembering(1, 200);
        let Admission::Done(effects) = intake.admit(heartbeat(80, false, 10), &issued()) else {
            panic!("a replay taken in")
        };
        assert_eq!(said(&effects), ["count Replay", "security replay"]);
    }

    #[test]
    fn a_stale_alarm_is_answered_again_when_held_and_taken_in_late_when_never_arrived() {
        let mut intake = remembering(1, 200);
        let Admission::AskHeld { message, origin } = intake.admit(alarm("panic", 1, 10), &issued())
        else {
            panic!("not asked")
        };
        assert_eq!(origin, (1, 10));
        let Admission::Done(effects) = intake.held(message.clone(), origin, Some(true)) else {
            panic!("held, yet taken in")
        };
        assert_eq!(said(&effects), ["count Duplicate", "received 1/10"]);
        assert!(matches!(
            intake.held(message.clone(), origin, None),
            Admission::Refused
        ));
        let Admission::TakeIn { message, late, .. } = intake.held(message, origin, Some(false))
        else {
            panic!("never arrived, yet not taken in")
        };
        assert!(late);
        let take = intake.take_in(&issued(), &message, late, |_| Vec::new(), T0);
        assert_eq!(
            said(&take.effects),
            Vec::<String>::new(),
            "old news is no sign of life"
        );
        let Some(Write::Raise(raise)) = &take.write else {
            panic!("not raised")
        };
        assert_eq!(raise.trigger.last().unwrap().code, "arrived_late");
        let Outcome::Acknowledge(effects) = intake.stored(take.then, true) else {
            panic!("refused")
        };
        assert_eq!(said(&effects), ["received 1/10", "count Late"]);
    }

    #[test]
    fn the_last_will_is_no_sign_of_life_and_a_will_from_an_older_boot_is_a_replay() {
        let mut intake = remembering(2, 7);
        let will = |boot: u32| {
            uplink(
                "state",
                &format!(r#"{{"boot":{boot},"online":false,"ts":1764320000123}}"#),
                &key(1),
            )
        };
        let (effects, write) = take_whole(&mut intake, will(2), T0);
        assert_eq!(
            (effects, write.as_str()),
            (vec!["count Accepted".to_owned()], "nothing")
        );
        assert_eq!(intake.take_health()[0].1.online, Some(false));
        let Admission::Done(effects) = intake.admit(will(1), &issued()) else {
            panic!("an old will taken in")
        };
        assert_eq!(said(&effects), ["count Replay", "security replay"]);
    }

    #[test]
    fn a_low_battery_heartbeat_raises_once_per_episode() {
        let mut intake = Intake::new(PolicyConfig::default());
        #[rustfmt::skip]
        let table: &[(u8, bool, &str)] = &[
            (80, false, "nothing"),
            (14, false, "raise low_battery"),
            (12, false, "nothing"),
            (12, true, "nothing"),
            (10, false, "raise low_battery"),
        ];
        for (seq, (batt, charging, want)) in table.iter().enumerate() {
            let (_, write) =
                take_whole(&mut intake, heartbeat(*batt, *charging, seq as u32 + 1), T0);
            assert_eq!(write, *want, "battery {batt} %, charging {charging}");
        }
    }

    #[test]
    fn a_cancel_marks_the_alert_and_a_test_is_recorded() {
        let mut intake = Intake::new(PolicyConfig::default());
        assert_eq!(
            take_whole(&mut intake, alarm("cancel", 1, 1), T0).1,
            "cancel 1/1"
        );
        assert_eq!(
            take_whole(&mut intake, alarm("test", 1, 2), T0).1,
            "record test 1/2"
        );
    }

    #[test]
    fn an_unknown_device_is_a_security_event() {
        let mut intake = Intake::new(PolicyConfig::default());
        let Signature::Done(effects) = intake.signature(&alarm("panic", 1, 1), None, T0) else {
            panic!("an unknown device went on")
        };
        assert_eq!(
            said(&effects),
            ["count UnknownDevice", "security unknown_device"]
        );
    }

    #[test]
    fn a_device_not_issued_to_an_open_case_is_refused() {
        let mut intake = Intake::new(PolicyConfig::default());
        let mut returned = issued();
        returned.status = DeviceStatus::Returned;
        let mut caseless = issued();
        caseless.context = None;
        for entry in [returned, caseless] {
            let Admission::Done(effects) = intake.admit(alarm("panic", 1, 1), &entry) else {
                panic!("taken in")
            };
            assert_eq!(
                said(&effects),
                ["count UnknownDevice", "security unissued_device"]
            );
        }
    }

    #[test]
    fn the_directory_is_reloaded_for_a_device_it_does_not_know_at_most_every_2_s() {
        let mut intake = Intake::new(PolicyConfig::default());
        assert!(!intake.reload_due(Some(&issued()), T0), "known: no reload");
        assert!(intake.reload_due(None, T0));
        assert!(!intake.reload_due(None, T0 + S));
        assert!(intake.reload_due(None, T0 + 2 * S));
    }

    #[test]
    fn three_bad_signatures_within_the_window_raise_a_bad_signatures_alert() {
        let mut intake = Intake::new(PolicyConfig::default());
        let topic = "vakt/v1/dev/dev-001/hb";
        let entry = issued();
        let said_at = |intake: &mut Intake, at| {
            said(&intake.bad_signature("dev-001", topic, Some(&entry), at))
        };
        assert_eq!(
            said_at(&mut intake, T0),
            ["count BadSignature", "security bad_signature"]
        );
        assert_eq!(said_at(&mut intake, T0 + 60 * S).len(), 2);
        assert_eq!(
            said_at(&mut intake, T0 + 120 * S),
            [
                "count BadSignature",
                "security bad_signature",
                "raise bad_signatures"
            ]
        );
        // Strays of a device not issued to a case never add up to an alert.
        let mut strays = Intake::new(PolicyConfig::default());
        for n in 0..5 {
            assert_eq!(
                strays
                    .bad_signature("dev-001", topic, None, T0 + n * S)
                    .len(),
                2
            );
        }
    }

    #[test]
    fn a_bad_signature_rereads_the_keys_at_most_every_10_s() {
        let mut intake = Intake::new(PolicyConfig::default());
        let forged = uplink(
            "alarm",
            r#"{"boot":1,"kind":"panic","seq":1,"ts":1}"#,
            &key(9),
        );
        assert!(matches!(
            intake.signature(&forged, Some(issued()), T0),
            Signature::RereadKeys
        ));
        assert!(matches!(
            intake.signature(&forged, Some(issued()), T0 + 9 * S),
            Signature::Bad
        ));
        assert!(matches!(
            intake.signature(&forged, Some(issued()), T0 + 10 * S),
            Signature::RereadKeys
        ));
        // Another instance had rotated the key: the re-read one fits.
        let mut rotated = issued();
        rotated.key = key(9);
        assert!(matches!(
            intake.keys_reread(&forged, Some(rotated)),
            Signature::Signed { .. }
        ));
        assert!(matches!(
            intake.keys_reread(&forged, Some(issued())),
            Signature::Bad
        ));
        assert!(matches!(intake.keys_reread(&forged, None), Signature::Bad));
    }

    /// dev-001 while its key is rotated to `key(2)`, and a panic signed with the new key.
    fn rotating() -> (DeviceEntry, Envelope) {
        let mut entry = issued();
        entry.next_key = Some((key(2), "sealed-2".into()));
        let panic = r#"{"boot":1,"kind":"panic","seq":1,"ts":1}"#;
        (entry, uplink("alarm", panic, &key(2)))
    }

    #[test]
    fn a_message_signed_with_the_next_key_completes_the_rotation() {
        let mut intake = Intake::new(PolicyConfig::default());
        let (rotating, message) = rotating();
        let Signature::NextKey { entry, sealed } =
            intake.signature(&message, Some(rotating.clone()), T0)
        else {
            panic!("the next key not recognised")
        };
        assert_eq!(sealed, "sealed-2");
        let Signature::Signed { entry, effects } =
            intake.rotated(&message, entry, Some(true), None)
        else {
            panic!("not taken in")
        };
        assert_eq!(
            entry.key.to_hex(),
            key(2).to_hex(),
            "the new key is the only one"
        );
        assert!(entry.next_key.is_none());
        assert_eq!(said(&effects), ["key rotated", "config"]);
    }

    #[test]
    fn a_rotation_another_instance_completed_or_a_later_one_replaced_is_judged_by_the_fresh_key() {
        let intake = Intake::new(PolicyConfig::default());
        let (rotating, message) = rotating();
        let fresh = |k: u8| {
            let mut e = issued();
            e.key = key(k);
            Some(e)
        };
        #[rustfmt::skip]
        let table: &[(&str, Option<bool>, Option<DeviceEntry>, bool)] = &[
            ("completed elsewhere: the key is now the device's", Some(false), fresh(2), true),
            ("replaced by a later rotation: the key never counted", Some(false), fresh(3), false),
            ("the store refused: taken in, completed at a later message", None, fresh(1), true),
        ];
        for (name, completed, fresh, signed) in table {
            let got = intake.rotated(&message, rotating.clone(), *completed, fresh.clone());
            match got {
                Signature::Signed { effects, .. } => {
                    assert!(*signed, "{name}");
                    assert!(effects.is_empty(), "{name}");
                }
                Signature::Bad => assert!(!*signed, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_device_may_publish_only_on_its_own_uplink_topics_on_the_embedded_broker() {
        let mut intake = Intake::new(PolicyConfig::default());
        let Received::Done(effects) =
            intake.receive(Some("dev-002"), "vakt/v1/dev/dev-001/alarm", false, b"{}")
        else {
            panic!("another device's topic accepted")
        };
        assert_eq!(
            said(&effects),
            [
                "count Message",
                "count TopicDenied",
                "security topic_denied"
            ]
        );
    }

    #[test]
    fn every_publish_is_counted_once_whatever_becomes_of_it() {
        let mut intake = Intake::new(PolicyConfig::default());
        let members = r#"{"batt":80,"boot":1,"chg":0,"rssi":-70,"seq":1,"ts":1}"#;
        let (topic, body) = publish("hb", members, &key(1));
        let Received::Opened { effects, .. } =
            intake.receive(Some("dev-001"), &topic, false, body.as_bytes())
        else {
            panic!("a device's own uplink refused")
        };
        assert_eq!(said(&effects), ["count Message"]);
    }

    #[test]
    fn our_own_downlink_coming_back_is_ignored_and_a_malformed_body_is_a_security_event() {
        let mut intake = Intake::new(PolicyConfig::default());
        let Received::Done(effects) = intake.receive(None, "vakt/v1/dev/dev-001/ack", false, b"{}")
        else {
            panic!("downlink taken for uplink")
        };
        assert_eq!(said(&effects), ["count Message"]);
        let Received::Done(effects) = intake.receive(None, "vakt/v1/dev/dev-001/hb", false, b"[")
        else {
            panic!("malformed opened")
        };
        assert_eq!(
            said(&effects),
            ["count Message", "count Malformed", "security malformed"]
        );
    }

    #[test]
    fn a_throttled_device_is_reported_as_one_security_event_at_most_every_10_s() {
        let Effect::Security {
            device,
            kind,
            detail,
        } = over_rate("dev-001".into(), 7)
        else {
            panic!()
        };
        assert_eq!((device.as_deref(), kind), (Some("dev-001"), "rate_limited"));
        assert_eq!(detail, "7 messages over the device's rate limit");
        assert!(matches!(
            over_rate("*".into(), 3),
            Effect::Security { device: None, .. }
        ));

        let mut intake = Intake::new(PolicyConfig::default());
        let due = |intake: &mut Intake, device, known, at| {
            intake.security_event_due(Some(device), known, "rate_limited", at)
        };
        assert!(due(&mut intake, "dev-001", true, T0));
        assert!(!due(&mut intake, "dev-001", true, T0 + 9 * S));
        assert!(
            due(&mut intake, "dev-002", true, T0 + 9 * S),
            "a budget per device"
        );
        assert!(due(&mut intake, "dev-001", true, T0 + 10 * S));
        // Unknown ids are the attacker's choice: one budget for all of them.
        assert!(due(&mut intake, "made-up-1", false, T0));
        assert!(!due(&mut intake, "made-up-2", false, T0 + S));
    }

    #[test]
    fn a_security_events_detail_is_stored_without_control_characters_and_bounded() {
        assert_eq!(recordable("a\0b"), "a\\u{0}b");
        assert_eq!(recordable(&"x".repeat(600)).len(), 500);
    }

    #[test]
    fn a_write_the_store_refuses_leaves_the_message_unacknowledged_and_unseen() {
        let mut intake = Intake::new(PolicyConfig::default());
        let entry = issued();
        let Admission::TakeIn { message, late, .. } = intake.admit(alarm("panic", 1, 5), &entry)
        else {
            panic!()
        };
        let take = intake.take_in(&entry, &message, late, |_| Vec::new(), T0);
        let Outcome::Refuse(effects) = intake.stored(take.then, false) else {
            panic!("acknowledged")
        };
        assert_eq!(said(&effects), ["count StoreRefused"]);
        assert!(
            matches!(
                intake.admit(alarm("panic", 1, 5), &entry),
                Admission::TakeIn { .. }
            ),
            "its repeat gets another try"
        );
    }

    #[test]
    fn seqs_that_leave_the_window_unseen_are_counted_missing_and_many_raise_a_technical_alert() {
        let mut intake = Intake::new(PolicyConfig::default());
        take_whole(&mut intake, heartbeat(80, false, 1), T0);
        let (effects, _) = take_whole(&mut intake, heartbeat(80, false, 100), T0 + S);
        assert!(
            effects.contains(&"raise messages_missing".to_owned()),
            "{effects:?}"
        );
        assert!(
            effects.iter().any(|e| e.starts_with("count Missing")),
            "{effects:?}"
        );
        assert!(intake.take_health()[0].1.messages_missing > 0);
    }

    #[test]
    fn a_hello_reports_the_interval_and_gets_the_coordinators_config_again() {
        let mut intake = Intake::new(PolicyConfig::default());
        let hello = |seq: u32| {
            uplink(
                "hello",
                &format!(r#"{{"boot":1,"fw":"1.0","hb":30,"model":"m","seq":{seq},"ts":1}}"#),
                &key(1),
            )
        };
        let (effects, _) = take_whole(&mut intake, hello(1), T0);
        assert_eq!(effects, ["count Accepted", "heard", "interval 30"]);
        let mut set = issued();
        set.hb_interval_s = Some(60);
        let Admission::TakeIn { message, .. } = intake.admit(hello(2), &set) else {
            panic!()
        };
        let take = intake.take_in(&set, &message, false, |_| Vec::new(), T0);
        assert_eq!(said(&take.effects), ["heard", "interval 30", "config"]);
    }
}
