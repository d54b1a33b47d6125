//! The ingest: takes device messages from the broker, verifies and de-duplicates them,
//! correlates and triages them, stores alerts durably, and only then acknowledges them to
//! the broker and answers the device.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::Publish;
use tokio::sync::{mpsc, watch};

use crate::directory::{DeviceEntry, Directory};
use crate::domain::correlate::DeviceContext;
use crate::domain::policy::episodes::{BadSignatureTally, LowBatteryEpisode, MissingEpisode};
use crate::domain::policy::triage::{self, Trigger};
use crate::domain::policy::{Decision, PolicyConfig};
use crate::domain::{now_ms, DeviceKind, DeviceStatus, Millis, Position};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt::queue::{Inbox, IngestQueue, RateLimit};
use crate::mqtt::{
    self, Acks, BrokerEvent, BrokerLink, BrokerSide, BrokerTask, Delivery, Downlink,
};
use crate::protocol::{self, Feedback, Freshness, Message, Payload, ReplayWindow};
use crate::readiness::Readiness;
use crate::store::{CancelOutcome, DeviceHealth, Raise, RaiseOutcome, SharedStore, StoreError};
use crate::supervise::Supervision;

/// What the ingest remembers per device between messages.
#[derive(Debug, Default)]
struct DeviceRuntime {
    window: ReplayWindow,
    bad_signatures: BadSignatureTally,
    low_battery: LowBatteryEpisode,
    /// Missing messages over the policy's window: one technical alert per episode.
    missing: MissingEpisode,
    last_position: Option<Position>,
    /// When a bad signature last made us re-read this device's keys.
    keys_reread_at: Millis,
}

pub struct Ingest {
    store: SharedStore,
    directory: Directory,
    hub: Hub,
    metrics: Arc<Metrics>,
    policy: PolicyConfig,
    /// Tells the broker a message is stored.
    acks: Acks,
    downlink: Downlink,
    devices: HashMap<String, DeviceRuntime>,
    pending_health: HashMap<String, DeviceHealth>,
    /// Last stored security event per (device, kind): floods are counted, not stored.
    security_last: HashMap<(String, &'static str), Millis>,
    last_reload: Millis,
    supervision: Supervision,
    /// Set when the store refused (for good) what the message in hand asked for: then it is
    /// not acknowledged, since a PUBACK would tell the device it is stored.
    refused_by_store: bool,
    /// Whether a store write is being retried right now (not ready meanwhile).
    store_failing: watch::Sender<bool>,
}

/// A message from an unknown device reloads the directory at most this often.
const DIRECTORY_RELOAD_MIN_MS: Millis = 2_000;
/// A bad signature re-reads the device's keys (another instance may have rotated them) at
/// most this often per device, so a forger cannot make us query the store per message.
const KEYS_REREAD_MIN_MS: Millis = 10_000;

/// Security events of one kind from one device are stored at most this often.
const SECURITY_EVENT_EVERY_MS: Millis = 10_000;
/// Health rows (and so the liveness other instances read) are written this often.
const HEALTH_FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct IngestHandle {
    pub downlink: Downlink,
    /// Where a drained session of a dead instance hands its messages.
    pub deliveries: IngestQueue,
    pub readiness: Readiness,
}

/// What the ingest works with besides its broker link.
pub struct IngestParts {
    pub store: SharedStore,
    pub directory: Directory,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub policy: PolicyConfig,
    pub supervision: Supervision,
    /// What each device may send (see `queue`).
    pub rate: RateLimit,
}

/// Connects to an external broker and starts the ingest; returns at once.
pub async fn start(
    link: BrokerLink,
    parts: IngestParts,
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let broker = mqtt::link::connect(
        &link,
        &parts.store,
        &parts.directory,
        parts.rate,
        parts.metrics.clone(),
    )
    .await?;
    run(parts, broker, shutdown).await
}

/// Starts the embedded broker on `listener` with the ingest behind it; returns at once.
///
/// `backend_identities` are names no login may use there besides the reserved prefix (the
/// configured client id and username, whatever they are).
#[cfg(feature = "embedded")]
pub async fn start_embedded(
    listener: tokio::net::TcpListener,
    parts: IngestParts,
    backend_identities: Vec<String>,
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let broker = mqtt::embedded::open(
        listener,
        &parts.directory,
        parts.rate,
        parts.metrics.clone(),
        backend_identities,
    );
    run(parts, broker, shutdown).await
}

/// Starts the ingest on its broker side, then the broker's own work.
async fn run(
    parts: IngestParts,
    (side, task): (BrokerSide, BrokerTask),
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let (store_failing_tx, store_failing) = watch::channel(false);
    let handle = IngestHandle {
        downlink: side.downlink.clone(),
        deliveries: side.deliveries.clone(),
        readiness: Readiness {
            broker_connected: side.connected.clone(),
            store_failing,
        },
    };
    Ingest::start(parts, side, store_failing_tx, shutdown.clone()).await?;
    task.run(shutdown);
    Ok(handle)
}

/// Writes a batch of device health rows; returns the rows to try again with the next batch
/// (the store was unreachable). One row the store refuses for good must not hold back every
/// other device's liveness and replay window, so a refused batch is written row by row and
/// only the refused row is given up (logged and counted).
pub async fn write_health(
    store: &SharedStore,
    metrics: &Metrics,
    batch: Vec<(String, DeviceHealth)>,
) -> Vec<(String, DeviceHealth)> {
    match store.flush_health(&batch).await {
        Ok(()) => Vec::new(),
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "device health flush failed; keeping it for the next one");
            batch
        }
        Err(e) => {
            tracing::warn!(error = %e, "device health batch refused; writing it row by row");
            let mut kept = Vec::new();
            for row in batch {
                let row = [row];
                match store.flush_health(&row).await {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => kept.extend(row),
                    Err(e) => {
                        let [(id, _)] = row;
                        Metrics::inc(&metrics.health_rows_refused_total);
                        tracing::error!(device = id, error = %e, "the store refused a device's health row; it is dropped");
                    }
                }
            }
            kept
        }
    }
}

