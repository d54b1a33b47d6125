//! The embedded MQTT broker for zero-setup runs: a device-facing MQTT 3.1.1 server inside
//! the backend's own process.
//!
//! Being one process with the ingest is what lets it keep the protocol's promise
//! (docs/protocol.md, section 12 "Delivery, end to end"): a device's publish is handed straight to the ingest, and the
//! PUBACK goes out only once the ingest has taken the message in and stored what it asks
//! for. Nothing sits in a broker-side log that could overflow, so no burst makes it
//! acknowledge a message the backend never took in; a device that writes faster than the
//! backend stores is slowed down (its connection is not read while too many of its messages
//! wait), never dropped. docs/architecture.md says why this replaced a general broker.
//!
//! It knows only devices: each logs in as itself (client id = username = device id, the
//! password derived from its key), may publish only to its own uplink topics (checked by the
//! ingest, which records a refusal as a security event), and may subscribe only to its own
//! `ack` and `cfg`. The backend itself is in-process and never logs in, so a login that names one of
//! the backend's identities (`protocol::BACKEND_PREFIX`, or the configured client id or
//! username) is an attempt to pass for it: refused and recorded as a security event. Sessions and the retained `cfg` are kept in memory: a restart of the backend ends
//! them, the devices reconnect and subscribe again, and the backend republishes a `cfg` when
//! a device says `hello`.

mod connection;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rumqttc::{Publish, QoS};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::downlink::{Downlink, DownlinkSink};
use super::queue::{IngestQueue, RateLimit};
use super::{Acks, BrokerEvent, BrokerSide, BrokerTask, Task, DELIVERY_QUEUE};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::protocol;

/// Broker security events waiting for the ingest; past this they are counted and logged
/// only (a flood of refused logins must not hold up the broker).
const BROKER_EVENT_QUEUE: usize = 1_000;

/// Downlink messages kept for a device that is offline with a persistent session; older ones
/// are dropped (counted) past this, since the backend republishes what still matters (a
/// repeated alarm is answered `received` again, `cfg` is retained).
const OFFLINE_QUEUE_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Binds the wanted address, or (when `fallback` and it is taken) a free port on the same
/// interface.
pub async fn bind(wanted: SocketAddr, fallback: bool) -> Result<TcpListener, BrokerError> {
    match TcpListener::bind(wanted).await {
        Ok(l) => Ok(l),
        Err(e) if fallback || wanted.port() == 0 => {
            let any = SocketAddr::new(wanted.ip(), 0);
            TcpListener::bind(any)
                .await
                .map_err(|_| BrokerError::Bind(wanted, e))
        }
        Err(e) => Err(BrokerError::Bind(wanted, e)),
    }
}

/// Where the embedded broker takes devices in: the plain listener, and a TLS one when it
/// has a certificate.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Sets up the embedded broker on `listeners`; it serves devices once the returned task runs.
///
/// `backend_identities` are names no login may use there besides the reserved prefix (the
/// configured client id and username, whatever they are).
pub fn open(
    listeners: Listeners,
    directory: &Directory,
    rate: RateLimit,
    metrics: Arc<Metrics>,
    backend_identities: Vec<String>,
) -> (BrokerSide, BrokerTask) {
    let (tx, inbox) = IngestQueue::new(DELIVERY_QUEUE, rate, metrics.clone());
    let (events_tx, events) = mpsc::channel(BROKER_EVENT_QUEUE);
    let (connected_tx, connected) = watch::channel(false);
    let broker = EmbeddedBroker::new(
        directory.clone(),
        tx.clone(),
        events_tx,
        metrics.clone(),
        backend_identities,
    );
    let side = BrokerSide {
        inbox,
        events: Some(events),
        acks: Acks { client: None },
        downlink: Downlink::new(
            DownlinkSink::Embedded(broker.clone()),
            directory.clone(),
            metrics,
        ),
        deliveries: tx,
        connected,
    };
    let task = Task::Embedded {
        broker,
        listeners,
        connected: connected_tx,
    };
    (side, BrokerTask(task))
}

