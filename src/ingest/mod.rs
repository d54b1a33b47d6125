//! The ingest: takes device messages from the broker, verifies and de-duplicates them,
//! correlates and triages them, stores alerts durably, and only then acknowledges them to
//! the broker and answers the device. Every decision is `intake`'s, a pure state machine;
//! `Ingest` is the async driver that performs them.

pub mod intake;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::Publish;
use tokio::sync::{mpsc, watch};

use crate::directory::{DeviceEntry, Directory};
use crate::domain::now_ms;
use crate::domain::policy::PolicyConfig;
use crate::hub::Hub;
use crate::metrics::{MessageResult, Metrics};
use crate::mqtt::queue::{Inbox, IngestQueue, RateLimit};
use crate::mqtt::{
    self, Acks, BrokerEvent, BrokerLink, BrokerSide, BrokerTask, Delivery, Downlink,
};
use crate::protocol::{self, Feedback, Uplink};
use crate::readiness::Readiness;
use crate::store::{
    Audit, CancelOutcome, DeviceHealth, MessageWrite, MessageWritten, Raise, RaiseOutcome,
    SharedStore, StoreError,
};
use crate::supervise::Supervision;
use intake::{Admission, Count, Effect, Intake, Received, Signature, Write};

/// The thin async driver of the ingest: performs what `Intake` decides.
pub struct Ingest {
    store: SharedStore,
    directory: Directory,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// Tells the broker a message is stored.
    acks: Acks,
    downlink: Downlink,
    intake: Intake,
    supervision: Supervision,
    /// Whether a store write is being retried right now (not ready meanwhile).
    store_failing: watch::Sender<bool>,
    /// The kind of the message being handled (`None`: its topic is no uplink), for its
    /// counts.
    kind: Option<Uplink>,
    /// The health flush under way, if any; it hands back the rows it could not write.
    health_flush: Option<tokio::task::JoinHandle<Vec<(String, DeviceHealth)>>>,
}

/// Health rows (and so the liveness other instances read) are written this often.
const HEALTH_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The audit entry's words for a completed key rotation.
const KEY_ROTATED: &str = "the device signs with its new key; the old one is no longer accepted";

/// The most messages one transaction takes in (group commit): a storm's thousands of alarms
/// cost tens of commits instead of thousands, while one batch's work stays a few
/// milliseconds, so the first alarm in it is not held up for long.
const BATCH_MAX: usize = 256;

/// How far `take` got with a message.
enum Step {
    /// Finished without a write: acknowledge it to the broker (true) or not.
    Done(bool),
    /// Taken in: its write (if any) goes into the batch's transaction, then `stored`.
    Taken {
        write: Option<Write>,
        then: intake::Taken,
    },
}

/// A message taken in, waiting for its write in its batch's transaction.
struct Pending {
    publish: Publish,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    arrived: tokio::time::Instant,
    kind: Option<Uplink>,
    write: MessageWrite,
    then: intake::Taken,
}

/// The store's form of what `Intake` asks to be written.
fn message_write(write: Write) -> MessageWrite {
    match write {
        Write::Raise(raise) => MessageWrite::Raise(*raise),
        Write::Cancel {
            device,
            origin: (boot, seq),
            at,
        } => MessageWrite::Cancel {
            device_id: device,
            boot,
            seq,
            at,
        },
        Write::Record {
            device,
            origin: (boot, seq),
            kind,
            at,
        } => MessageWrite::Record {
            device_id: device,
            boot,
            seq,
            kind,
            at,
        },
    }
}

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