impl Ingest {
    /// Builds the ingest, restores what it remembers, and runs it on the broker side's inbox.
    async fn start(
        parts: IngestParts,
        broker: BrokerSide,
        store_failing: watch::Sender<bool>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let IngestParts {
            store,
            directory,
            hub,
            metrics,
            policy,
            supervision,
            rate: _,
        } = parts;
        let BrokerSide {
            inbox,
            events,
            acks,
            downlink,
            deliveries: _,
            connected: _,
        } = broker;
        let mut ingest = Ingest {
            store,
            directory,
            hub,
            metrics,
            policy,
            acks,
            downlink,
            devices: HashMap::new(),
            pending_health: HashMap::new(),
            security_last: HashMap::new(),
            last_reload: 0,
            supervision,
            refused_by_store: false,
            store_failing,
        };
        ingest.restore().await?;
        tokio::spawn(ingest.process(inbox, events, shutdown));
        Ok(())
    }

    /// Restores the anti-replay windows and last positions from the store.
    async fn restore(&mut self) -> Result<(), StoreError> {
        for d in self.store.devices().await? {
            let rt = self.devices.entry(d.id.clone()).or_default();
            if let (Some(boot), Some(seq)) = (d.health.last_boot, d.health.last_seq) {
                rt.window = ReplayWindow::starting_at(boot, seq);
            }
            rt.last_position = d.health.last_position.map(|(p, _)| p);
        }
        Ok(())
    }

    async fn process(
        mut self,
        mut rx: Inbox,
        mut events: Option<mpsc::Receiver<BrokerEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut flush = tokio::time::interval(HEALTH_FLUSH_EVERY);
        loop {
            tokio::select! {
                d = rx.recv() => {
                    let Delivery { publish: p, publisher, done } = d;
                    self.handle_from(publisher.as_deref(), &p).await;
                    if std::mem::take(&mut self.refused_by_store) {
                        // Dropping `done` tells the embedded broker to close the device's
                        // connection without a PUBACK; it sends the message again.
                        continue;
                    }
                    self.acks.stored(done, &p).await;
                }
                Some(e) = next_event(&mut events) => {
                    self.security_event(e.device.as_deref(), e.kind, &e.detail).await;
                }
                _ = flush.tick() => {
                    self.flush_health().await;
                    self.report_throttled(&mut rx).await;
                }
                _ = shutdown.changed() => break,
            }
        }
        self.flush_health().await;
    }