/// The embedded broker: its sessions, retained messages, and the way into the ingest.
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Directory,
    deliveries: IngestQueue,
    events: mpsc::Sender<BrokerEvent>,
    metrics: Arc<Metrics>,
    /// The configured client id and username of the backend: no login may use them.
    backend_identities: Vec<String>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Retained messages by topic (the devices' `cfg`).
    retained: Mutex<HashMap<String, Bytes>>,
    next_connection: AtomicU64,
}

/// What the broker keeps of one device between its connections.
#[derive(Default)]
struct Session {
    subscriptions: Vec<(String, QoS)>,
    /// Downlink waiting for the device while it is offline.
    offline: VecDeque<Publish>,
    /// A clean session ends with its connection.
    clean: bool,
    live: Option<Live>,
}

struct Live {
    connection: u64,
    commands: mpsc::UnboundedSender<Command>,
}

/// What the broker tells a live connection.
enum Command {
    Deliver(Publish),
    /// Another connection logged in with the same client id.
    TakenOver,
}

impl EmbeddedBroker {
    /// A broker that hands every device publish to `deliveries` (the ingest), and what it
    /// refuses as a security event to `events`.
    pub fn new(
        directory: Directory,
        deliveries: IngestQueue,
        events: mpsc::Sender<BrokerEvent>,
        metrics: Arc<Metrics>,
        backend_identities: Vec<String>,
    ) -> EmbeddedBroker {
        EmbeddedBroker {
            inner: Arc::new(Inner {
                directory,
                deliveries,
                events,
                metrics,
                backend_identities,
                sessions: Mutex::default(),
                retained: Mutex::default(),
                next_connection: AtomicU64::new(1),
            }),
        }
    }

    /// Accepts device connections on the listeners until shutdown.
    pub fn serve(&self, listeners: Listeners, shutdown: watch::Receiver<bool>) {
        self.accept(listeners.plain, None, shutdown.clone());
        if let Some((listener, config)) = listeners.tls {
            self.accept(listener, Some(config.into()), shutdown);
        }
    }

