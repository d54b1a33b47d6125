//! The ingest: takes device messages from the broker, verifies and de-duplicates them,
//! correlates and triages them, stores alerts durably, and only then acknowledges them to
//! the broker and answers the device. Every decision is `intake`'s, a pure state machine;
//! `Ingest` is the async driver that performs them.

pub mod intake;
pub mod queue;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};

use crate::broker::EmbeddedBroker;
use crate::directory::{DeviceEntry, Directory};
use crate::domain::now_ms;
use crate::domain::policy::PolicyConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::{self, Feedback};
use crate::store::{CancelOutcome, DeviceHealth, Raise, RaiseOutcome, SharedStore, StoreError};
use crate::supervise::Supervision;
use intake::{Admission, Count, Effect, Intake, Received, Signature, Write};
use queue::{Inbox, IngestQueue, RateLimit, Refused};

/// How the ingest reaches its broker.
#[derive(Debug, Clone)]
pub struct BrokerLink {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// This instance's broker user; when set it is `client_id` too.
    pub username: Option<String>,
    /// The backend's broker secret, from which each backend user's password is derived.
    pub secret: Option<String>,
    /// A shared-subscription group, so several instances split the devices; `None`: a plain
    /// subscription.
    pub share_group: Option<String>,
}

impl BrokerLink {
    /// The login for the session kept under `client_id` (this instance's, or a dead one's
    /// that the supervision leader drains): on a broker with logins, the backend user of
    /// that name and its password, since the broker makes each user's name its client id.
    pub fn login(&self, client_id: &str) -> Option<(String, String)> {
        self.username.as_ref()?;
        let secret = self.secret.as_deref().unwrap_or_default();
        Some((
            client_id.to_owned(),
            crate::broker::backend_password(secret, client_id),
        ))
    }

    /// Parses `mqtt://host:port` (port 1883 when left out).
    pub fn parse_url(url: &str) -> Option<(String, u16)> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))?;
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
            None if !rest.is_empty() => Some((rest.to_owned(), 1883)),
            None => None,
        }
    }
}

/// Sends signed downlink messages to devices; shared by the ingest and the API.
#[derive(Clone)]
pub struct Downlink {
    sink: DownlinkSink,
    directory: Directory,
    metrics: Arc<Metrics>,
}

/// Where downlink goes: through the backend's client on an external broker, or straight
/// into the embedded broker.
#[derive(Clone)]
enum DownlinkSink {
    Client(AsyncClient),
    Embedded(EmbeddedBroker),
}

impl DownlinkSink {
    async fn publish(&self, topic: String, retain: bool, body: String) -> Result<(), String> {
        match self {
            DownlinkSink::Client(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, body)
                .await
                .map_err(|e| e.to_string()),
            DownlinkSink::Embedded(b) => {
                b.publish(&topic, body.into(), retain);
                Ok(())
            }
        }
    }
}

impl Downlink {
    /// Tells a device what happened to its alarm `(boot, seq)`.
    pub async fn feedback(&self, device_id: &str, origin: (u32, u32), st: Feedback) {
        let (Some(entry), Ok(device)) = (
            self.directory.device(device_id),
            protocol::DeviceId::parse(device_id),
        ) else {
            return;
        };
        let (topic, body) =
            protocol::feedback_body(&device, &entry.key, origin.0, origin.1, st, now_ms());
        match self.sink.publish(topic, false, body).await {
            Ok(()) => Metrics::inc(&self.metrics.feedback_sent_total),
            Err(e) => tracing::warn!(device = device_id, error = %e, "could not queue feedback"),
        }
    }

    /// Publishes the device's configuration as the directory holds it (the coordinator's
    /// interval, a next key waiting), retained, so the device gets it at its next connect
    /// too. True once queued.
    pub async fn config(&self, device_id: &str) -> bool {
        let (Some(entry), Ok(device)) = (
            self.directory.device(device_id),
            protocol::DeviceId::parse(device_id),
        ) else {
            return false;
        };
        let next = entry.next_key.as_ref().map(|(key, _)| key);
        let (topic, body) =
            protocol::config_body(&device, &entry.key, entry.hb_interval_s, next, now_ms());
        match self.sink.publish(topic, true, body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = device_id, error = %e, "could not queue config");
                false
            }
        }
    }
}