    /// One security event per device over its rate (they are rate-limited in turn).
    async fn report_throttled(&mut self, rx: &mut Inbox) {
        for (device, n) in rx.take_throttled() {
            let detail = format!("{n} messages over the device's rate limit");
            let device = (device != "*").then_some(device);
            self.security_event(device.as_deref(), "rate_limited", &detail)
                .await;
        }
    }

    async fn flush_health(&mut self) {
        if self.pending_health.is_empty() {
            return;
        }
        let batch: Vec<(String, DeviceHealth)> = self.pending_health.drain().collect();
        let kept = write_health(&self.store, &self.metrics, batch).await;
        for (id, h) in kept {
            self.pending_health.entry(id).or_default().keep_unflushed(h);
        }
    }

    /// A publish as the broker hands it over. On the embedded broker, which has no ACL of its
    /// own, a device may write only to its own uplink topics and never retained: anything
    /// else is refused here, before it could count against another device (three forged
    /// signatures on a victim's topic would otherwise raise a tamper alert on its case).
    async fn handle_from(&mut self, publisher: Option<&str>, p: &Publish) {
        if let Some(publisher) = publisher {
            if let Err(why) = protocol::may_publish(publisher, &p.topic, p.retain) {
                Metrics::inc(&self.metrics.messages_total);
                Metrics::inc(&self.metrics.topic_denied_total);
                let detail = format!("{}: {why}", p.topic);
                self.security_event(Some(publisher), "topic_denied", &detail)
                    .await;
                return;
            }
        }
        self.handle(&p.topic, &p.payload).await;
    }

    /// One message, start to end. Never fails: what cannot be taken in is counted and
    /// recorded as a security event, and the ingest goes on.
    pub async fn handle(&mut self, topic: &str, payload: &[u8]) {
        Metrics::inc(&self.metrics.messages_total);
        // Our own downlink comes back to us through the wildcard subscription.
        if protocol::Downlink::of_leaf(topic).is_some() {
            return;
        }
        let envelope = match protocol::open(topic, payload) {
            Ok(e) => e,
            Err(e) => {
                Metrics::inc(&self.metrics.malformed_total);
                let device = protocol::parse_topic(topic)
                    .ok()
                    .map(|(d, _)| d.to_string());
                self.security_event(device.as_deref(), "malformed", &format!("{topic}: {e}"))
                    .await;
                return;
            }
        };
        let device_id = envelope.device.to_string();
        let Some(entry) = self.lookup(&device_id).await else {
            Metrics::inc(&self.metrics.unknown_devices_total);
            self.security_event(Some(&device_id), "unknown_device", topic)
                .await;
            return;
        };
        let signed = match protocol::signed_by(&envelope, &entry.key) {
            Ok(true) => Some(entry),
            Ok(false) => {
                self.signed_with_next_key(&device_id, &envelope, entry)
                    .await
            }
            Err(e) => {
                Metrics::inc(&self.metrics.malformed_total);
                self.security_event(Some(&device_id), "malformed", &format!("{topic}: {e}"))
                    .await;
                return;
            }
        };
        let Some(entry) = signed else {
            Metrics::inc(&self.metrics.bad_signatures_total);
            self.security_event(Some(&device_id), "bad_signature", topic)
                .await;
            if let Some(entry) = self.directory.device(&device_id) {
                self.count_bad_signature(&device_id, &entry).await;
            }
            return;
        };
        let message = match protocol::decode(envelope) {
            Ok(m) => m,
            Err(e) => {
                Metrics::inc(&self.metrics.malformed_total);
                self.security_event(Some(&device_id), "malformed", &format!("{topic}: {e}"))
                    .await;
                return;
            }
        };
        if entry.status != DeviceStatus::Issued || entry.context.is_none() {
            Metrics::inc(&self.metrics.unknown_devices_total);
            self.security_event(Some(&device_id), "unissued_device", topic)
                .await;
            return;
        }
        let rt = self.devices.entry(device_id.clone()).or_default();
        let freshness = match message.seq {
            Some(seq) => rt.window.check(message.boot, seq),
            // The last will has no seq: only an older boot gives it away as a replay.
            None => match rt.window.highest() {
                Some((boot, _)) if message.boot < boot => Freshness::Replay,
                _ => Freshness::Fresh,
            },
        };
        match freshness {
            Freshness::Duplicate => {
                Metrics::inc(&self.metrics.duplicates_total);
                // The first copy may have been stored by a run that died before answering.
                if let (Payload::Alarm { .. }, Some(seq)) = (&message.payload, message.seq) {
                    self.downlink
                        .feedback(&device_id, (message.boot, seq), Feedback::Received)
                        .await;
                }
                return;
            }
            Freshness::Replay if matches!(message.payload, Payload::Alarm { .. }) => {
                self.late_alarm(&entry, message).await;
                return;
            }
            Freshness::Replay => {
                Metrics::inc(&self.metrics.replays_total);
                let detail = format!("{topic}: boot {} seq {:?}", message.boot, message.seq);
                self.security_event(Some(&device_id), "replay", &detail)
                    .await;
                return;
            }
            Freshness::Fresh => {}
        }
        Metrics::inc(&self.metrics.messages_accepted_total);
        self.take_in(&entry, message).await;
    }