/// Starts the embedded broker on `listeners` with the ingest behind it; returns at once.
///
/// `backend_identities` are names no login may use there besides the reserved prefix (the
/// configured client id and username, whatever they are).
#[cfg(feature = "embedded")]
pub async fn start_embedded(
    listeners: mqtt::embedded::Listeners,
    parts: IngestParts,
    backend_identities: Vec<String>,
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let broker = mqtt::embedded::open(
        listeners,
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
            acks,
            downlink,
            intake: Intake::new(policy),
            supervision,
            store_failing,
            kind: None,
            health_flush: None,
        };
        ingest.restore().await?;
        tokio::spawn(ingest.process(inbox, events, shutdown));
        Ok(())
    }

    /// Restores the anti-replay windows and last positions from the store.
    async fn restore(&mut self) -> Result<(), StoreError> {
        for d in self.store.devices().await? {
            self.intake.remember(&d.id, &d.health);
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
                first = rx.recv() => {
                    // Group commit: whatever else is waiting already goes into the same
                    // transaction; nothing waits for more to arrive.
                    let mut batch = Vec::new();
                    self.prepare(first, &mut batch).await;
                    while batch.len() < BATCH_MAX {
                        let Some(next) = rx.try_recv() else { break };
                        self.prepare(next, &mut batch).await;
                    }
                    self.commit(batch).await;
                }
                Some(e) = next_event(&mut events) => {
                    self.security_event(e.device.as_deref(), e.kind, &e.detail).await;
                }
                _ = flush.tick() => {
                    self.start_health_flush().await;
                    self.report_throttled(&mut rx).await;
                }
                _ = shutdown.changed() => break,
            }
        }
        self.end_health_flush().await;
        self.start_health_flush().await;
        self.end_health_flush().await;
    }

    /// Takes one message as far as it goes without its write: one that ends here is
    /// acknowledged (or not) at once; one taken in joins `batch` to be written with it.
    async fn prepare(
        &mut self,
        (delivery, arrived): (Delivery, tokio::time::Instant),
        batch: &mut Vec<Pending>,
    ) {
        let Delivery {
            publish,
            publisher,
            done,
        } = delivery;
        match self.take(publisher.as_deref(), &publish).await {
            Step::Done(true) => self.acks.stored(done, &publish).await,
            // Dropping `done` tells the embedded broker to close the device's connection
            // without a PUBACK; it sends the message again.
            Step::Done(false) => {}
            // Nothing to write: finished at once, so that the next message is judged with
            // this one's seq on record, as it would be one message at a time.
            Step::Taken { write: None, then } => self.finish(then, true, done, &publish).await,
            Step::Taken {
                write: Some(write),
                then,
            } => batch.push(Pending {
                publish,
                done,
                arrived,
                kind: self.kind,
                write: message_write(write),
                then,
            }),
        }
    }

    /// A message whose write is committed (`taken_in`) or refused for good: recorded as
    /// seen, answered and acknowledged, or left for the device's repeat.
    async fn finish(
        &mut self,
        then: intake::Taken,
        taken_in: bool,
        done: Option<tokio::sync::oneshot::Sender<()>>,
        publish: &Publish,
    ) {
        match self.intake.stored(then, taken_in) {
            intake::Outcome::Acknowledge(effects) => {
                self.perform(effects).await;
                // Only now, with everything stored, may the broker forget the message.
                self.acks.stored(done, publish).await;
            }
            // Dropping `done` tells the embedded broker to close the device's connection
            // without a PUBACK; it sends the message again.
            intake::Outcome::Refuse(effects) => self.perform(effects).await,
        }
    }

    /// Writes a batch's messages in one transaction, then finishes each in arrival order:
    /// answered, counted and acknowledged only once its write is committed. When the store
    /// refuses the batch for good, each message is written on its own, so that one bad
    /// message fails only itself. A transient failure retries the whole batch.
    async fn commit(&mut self, batch: Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        let writes: Arc<[MessageWrite]> = batch.iter().map(|p| p.write.clone()).collect();
        let mut written: Vec<Option<MessageWritten>> = Vec::with_capacity(writes.len());
        let started = tokio::time::Instant::now();
        let outcome = self
            .durably(|s| {
                let writes = writes.clone();
                async move { s.write_messages(&writes).await }
            })
            .await;
        match outcome {
            Some(all) => {
                self.metrics.ingest_transaction.observe(started.elapsed());
                Metrics::inc(&self.metrics.ingest_transactions_total);
                self.metrics
                    .ingest_writes_total
                    .fetch_add(all.len() as u64, Ordering::Relaxed);
                written.extend(all.into_iter().map(Some));
            }
            None => {
                tracing::warn!(
                    messages = writes.len(),
                    "the store refused a group of messages; writing each on its own"
                );
                for write in writes.iter() {
                    let one = self
                        .durably(|s| {
                            let write = std::slice::from_ref(write).to_vec();
                            async move { s.write_messages(&write).await }
                        })
                        .await;
                    if one.is_some() {
                        Metrics::inc(&self.metrics.ingest_transactions_total);
                        Metrics::inc(&self.metrics.ingest_writes_total);
                    }
                    written.push(one.and_then(|mut w| w.pop()));
                }
            }
        }
        for (pending, written) in batch.into_iter().zip(written) {
            self.kind = pending.kind;
            let alarm_arrived = (pending.kind == Some(Uplink::Alarm)).then_some(pending.arrived);
            let taken_in = self.announce(written, alarm_arrived);
            if taken_in {
                self.metrics
                    .message_commit
                    .observe(pending.arrived.elapsed());
            }
            self.finish(pending.then, taken_in, pending.done, &pending.publish)
                .await;
        }
    }

    /// One security event per device over its rate (they are rate-limited in turn).
    async fn report_throttled(&mut self, rx: &mut Inbox) {
        let effects = rx
            .take_throttled()
            .into_iter()
            .map(|(device, n)| intake::over_rate(device, n))
            .collect();
        self.perform(effects).await;
    }

    /// Writes the health gathered since the last flush, beside the ingest rather than in
    /// its way: with thousands of devices beating, a flush is thousands of rows, and an
    /// alarm arriving meanwhile must not wait for them. One flush at a time; while one is
    /// still under way, the rows gathered since wait for the next tick.
    async fn start_health_flush(&mut self) {
        if self.health_flush.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        self.end_health_flush().await;
        let batch = self.intake.take_health();
        if batch.is_empty() {
            return;
        }
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        self.health_flush = Some(tokio::spawn(async move {
            write_health(&store, &metrics, batch).await
        }));
    }

    /// Waits for the flush under way, if any; the rows it could not write are kept under
    /// whatever has been gathered since, for the next.
    async fn end_health_flush(&mut self) {
        let Some(flush) = self.health_flush.take() else {
            return;
        };
        match flush.await {
            Ok(kept) => self.intake.keep_unflushed(kept),
            Err(e) => tracing::error!(error = %e, "the device health flush failed"),
        }
    }

    /// One message up to its write: each step of `Intake` decides, the driver looks up and
    /// answers in between. Never fails: what cannot be taken in is counted and recorded as a
    /// security event, and the ingest goes on.
    async fn take(&mut self, publisher: Option<&str>, p: &Publish) -> Step {
        self.kind = uplink_kind(&p.topic);
        let envelope = match self
            .intake
            .receive(publisher, &p.topic, p.retain, &p.payload)
        {
            Received::Done(effects) => return Step::Done(self.done(effects).await),
            Received::Opened { envelope, effects } => {
                self.perform(effects).await;
                envelope
            }
        };
        let device_id = envelope.device.to_string();
        let entry = self.lookup(&device_id).await;
        let mut signature = self.intake.signature(&envelope, entry, now_ms());
        let entry = loop {
            signature = match signature {
                Signature::Signed { entry, effects } => {
                    self.perform(effects).await;
                    break entry;
                }
                Signature::Done(effects) => return Step::Done(self.done(effects).await),
                Signature::RereadKeys => {
                    self.refresh_device(&device_id).await;
                    let entry = self.directory.device(&device_id);
                    self.intake.keys_reread(&envelope, entry)
                }
                Signature::NextKey { entry, sealed } => {
                    let now = now_ms();
                    let case_id = entry.context.as_ref().map(|c| c.case.id.clone());
                    let completed = self
                        .durably(|store| {
                            let (id, sealed, case_id) =
                                (device_id.clone(), sealed.clone(), case_id.clone());
                            async move {
                                let audit = Audit::new(None, "device_key_rotated")
                                    .subject(&id)
                                    .case(case_id.as_deref())
                                    .detail(KEY_ROTATED);
                                store.complete_key_rotation(&id, &sealed, now, &audit).await
                            }
                        })
                        .await;
                    self.refresh_device(&device_id).await;
                    let fresh = self.directory.device(&device_id);
                    self.intake.rotated(&envelope, entry, completed, fresh)
                }
                Signature::Bad => {
                    let entry = self.directory.device(&device_id);
                    let effects =
                        self.intake
                            .bad_signature(&device_id, &p.topic, entry.as_ref(), now_ms());
                    return Step::Done(self.done(effects).await);
                }
            }
        };
        let mut admission = self.intake.admit(envelope, &entry);
        let (message, late) = loop {
            admission = match admission {
                Admission::Done(effects) => return Step::Done(self.done(effects).await),
                Admission::Refused => return Step::Done(false),
                Admission::AskHeld { message, origin } => {
                    let held = self
                        .durably(|s| {
                            let id = device_id.clone();
                            async move { s.holds_message(&id, origin.0, origin.1).await }
                        })
                        .await;
                    self.intake.held(message, origin, held)
                }
                Admission::TakeIn {
                    message,
                    late,
                    effects,
                } => {
                    self.perform(effects).await;
                    break (message, late);
                }
            }
        };
        let index = &self.directory;
        let take = self.intake.take_in(
            &entry,
            &message,
            late,
            |case| index.snapshot().alarm_devices_of_case(case),
            now_ms(),
        );
        self.perform(take.effects).await;
        Step::Taken {
            write: take.write,
            then: take.then,
        }
    }

    /// Performs the effects of a message the broker may forget.
    async fn done(&mut self, effects: Vec<Effect>) -> bool {
        self.perform(effects).await;
        true
    }

    async fn perform(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Count(count) => self.count(count),
                Effect::Security {
                    device,
                    kind,
                    detail,
                } => self.security_event(device.as_deref(), kind, &detail).await,
                Effect::Received { device, origin } => {
                    self.downlink
                        .feedback(&device, origin, Feedback::Received)
                        .await
                }
                Effect::Heard { device, at } => self.supervision.heard(&device, at),
                Effect::ReportedInterval { device, hb_s } => {
                    self.supervision
                        .reported_interval(&device, hb_s, &self.directory)
                }
                Effect::SendConfig { device } => {
                    self.downlink.config(&device).await;
                }
                Effect::Raise(raise) => {
                    self.raise(&raise).await;
                }
                Effect::KeyRotated { device } => {
                    tracing::info!(device, "device key rotation complete");
                }
            }
        }
    }

    fn count(&self, count: Count) {
        let m = &self.metrics;
        let result = match count {
            Count::Message => return Metrics::inc(&m.messages_total),
            Count::Late => return Metrics::inc(&m.messages_late_total),
            Count::StoreRefused => return Metrics::inc(&m.store_refused_total),
            Count::Missing(n) => {
                m.messages_missing_total.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Count::Malformed => MessageResult::Malformed,
            Count::TopicDenied => MessageResult::TopicDenied,
            Count::UnknownDevice => MessageResult::UnknownDevice,
            Count::BadSignature => MessageResult::BadSignature,
            Count::Duplicate => MessageResult::Duplicate,
            Count::Replay => MessageResult::Replay,
            Count::Accepted => MessageResult::Accepted,
        };
        m.messages.inc(self.kind, result);
    }

    /// Stores an alert and pushes it to the consoles; false when the store refused it.
    async fn raise(&mut self, raise: &Raise) -> bool {
        let outcome = self
            .durably(|s| {
                let r = raise.clone();
                async move { s.raise(&r).await }
            })
            .await;
        self.announce(outcome.map(MessageWritten::Raise), None)
    }

    /// Counts a committed write and pushes what it changed to the consoles; false when the
    /// store refused it (`None`). `alarm_arrived`: when the device alarm that made it reached
    /// the ingest, so the live streams time the alarm's whole way to the consoles.
    fn announce(
        &mut self,
        written: Option<MessageWritten>,
        alarm_arrived: Option<tokio::time::Instant>,
    ) -> bool {
        match written {
            Some(MessageWritten::Raise(RaiseOutcome::Opened(change))) => {
                self.metrics.alert_opened(&change.alert);
                tracing::info!(
                    alert = change.alert.id,
                    kind = change.alert.kind.as_str(),
                    priority = change.alert.priority.get(),
                    device = change.alert.device_id.as_deref().unwrap_or_default(),
                    "alert opened"
                );
                self.hub.publish_alarm(change, alarm_arrived);
            }
            Some(MessageWritten::Raise(RaiseOutcome::Updated(change))) => {
                self.metrics.alert_updated(&change.alert);
                self.hub.publish_alarm(change, alarm_arrived);
            }
            // Taken in as fresh, but the store already held it (a redelivery after a
            // restart, or a second copy in the same batch).
            Some(MessageWritten::Raise(RaiseOutcome::Duplicate)) => self
                .metrics
                .messages
                .inc(self.kind, MessageResult::Duplicate),
            Some(MessageWritten::Cancel(CancelOutcome::Marked(change))) => {
                self.hub.publish(*change)
            }
            Some(MessageWritten::Cancel(_) | MessageWritten::Record(_)) => {}
            None => return false,
        }
        true
    }

    /// The device's entry, read again from the store first when `Intake` says so: only
    /// this device and its case, never the whole directory.
    async fn lookup(&mut self, device_id: &str) -> Option<DeviceEntry> {
        let entry = self.directory.device(device_id);
        if !self.intake.reload_due(entry.as_ref(), now_ms()) {
            return entry;
        }
        self.refresh_device(device_id).await;
        self.directory.device(device_id)
    }

    async fn refresh_device(&self, device_id: &str) {
        if let Err(e) = self.directory.refresh_device(&self.store, device_id).await {
            tracing::warn!(device = device_id, error = %e, "could not re-read the device's keys");
        }
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
        let known = device_id.is_some_and(|id| self.directory.device(id).is_some());
        if !self.intake.security_event_due(device_id, known, kind, now) {
            return;
        }
        tracing::warn!(device = device_id, kind, detail, "security event");
        let detail = intake::recordable(detail);
        if let Err(e) = self
            .store
            .security_event(device_id, kind, &detail, now)
            .await
        {
            tracing::error!(error = %e, "could not store a security event");
        }
    }
}

/// The kind a topic names, for the counts: the leaf of `vakt/v1/dev/{id}/{leaf}` (the id is
/// checked where it matters, in `intake`), without an allocation per message.
fn uplink_kind(topic: &str) -> Option<Uplink> {
    let (_, leaf) = topic
        .strip_prefix(protocol::TOPIC_PREFIX)?
        .split_once('/')?;
    Uplink::ALL.iter().copied().find(|k| k.name() == leaf)
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