/// The thin async driver of the ingest: performs what `Intake` decides.
pub struct Ingest {
    store: SharedStore,
    directory: Directory,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// The backend's own session on an external broker; `None` on the embedded broker.
    client: Option<AsyncClient>,
    downlink: Downlink,
    intake: Intake,
    supervision: Supervision,
}

/// Health rows (and so the liveness other instances read) are written this often.
const HEALTH_FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct IngestHandle {
    pub downlink: Downlink,
    /// Where a drained session of a dead instance hands its messages.
    pub deliveries: IngestQueue,
}

/// A message to take in, and who acknowledges it to the broker once it is stored.
pub struct Delivery {
    pub publish: Publish,
    /// The device that published it, where the broker is ours and knows (the embedded one);
    /// `None` on an external broker, whose ACL keeps devices on their own topics.
    pub publisher: Option<String>,
    /// `None`: the ingest's own session on an external broker (nothing to tell on the
    /// embedded one); `Some`: tell this sender instead.
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A security event the embedded broker saw (a login under a reserved name, a subscription
/// outside the device's own topics), counted, rate-limited and stored like the ingest's own.
#[derive(Debug)]
pub struct BrokerEvent {
    /// The device it concerns, when the broker knows one for sure.
    pub device: Option<String>,
    pub kind: &'static str,
    pub detail: String,
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

/// Messages waiting for the ingest. The embedded broker stops reading a device's connection
/// when its share is full, so a burst waits here or in the device, never in a lossy log.
const DELIVERY_QUEUE: usize = 10_000;
/// Broker security events waiting for the ingest; past this they are counted and logged
/// only (a flood of refused logins must not hold up the broker).
const BROKER_EVENT_QUEUE: usize = 1_000;

/// Connects to an external broker and starts the ingest; returns at once.
pub async fn start(
    link: BrokerLink,
    parts: IngestParts,
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let mut options = MqttOptions::new(&link.client_id, &link.host, link.port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(15))
        .set_max_packet_size(64 * 1024, 64 * 1024)
        .set_inflight(100);
    if let Some((user, password)) = link.login(&link.client_id) {
        options.set_credentials(user, password);
    }
    let (client, eventloop) = AsyncClient::new(options, 1024);
    let metrics = parts.metrics.clone();
    // A session an earlier run of this client id had must still be there.
    let session = SessionExpectation {
        expected: parts.store.broker_session_noted(&link.client_id).await?,
        store: parts.store.clone(),
        client_id: link.client_id.clone(),
    };
    let (tx, rx) = IngestQueue::new(DELIVERY_QUEUE, parts.rate, parts.metrics.clone());
    let downlink = Ingest::start(
        parts,
        Some(client.clone()),
        DownlinkSink::Client(client.clone()),
        rx,
        None,
        shutdown.clone(),
    )
    .await?;
    let filter = match &link.share_group {
        Some(group) => format!("$share/{group}/{}", protocol::UPLINK_FILTER),
        None => protocol::UPLINK_FILTER.to_owned(),
    };
    tokio::spawn(poll(
        eventloop,
        client,
        filter,
        tx.clone(),
        metrics,
        session,
        shutdown,
    ));
    Ok(IngestHandle {
        downlink,
        deliveries: tx,
    })
}

/// Starts the embedded broker on `listener` with the ingest behind it; returns at once.
///
/// `backend_identities` are names no login may use there besides the reserved prefix (the
/// configured client id and username, whatever they are).
pub async fn start_embedded(
    listener: tokio::net::TcpListener,
    parts: IngestParts,
    backend_identities: Vec<String>,
    shutdown: watch::Receiver<bool>,
) -> Result<IngestHandle, StoreError> {
    let (tx, rx) = IngestQueue::new(DELIVERY_QUEUE, parts.rate, parts.metrics.clone());
    let (events_tx, events) = mpsc::channel(BROKER_EVENT_QUEUE);
    let broker = EmbeddedBroker::new(
        parts.directory.clone(),
        tx.clone(),
        events_tx,
        parts.metrics.clone(),
        backend_identities,
    );
    let metrics = parts.metrics.clone();
    let downlink = Ingest::start(
        parts,
        None,
        DownlinkSink::Embedded(broker.clone()),
        rx,
        Some(events),
        shutdown.clone(),
    )
    .await?;
    broker.serve(listener, shutdown);
    metrics.broker_connected.store(true, Ordering::Relaxed);
    Ok(IngestHandle {
        downlink,
        deliveries: tx,
    })
}

/// Takes over the persistent session of an instance that died, takes in what the broker
/// had queued for it, and then ends the session, so the broker stops sending that
/// instance's share of the devices into a queue nobody reads.
pub async fn drain_session(link: &BrokerLink, client_id: &str, deliveries: &IngestQueue) -> usize {
    let mut taken = 0;
    for clean in [false, true] {
        let mut options = MqttOptions::new(client_id, &link.host, link.port);
        options
            .set_clean_session(clean)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(64 * 1024, 64 * 1024);
        if let Some((user, password)) = link.login(client_id) {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut connected = false;
        loop {
            // Quiet for a second after connecting: the queue is empty.
            let wait = if connected {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            };
            let event = match tokio::time::timeout(wait, eventloop.poll()).await {
                Ok(e) => e,
                Err(_) => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) if clean => break,
                Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let (done, stored) = tokio::sync::oneshot::channel();
                    let delivery = Delivery {
                        publish: p.clone(),
                        publisher: None,
                        done: Some(done),
                    };
                    if deliveries.send(delivery).await.is_err() || stored.await.is_err() {
                        return taken;
                    }
                    taken += 1;
                    if client.ack(&p).await.is_err() {
                        break;
                    }
                    // Let the PUBACK go out before the next message.
                    let _ = tokio::time::timeout(Duration::from_millis(50), eventloop.poll()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "cannot drain a dead instance's session");
                    break;
                }
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
        }
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
    taken
}

/// Tells a lost broker session from a first one. The (external) broker owes the ingest its
/// session once this process has had one, or once the store notes that an earlier run had
/// one under this client id.
struct SessionExpectation {
    expected: bool,
    /// Where the session is noted.
    store: SharedStore,
    client_id: String,
}

impl SessionExpectation {
    fn established(&mut self) {
        if std::mem::replace(&mut self.expected, true) {
            return;
        }
        let store = self.store.clone();
        let client_id = self.client_id.clone();
        // Off the event loop: a slow database must not hold up the broker link.
        tokio::spawn(async move {
            if let Err(e) = store.note_broker_session(&client_id, now_ms()).await {
                tracing::warn!(error = %e, "cannot note the broker session in the store");
            }
        });
    }
}

/// Drives the MQTT connection; hands every publish to the processor in arrival order.
async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    tx: IngestQueue,
    metrics: Arc<Metrics>,
    mut session: SessionExpectation,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => {
                let _ = client.disconnect().await;
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    session_present = ack.session_present,
                    "ingest connected to the broker"
                );
                if !ack.session_present && session.expected {
                    Metrics::inc(&metrics.broker_session_lost_total);
                    tracing::warn!(
                        client_id = %session.client_id,
                        "the broker no longer has the ingest's persistent session, so what it \
                         queued for vakt is lost and only the devices' repeats bring those \
                         alarms in; likely causes: the broker does not persist its state \
                         (persistence false) or crashed before its autosave, the session \
                         expired (persistent_client_expiration), or the client id changed"
                    );
                }
                // Subscribing again is harmless when the session kept the subscription.
                if let Err(e) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                    tracing::error!(error = %e, "cannot subscribe");
                }
            }
            // Ready only once subscribed: before that, a brand-new session would miss messages.
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                metrics.broker_connected.store(true, Ordering::Relaxed);
                session.established();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let delivery = Delivery {
                    publish: p,
                    publisher: None,
                    done: None,
                };
                match tx.offer(delivery).await {
                    Ok(()) => {}
                    // Over its device's rate: dropped before it costs anything. The broker
                    // still gets its PUBACK (or it would stop sending to the ingest); the
                    // device gets no `received` and repeats an alarm.
                    Err(Refused::Throttled(d)) if d.publish.qos != QoS::AtMostOnce => {
                        if client.try_ack(&d.publish).is_err() {
                            let client = client.clone();
                            tokio::spawn(async move { client.ack(&d.publish).await });
                        }
                    }
                    Err(Refused::Throttled(_)) => {}
                    Err(Refused::Closed) => return,
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.broker_connected.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "broker connection lost; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
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
    /// Builds the ingest, restores what it remembers, and runs it on `rx`.
    async fn start(
        parts: IngestParts,
        client: Option<AsyncClient>,
        sink: DownlinkSink,
        rx: Inbox,
        events: Option<mpsc::Receiver<BrokerEvent>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Downlink, StoreError> {
        let IngestParts {
            store,
            directory,
            hub,
            metrics,
            policy,
            supervision,
            rate: _,
        } = parts;
        let downlink = Downlink {
            sink,
            directory: directory.clone(),
            metrics: metrics.clone(),
        };
        let mut ingest = Ingest {
            store,
            directory,
            hub,
            metrics,
            client,
            downlink: downlink.clone(),
            intake: Intake::new(policy),
            supervision,
        };
        ingest.restore().await?;
        tokio::spawn(ingest.process(rx, events, shutdown));
        Ok(downlink)
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
                d = rx.recv() => {
                    let Delivery { publish: p, publisher, done } = d;
                    if !self.handle(publisher.as_deref(), &p).await {
                        // Dropping `done` tells the embedded broker to close the device's
                        // connection without a PUBACK; it sends the message again.
                        continue;
                    }
                    // Only now, with everything stored, may the broker forget the message.
                    match (done, &self.client) {
                        (Some(done), _) => {
                            let _ = done.send(());
                        }
                        (None, Some(client)) => {
                            if let Err(e) = client.ack(&p).await {
                                tracing::warn!(error = %e, "could not acknowledge to the broker");
                            }
                        }
                        (None, None) => {}
                    }
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
        let effects = rx
            .take_throttled()
            .into_iter()
            .map(|(device, n)| intake::over_rate(device, n))
            .collect();
        self.perform(effects).await;
    }

    async fn flush_health(&mut self) {
        let batch = self.intake.take_health();
        if batch.is_empty() {
            return;
        }
        let kept = write_health(&self.store, &self.metrics, batch).await;
        self.intake.keep_unflushed(kept);
    }

    /// One message, start to end: each step of `Intake` decides, the driver looks up, writes
    /// and answers in between. True when the broker may forget the message; false when the
    /// store refused (for good) what it asked for, since a PUBACK would tell the device it is
    /// stored. Never fails: what cannot be taken in is counted and recorded as a security
    /// event, and the ingest goes on.
    async fn handle(&mut self, publisher: Option<&str>, p: &Publish) -> bool {
        let envelope = match self
            .intake
            .receive(publisher, &p.topic, p.retain, &p.payload)
        {
            Received::Done(effects) => return self.done(effects).await,
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
                Signature::Done(effects) => return self.done(effects).await,
                Signature::RereadKeys => {
                    self.refresh_device(&device_id).await;
                    let entry = self.directory.device(&device_id);
                    self.intake.keys_reread(&envelope, entry)
                }
                Signature::NextKey { entry, sealed } => {
                    let now = now_ms();
                    let completed = self
                        .durably(|store| {
                            let (id, sealed) = (device_id.clone(), sealed.clone());
                            async move { store.complete_key_rotation(&id, &sealed, now).await }
                        })
                        .await;
                    self.refresh_device(&device_id).await;
                    let fresh = self.directory.device(&device_id);
                    self.intake.rotated(&envelope, entry, completed, fresh, now)
                }
                Signature::Bad => {
                    let entry = self.directory.device(&device_id);
                    let effects =
                        self.intake
                            .bad_signature(&device_id, &p.topic, entry.as_ref(), now_ms());
                    return self.done(effects).await;
                }
            }
        };
        let mut admission = self.intake.admit(envelope, &entry);
        let (message, late) = loop {
            admission = match admission {
                Admission::Done(effects) => return self.done(effects).await,
                Admission::Refused => return false,
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
        let taken_in = match take.write {
            Some(write) => self.write(write).await,
            None => true,
        };
        match self.intake.stored(take.then, taken_in) {
            intake::Outcome::Acknowledge(effects) => self.done(effects).await,
            intake::Outcome::Refuse(effects) => {
                self.perform(effects).await;
                false
            }
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
                Effect::KeyRotated {
                    device,
                    case_id,
                    at,
                } => {
                    let detail =
                        "the device signs with its new key; the old one is no longer accepted";
                    if let Err(e) = self
                        .store
                        .audit(
                            None,
                            "device_key_rotated",
                            Some(&device),
                            case_id.as_deref(),
                            Some(detail),
                            at,
                        )
                        .await
                    {
                        tracing::error!(device, error = %e, "could not audit the key rotation");
                    }
                    tracing::info!(device, "device key rotation complete");
                }
            }
        }
    }

    fn count(&self, count: Count) {
        let m = &self.metrics;
        let counter = match count {
            Count::Message => &m.messages_total,
            Count::Malformed => &m.malformed_total,
            Count::TopicDenied => &m.topic_denied_total,
            Count::UnknownDevice => &m.unknown_devices_total,
            Count::BadSignature => &m.bad_signatures_total,
            Count::Duplicate => &m.duplicates_total,
            Count::Replay => &m.replays_total,
            Count::Accepted => &m.messages_accepted_total,
            Count::Late => &m.messages_late_total,
            Count::StoreRefused => &m.store_refused_total,
            Count::Missing(n) => {
                m.messages_missing_total.fetch_add(n, Ordering::Relaxed);
                return;
            }
        };
        Metrics::inc(counter);
    }

    /// What the store must do for a message to be taken in; true once durably done.
    async fn write(&mut self, write: Write) -> bool {
        match write {
            Write::Raise(raise) => self.raise(&raise).await,
            Write::Cancel {
                device,
                origin: (boot, seq),
                at,
            } => {
                let outcome = self
                    .durably(|s| {
                        let id = device.clone();
                        async move { s.cancel(&id, boot, seq, at).await }
                    })
                    .await;
                if let Some(CancelOutcome::Marked(change)) = &outcome {
                    self.hub.publish((**change).clone());
                }
                outcome.is_some()
            }
            Write::Record {
                device,
                origin: (boot, seq),
                kind,
                at,
            } => self
                .durably(|s| {
                    let id = device.clone();
                    async move { s.record_message(&id, boot, seq, kind, at).await }
                })
                .await
                .is_some(),
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

    /// The device's entry, reloading the directory first when `Intake` says so.
    async fn lookup(&mut self, device_id: &str) -> Option<DeviceEntry> {
        let entry = self.directory.device(device_id);
        if !self.intake.reload_due(entry.as_ref(), now_ms()) {
            return entry;
        }
        if let Err(e) = self.directory.reload(&self.store).await {
            tracing::warn!(error = %e, "directory reload failed");
        }
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
            self.metrics.store_failing.store(failing, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_name_host_and_port() {
        assert_eq!(
            BrokerLink::parse_url("mqtt://127.0.0.1:1883"),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            BrokerLink::parse_url("mqtt://broker"),
            Some(("broker".into(), 1883))
        );
        assert_eq!(BrokerLink::parse_url("http://broker"), None);
    }
}