    /// An alarm below the window or from an older boot, validly signed: the device repeats an
    /// alarm until it hears `received`, however far its seq has moved on meanwhile. Held
    /// already: answered again, nothing else changes. Never arrived: taken in late, as usual.
    async fn late_alarm(&mut self, entry: &DeviceEntry, message: Message) {
        let (device_id, boot) = (message.device.to_string(), message.boot);
        let Some(seq) = message.seq else {
            return;
        };
        let held = self
            .durably(|s| {
                let id = device_id.clone();
                async move { s.holds_message(&id, boot, seq).await }
            })
            .await;
        match held {
            Some(true) => {
                Metrics::inc(&self.metrics.duplicates_total);
                self.downlink
                    .feedback(&device_id, (boot, seq), Feedback::Received)
                    .await;
            }
            Some(false) => {
                Metrics::inc(&self.metrics.messages_accepted_total);
                if self.take_in(entry, message).await {
                    Metrics::inc(&self.metrics.messages_late_total);
                    self.pending_health
                        .entry(device_id)
                        .or_default()
                        .messages_late += 1;
                }
            }
            // The store could not say: not acknowledged, and the device's next repeat asks
            // again.
            None => self.refused_by_store = true,
        }
    }

    /// True once the message is taken in (stored where it must be, answered if an alarm).
    async fn take_in(&mut self, entry: &DeviceEntry, message: Message) -> bool {
        let now = now_ms();
        let device_id = message.device.to_string();
        let ctx = entry.context.clone().expect("checked by the caller");
        // A message the window can no longer place is an old one: it says nothing about the
        // device's battery or whereabouts now.
        let late = message.seq.is_some_and(|seq| {
            self.devices
                .get(&device_id)
                .is_some_and(|rt| rt.window.check(message.boot, seq) == Freshness::Replay)
        });
        let health = self.pending_health.entry(device_id.clone()).or_default();
        let offline = matches!(message.payload, Payload::Offline);
        // The last will is the broker speaking, not the device: it is no sign of life. Nor is
        // a late message: old traffic played again must not keep a silent device looking
        // alive.
        if !offline && !late {
            health.last_heard_at = Some(now);
            self.supervision.heard(&device_id, now);
        }
        if !late {
            health.online = Some(!offline);
        }
        let rt = self.devices.entry(device_id.clone()).or_default();
        let trigger = match &message.payload {
            Payload::Hello { fw, model, hb_s } => {
                health.fw = Some(fw.clone());
                health.reported_model = Some(model.clone());
                health.hello_hb_s = Some(*hb_s);
                self.supervision
                    .reported_interval(&device_id, *hb_s, &self.directory);
                if entry.hb_interval_s.is_some() || entry.next_key.is_some() {
                    self.downlink.config(&device_id).await;
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
                rt.low_battery
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
                    rt.last_position = Some(p);
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
                    rt.last_position = Some(p);
                    health.last_position = Some((p, now));
                    Trigger::Position(p)
                }),
            Payload::Offline => None,
        };
        let origin = message.seq.map(|seq| (message.boot, seq));
        let is_alarm = matches!(message.payload, Payload::Alarm { .. });
        let late_since = late.then_some(message.device_ts_ms);
        let taken_in = match trigger {
            Some(trigger) => {
                self.act(
                    &ctx, &device_id, &trigger, origin, is_alarm, late_since, now,
                )
                .await
            }
            None => true,
        };
        if !taken_in {
            // Not recorded as seen, and not acknowledged: a redelivery or the device's own
            // repeat gets another try.
            self.refused_by_store = true;
            Metrics::inc(&self.metrics.store_refused_total);
            return false;
        }
        if let Some((boot, seq)) = origin {
            let rt = self.devices.entry(device_id.clone()).or_default();
            let missing = rt.window.record(boot, seq);
            let health = self.pending_health.entry(device_id.clone()).or_default();
            if let Some((boot, seq)) = rt.window.highest() {
                health.last_boot = Some(boot);
                health.last_seq = Some(seq);
            }
            if is_alarm {
                self.downlink
                    .feedback(&device_id, (boot, seq), Feedback::Received)
                    .await;
            }
            self.count_missing(&ctx, &device_id, missing, now).await;
        }
        true
    }