    /// Accepts device connections on `listener`, over TLS with `tls`, until shutdown.
    fn accept(
        &self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: watch::Receiver<bool>,
    ) {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut stop = shutdown.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let (broker, shutdown) = (broker.clone(), shutdown.clone());
                        match tls.clone() {
                            None => {
                                tokio::spawn(connection::run(broker, stream, peer, shutdown));
                            }
                            // The handshake runs in the connection's own task, so a slow or
                            // failed one holds up no other device.
                            Some(acceptor) => {
                                tokio::spawn(async move {
                                    match connection::handshake(acceptor, stream).await {
                                        Ok(stream) => {
                                            connection::run(broker, stream, peer, shutdown).await
                                        }
                                        Err(e) => {
                                            tracing::debug!(%peer, error = %e, "TLS handshake with a device failed")
                                        }
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tracing::warn!(error = %e, "embedded broker cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    /// Publishes a downlink message to a device: at once when it is connected and
    /// subscribed, later when its persistent session is offline. A retained message also
    /// replaces the topic's retained copy (an empty one removes it).
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) {
        if retain {
            let mut retained = self.inner.retained.lock().expect("retained");
            if payload.is_empty() {
                retained.remove(topic);
            } else {
                retained.insert(topic.to_owned(), payload.clone());
            }
        }
        let Some(device) = downlink_device(topic) else {
            return;
        };
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        let Some(session) = sessions.get_mut(device) else {
            return;
        };
        let Some(qos) = session.granted_qos(topic) else {
            return;
        };
        let publish = Publish::from_bytes(topic, qos, payload);
        match &session.live {
            Some(live) => {
                let _ = live.commands.send(Command::Deliver(publish));
            }
            None if !session.clean => {
                session.offline.push_back(publish);
                if session.offline.len() > OFFLINE_QUEUE_MAX {
                    session.offline.pop_front();
                    Metrics::inc(&self.inner.metrics.broker_downlink_dropped_total);
                    tracing::warn!(
                        device,
                        "offline device's downlink queue full; oldest dropped"
                    );
                }
            }
            None => {}
        }
    }

    /// Hands a security event to the ingest, which counts, rate-limits and stores it; when
    /// the ingest is too far behind it is counted and logged here only.
    fn security_event(&self, device: Option<&str>, kind: &'static str, detail: String) {
        tracing::warn!(
            device,
            kind,
            detail,
            "security event at the embedded broker"
        );
        let event = BrokerEvent {
            device: device.map(str::to_owned),
            kind,
            detail,
        };
        if self.inner.events.try_send(event).is_err() {
            Metrics::inc(&self.inner.metrics.security_events_total);
        }
    }

    fn retained(&self, topic: &str) -> Option<Bytes> {
        self.inner
            .retained
            .lock()
            .expect("retained")
            .get(topic)
            .cloned()
    }

    /// Registers a new live connection for `device`, ending any other; returns whether a
    /// session was present and the downlink it kept while the device was away.
    fn attach(
        &self,
        device: &str,
        clean: bool,
        commands: mpsc::UnboundedSender<Command>,
    ) -> (u64, bool, Vec<Publish>) {
        let connection = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        let existing = sessions.remove(device);
        if let Some(Live { commands, .. }) = existing.as_ref().and_then(|s| s.live.as_ref()) {
            let _ = commands.send(Command::TakenOver);
        }
        let (present, mut session) = match existing {
            Some(s) if !clean && !s.clean => (true, s),
            _ => (false, Session::default()),
        };
        session.clean = clean;
        session.live = Some(Live {
            connection,
            commands,
        });
        let kept = session.offline.drain(..).collect();
        sessions.insert(device.to_owned(), session);
        (connection, present, kept)
    }

    /// A connection ended: what it had not delivered stays with the session (or goes to the
    /// connection that took over). True when it was still the device's live connection, the
    /// only case in which its last will may speak for the device.
    fn detach(&self, device: &str, connection: u64, undelivered: Vec<Publish>) -> bool {
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        let Some(session) = sessions.get_mut(device) else {
            return false;
        };
        match &session.live {
            Some(live) if live.connection == connection => {
                session.live = None;
                if session.clean {
                    sessions.remove(device);
                } else {
                    session.offline.extend(undelivered);
                    while session.offline.len() > OFFLINE_QUEUE_MAX {
                        session.offline.pop_front();
                        Metrics::inc(&self.inner.metrics.broker_downlink_dropped_total);
                    }
                }
                true
            }
            Some(live) if !session.clean => {
                for p in undelivered {
                    let _ = live.commands.send(Command::Deliver(p));
                }
                false
            }
            _ => false,
        }
    }

    fn subscribe(&self, device: &str, filter: &str, qos: QoS) {
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        if let Some(s) = sessions.get_mut(device) {
            s.subscriptions.retain(|(f, _)| f != filter);
            s.subscriptions.push((filter.to_owned(), qos));
        }
    }

    fn unsubscribe(&self, device: &str, filter: &str) {
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        if let Some(s) = sessions.get_mut(device) {
            s.subscriptions.retain(|(f, _)| f != filter);
        }
    }
}

impl Session {
    /// The QoS a topic is delivered at, if any subscription matches it.
    fn granted_qos(&self, topic: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .filter(|(f, _)| rumqttc::matches(topic, f))
            .map(|(_, q)| *q)
            .max_by_key(|q| *q as u8)
    }
}

/// The device a downlink topic (`vakt/v1/dev/{id}/ack|cfg`) is for.
fn downlink_device(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(protocol::TOPIC_PREFIX)?;
    let (id, leaf) = rest.split_once('/')?;
    protocol::Downlink::ALL
        .iter()
        .any(|d| d.name() == leaf)
        .then_some(id)
}

/// A device may read its own `ack` and `cfg` and nothing else: a filter is granted only when
/// it can match nothing but those two topics, so `#` or another device's topics are refused.
pub fn may_subscribe(device: &str, filter: &str) -> bool {
    if !rumqttc::valid_filter(filter) {
        return false;
    }
    let own = |leaf: &str| format!("{}{device}/{leaf}", protocol::TOPIC_PREFIX);
    // Only the exact topics or `+` for the leaf: a wider wildcard could also match topics
    // of other devices or other leaves.
    protocol::Downlink::ALL
        .iter()
        .map(|d| own(d.name()))
        .chain([own("+")])
        .any(|t| t == filter)
}

/// What a CONNECT is found to be.
#[derive(Debug, PartialEq, Eq)]
enum Login {
    /// A device, logging in as itself.
    Device,
    /// Wrong password, unknown or revoked device, or a client id other than the username.
    Refused,
    /// The client id or username is one of the backend's identities: someone trying to pass
    /// for the backend. `device` names the device whose password was given, if it was right.
    Backend { device: Option<String> },
}

/// Devices log in as themselves (client id = username = device id) with the password
/// derived from their key (`DeviceKey::mqtt_password`; during a key rotation the next key's
/// too, since the device may switch before it has been heard signing with it); returned and lost devices are refused, and so is any
/// login that names a backend identity, whatever its key.
fn authenticate(
    directory: &Directory,
    backend_identities: &[String],
    client_id: &str,
    username: &str,
    password: &str,
) -> Login {
    let backend = |name: &str| {
        protocol::is_backend_identity(name) || backend_identities.iter().any(|b| b == name)
    };
    if backend(client_id) || backend(username) {
        let device = (!backend(username) && device_key_fits(directory, username, password))
            .then(|| username.to_owned());
        return Login::Backend { device };
    }
    if client_id == username && device_key_fits(directory, username, password) {
        Login::Device
    } else {
        Login::Refused
    }
}

fn device_key_fits(directory: &Directory, username: &str, password: &str) -> bool {
    match directory.device(username) {
        Some(d) => {
            matches!(
                d.status,
                crate::domain::DeviceStatus::InStock | crate::domain::DeviceStatus::Issued
            ) && (constant_time_eq(password.as_bytes(), d.key.mqtt_password().as_bytes())
                || d.next_key.as_ref().is_some_and(|(next, _)| {
                    constant_time_eq(password.as_bytes(), next.mqtt_password().as_bytes())
                }))
        }
        None => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_subscribe_to_its_own_ack_and_cfg_only() {
        assert!(may_subscribe("dev-1", "vakt/v1/dev/dev-1/ack"));
        assert!(may_subscribe("dev-1", "vakt/v1/dev/dev-1/cfg"));
        assert!(may_subscribe("dev-1", "vakt/v1/dev/dev-1/+"));
        assert!(!may_subscribe("dev-1", "vakt/v1/dev/dev-2/ack"));
        assert!(!may_subscribe("dev-1", "vakt/v1/dev/+/ack"));
        assert!(!may_subscribe("dev-1", "vakt/v1/dev/dev-1/alarm"));
        assert!(!may_subscribe("dev-1", "vakt/v1/dev/dev-1/#"));
        assert!(!may_subscribe("dev-1", "#"));
        assert!(!may_subscribe("dev-1", "vakt/v1/dev/dev-1/ack/#x"));
    }

    #[test]
    fn a_login_naming_a_backend_identity_is_told_apart_from_a_wrong_key() {
        let directory = Directory::new(Arc::new(crate::keys::KeyVault::new(&[7; 32])));
        let configured = ["ingest-7".to_owned()];
        let login = |client: &str, user: &str| {
            authenticate(&directory, &configured, client, user, &"0".repeat(64))
        };
        let backend = Login::Backend { device: None };
        assert_eq!(login("vakt-ingest", "vakt-ingest"), backend);
        assert_eq!(login("vakt-1", "dev-1"), backend);
        assert_eq!(login("dev-1", "VAKT-backend"), backend);
        assert_eq!(login("ingest-7", "ingest-7"), backend);
        assert_eq!(login("dev-1", "dev-1"), Login::Refused);
        assert_eq!(login("dev-1", "dev-2"), Login::Refused);
    }

    #[test]
    fn downlink_topics_name_their_device() {
        assert_eq!(downlink_device("vakt/v1/dev/dev-1/ack"), Some("dev-1"));
        assert_eq!(downlink_device("vakt/v1/dev/dev-1/cfg"), Some("dev-1"));
        assert_eq!(downlink_device("vakt/v1/dev/dev-1/alarm"), None);
        assert_eq!(downlink_device("other/dev-1/ack"), None);
    }

    #[test]
    fn keys_compare_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