    /// Counts the seqs the window has just given up on, and raises the technical alert once
    /// an episode of them reaches the policy's threshold.
    async fn count_missing(
        &mut self,
        ctx: &DeviceContext,
        device_id: &str,
        missing: u64,
        now: Millis,
    ) {
        if missing > 0 {
            self.metrics
                .messages_missing_total
                .fetch_add(missing, Ordering::Relaxed);
            self.pending_health
                .entry(device_id.to_owned())
                .or_default()
                .messages_missing += missing;
        }
        let rt = self.devices.entry(device_id.to_owned()).or_default();
        let Some(count) = rt.missing.note(&self.policy, now, missing) else {
            return;
        };
        tracing::warn!(device = device_id, count, "messages missing");
        let trigger = Trigger::MessagesMissing { count };
        let decision = triage::triage(&self.policy, ctx, &trigger, now, &[]);
        if let Some(raise) = Raise::for_decision(decision, ctx, None, false, now) {
            self.raise(&raise).await;
        }
    }

    /// Triage and the store: true once what the message asks for is durably done.
    /// `late_since`: the device's time of a message taken in after it left the window.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &mut self,
        ctx: &DeviceContext,
        device_id: &str,
        trigger: &Trigger,
        origin: Option<(u32, u32)>,
        is_alarm: bool,
        late_since: Option<Millis>,
        now: Millis,
    ) -> bool {
        let alarm_positions = if ctx.kind == DeviceKind::Tag {
            self.alarm_positions_of_case(&ctx.case.id)
        } else {
            Vec::new()
        };
        let mut decision = triage::triage(&self.policy, ctx, trigger, now, &alarm_positions);
        if let Some(sent) = late_since {
            decision = triage::arrived_late(decision, sent);
        }
        match decision {
            decision @ Decision::Raise { .. } => {
                let raise =
                    Raise::for_decision(decision, ctx, origin, is_alarm, now).expect("a raise");
                self.raise(&raise).await
            }
            Decision::MarkCancel => {
                let Some((boot, seq)) = origin else {
                    return false;
                };
                let outcome = self
                    .durably(|s| {
                        let id = device_id.to_owned();
                        async move { s.cancel(&id, boot, seq, now).await }
                    })
                    .await;
                if let Some(CancelOutcome::Marked(change)) = &outcome {
                    self.hub.publish((**change).clone());
                }
                outcome.is_some()
            }
            Decision::RecordTest => {
                let Some((boot, seq)) = origin else {
                    return false;
                };
                self.durably(|s| {
                    let id = device_id.to_owned();
                    async move { s.record_message(&id, boot, seq, "test", now).await }
                })
                .await
                .is_some()
            }
            // Escalation is supervision's, never a device trigger's.
            Decision::Escalate { .. } => true,
            // An alarm is still on record, so that a repeat of it is known as held.
            Decision::Nothing => match (trigger, origin) {
                (Trigger::Alarm { kind, .. }, Some((boot, seq))) if is_alarm => self
                    .durably(|s| {
                        let id = device_id.to_owned();
                        async move { s.record_message(&id, boot, seq, kind.as_str(), now).await }
                    })
                    .await
                    .is_some(),
                _ => true,
            },
        }
    }

    /// Stores an alert and pushes it to the consoles; false when the store refused it.
    async fn raise(&mut self, raise: &Raise) -> bool {
        let outcome = self
            .durably(|s| {
                let r = raise.clone();
                async move { s.raise(&r).await }
            })
            .await;
        match outcome {
            Some(RaiseOutcome::Opened(change)) => {
                Metrics::inc(&self.metrics.alerts_opened_total);
                tracing::info!(alert = change.alert.id, kind = change.alert.kind.as_str(), priority = change.alert.priority.get(), device = %raise.device_id, "alert opened");
                self.hub.publish(change);
            }
            Some(RaiseOutcome::Updated(change)) => {
                Metrics::inc(&self.metrics.alerts_updated_total);
                self.hub.publish(change);
            }
            Some(RaiseOutcome::Duplicate) => Metrics::inc(&self.metrics.duplicates_total),
            None => return false,
        }
        true
    }

    fn alarm_positions_of_case(&self, case_id: &str) -> Vec<(String, Position)> {
        self.directory
            .snapshot()
            .alarm_devices_of_case(case_id)
            .into_iter()
            .filter_map(|id| {
                let p = self.devices.get(&id)?.last_position?;
                Some((id, p))
            })
            .collect()
    }

    /// A message the current key did not sign may carry the device's next key: then the
    /// rotation is complete, and the new key is the only one from now on. The keys are
    /// re-read first (rate-limited) when this instance knows of no next key, since another
    /// instance or the command line may have started the rotation. The entry to go on with,
    /// or `None` for a bad signature.
    async fn signed_with_next_key(
        &mut self,
        device_id: &str,
        envelope: &protocol::Envelope,
        mut entry: DeviceEntry,
    ) -> Option<DeviceEntry> {
        let now = now_ms();
        let rt = self.devices.entry(device_id.to_owned()).or_default();
        if entry.next_key.is_none() && now - rt.keys_reread_at >= KEYS_REREAD_MIN_MS {
            rt.keys_reread_at = now;
            if let Err(e) = self.directory.refresh_device(&self.store, device_id).await {
                tracing::warn!(device = device_id, error = %e, "could not re-read the device's keys");
            }
            entry = self.directory.device(device_id)?;
            if protocol::signed_by(envelope, &entry.key).unwrap_or(false) {
                return Some(entry);
            }
        }
        let (next, sealed) = entry.next_key.clone()?;
        if !protocol::signed_by(envelope, &next).unwrap_or(false) {
            return None;
        }
        let completed = self
            .durably(|store| {
                let (id, sealed) = (device_id.to_owned(), sealed.clone());
                async move { store.complete_key_rotation(&id, &sealed, now).await }
            })
            .await;
        if completed == Some(true) {
            let detail = "the device signs with its new key; the old one is no longer accepted";
            let case_id = entry.context.as_ref().map(|c| c.case.id.clone());
            if let Err(e) = self
                .store
                .audit(
                    None,
                    "device_key_rotated",
                    Some(device_id),
                    case_id.as_deref(),
                    Some(detail),
                    now,
                )
                .await
            {
                tracing::error!(device = device_id, error = %e, "could not audit the key rotation");
            }
            tracing::info!(device = device_id, "device key rotation complete");
        }
        if let Err(e) = self.directory.refresh_device(&self.store, device_id).await {
            tracing::warn!(device = device_id, error = %e, "could not re-read the device's keys");
        }
        let fresh = self.directory.device(device_id).unwrap_or(DeviceEntry {
            key: next,
            next_key: None,
            ..entry
        });
        match completed {
            // The retained cfg still carries the wrapped key under the old one: replace it
            // with one signed by the new key.
            Some(true) => {
                self.downlink.config(device_id).await;
            }
            // Another instance completed this rotation (the key is now the device's), or a
            // later rotation replaced it (then this key was never taken up and counts no more).
            Some(false) if !protocol::signed_by(envelope, &fresh.key).unwrap_or(false) => {
                return None;
            }
            Some(false) => {}
            // The store refused for good: the message is still the device's own, signed with
            // a key we issued; it is taken in, and the rotation completes at a later message.
            None => {}
        }
        Some(fresh)
    }

    async fn count_bad_signature(&mut self, device_id: &str, entry: &DeviceEntry) {
        let Some(ctx) = entry.context.clone() else {
            return;
        };
        let now = now_ms();
        let rt = self.devices.entry(device_id.to_owned()).or_default();
        // A flood updates the alert (a store write and a push to every console) every few
        // seconds, not per message; the count covers every bad signature.
        let Some(count) = rt.bad_signatures.note(&self.policy, now) else {
            return;
        };
        let trigger = Trigger::BadSignatures { count };
        let decision = triage::triage(&self.policy, &ctx, &trigger, now, &[]);
        if let Some(raise) = Raise::for_decision(decision, &ctx, None, false, now) {
            self.raise(&raise).await;
        }
    }

    /// The device's entry, reloading the directory once when it is unknown or not issued
    /// here: another instance may have just issued it.
    async fn lookup(&mut self, device_id: &str) -> Option<DeviceEntry> {
        let entry = self.directory.device(device_id);
        if entry.as_ref().is_some_and(|e| e.context.is_some()) {
            return entry;
        }
        let now = now_ms();
        if now - self.last_reload < DIRECTORY_RELOAD_MIN_MS {
            return entry;
        }
        self.last_reload = now;
        if let Err(e) = self.directory.reload(&self.store).await {
            tracing::warn!(error = %e, "directory reload failed");
        }
        self.directory.device(device_id)
    }

    /// Runs a store write until it succeeds: an alarm is never given up because the database
    /// hiccupped. Errors that a retry cannot fix are logged and give `None`.
    async fn durably<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: Fn(SharedStore) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            let result = op(self.store.clone()).await;
            let failing = matches!(&result, Err(e) if e.is_transient());
            self.store_failing.send_replace(failing);
            match result {
                Ok(v) => return Some(v),
                Err(e) if e.is_transient() => {
                    Metrics::inc(&self.metrics.store_retries_total);
                    tracing::error!(error = %e, "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    // Retrying cannot help and would hold up every other device: the
                    // message is not marked as seen, so the device's own retry comes back.
                    tracing::error!(error = %e, "store refused a write; the message is dropped");
                    return None;
                }
            }
        }
    }

    async fn security_event(&mut self, device_id: Option<&str>, kind: &'static str, detail: &str) {
        Metrics::inc(&self.metrics.security_events_total);
        let now = now_ms();
        // Unknown ids are the attacker's choice: one budget for all of them.
        let known = device_id.is_some_and(|id| self.directory.device(id).is_some());
        let key = (
            if known { device_id.unwrap_or("") } else { "*" }.to_owned(),
            kind,
        );
        if self
            .security_last
            .get(&key)
            .is_some_and(|t| now - t < SECURITY_EVENT_EVERY_MS)
        {
            return;
        }
        if self.security_last.len() > 100_000 {
            self.security_last
                .retain(|_, t| now - *t < SECURITY_EVENT_EVERY_MS);
        }
        self.security_last.insert(key, now);
        tracing::warn!(device = device_id, kind, detail, "security event");
        // Topics and refusals carry whatever the sender put in them; a control character
        // (NUL above all) must not make the store refuse the record of it.
        let mut clean = String::with_capacity(detail.len().min(500));
        for c in detail.chars().take(500) {
            if c.is_control() {
                clean.extend(c.escape_unicode());
            } else {
                clean.push(c);
            }
        }
        let detail = clean;
        if let Err(e) = self
            .store
            .security_event(device_id, kind, &detail, now)
            .await
        {
            tracing::error!(error = %e, "could not store a security event");
        }
    }
}

/// The next broker event, or never when there is no embedded broker (or it has stopped).
async fn next_event(events: &mut Option<mpsc::Receiver<BrokerEvent>>) -> Option<BrokerEvent> {
    match events {
        Some(rx) => match rx.recv().await {
            Some(e) => Some(e),
            None => {
                *events = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
