//! The backend's own client on an external broker (Mosquitto): its login, its persistent
//! session with the devices' uplink subscription, and the draining of a dead instance's
//! session.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::downlink::{Downlink, DownlinkSink};
use super::queue::{IngestQueue, RateLimit, Refused};
use super::{Acks, BrokerSide, BrokerTask, Delivery, Task, DELIVERY_QUEUE};
use crate::directory::Directory;
use crate::domain::now_ms;
use crate::metrics::Metrics;
use crate::protocol;
use crate::store::{SharedStore, StoreError};

/// The username the backend's own client uses on an external broker, by default.
pub const BACKEND_USER: &str = "vakt-backend";

/// The password backend user `username` logs in with on an external broker, derived from
/// the one backend secret (`mqtt_password`): each instance has a password of its own, and
/// yet `vakt broker mosquitto-files` can write every backend user's line and the
/// supervision leader can log in as a dead instance to drain its session.
pub fn backend_password(secret: &str, username: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"vakt broker login\n");
    mac.update(username.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

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
    /// `mqtts://`: the client's TLS configuration (trusted roots, client certificate). The
    /// broker's certificate must chain to those roots and name `host`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where an external broker is, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: reached over TLS.
    pub tls: bool,
}

impl BrokerLink {
    /// The login for the session kept under `client_id` (this instance's, or a dead one's
    /// that the supervision leader drains): on a broker with logins, the backend user of
    /// that name and its password, since the broker makes each user's name its client id.
    pub fn login(&self, client_id: &str) -> Option<(String, String)> {
        self.username.as_ref()?;
        let secret = self.secret.as_deref().unwrap_or_default();
        Some((client_id.to_owned(), backend_password(secret, client_id)))
    }

    /// Parses `mqtt://host:port` (port 1883 when left out) and `mqtts://host:port` (TLS,
    /// port 8883 when left out).
    pub fn parse_url(url: &str) -> Option<BrokerAddress> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, true, 8883)
        } else {
            let rest = url
                .strip_prefix("mqtt://")
                .or_else(|| url.strip_prefix("tcp://"))?;
            (rest, false, 1883)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (rest, default_port),
        };
        (!host.is_empty()).then(|| BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// A session's options under `client_id`: where the broker is, and over TLS for
    /// `mqtts://`.
    fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        if let Some(tls) = &self.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        options
    }
}

/// The backend's session on an external broker, set up and not yet driven.
pub(super) struct Connection {
    eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    tx: IngestQueue,
    metrics: Arc<Metrics>,
    session: SessionExpectation,
    connected: watch::Sender<bool>,
}

/// Sets up the backend's session on an external broker; it connects once the returned task
/// runs.
pub async fn connect(
    link: &BrokerLink,
    store: &SharedStore,
    directory: &Directory,
    rate: RateLimit,
    metrics: Arc<Metrics>,
) -> Result<(BrokerSide, BrokerTask), StoreError> {
    let mut options = link.options(&link.client_id);
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
    // A session an earlier run of this client id had must still be there.
    let session = SessionExpectation {
        expected: store.broker_session_noted(&link.client_id).await?,
        store: store.clone(),
        client_id: link.client_id.clone(),
    };
    let (tx, inbox) = IngestQueue::new(DELIVERY_QUEUE, rate, metrics.clone());
    let (connected_tx, connected) = watch::channel(false);
    let filter = match &link.share_group {
        Some(group) => format!("$share/{group}/{}", protocol::UPLINK_FILTER),
        None => protocol::UPLINK_FILTER.to_owned(),
    };
    let side = BrokerSide {
        inbox,
        events: None,
        acks: Acks {
            client: Some(client.clone()),
        },
        downlink: Downlink::new(
            DownlinkSink::Client(client.clone()),
            directory.clone(),
            metrics.clone(),
        ),
        deliveries: tx.clone(),
        connected,
    };
    let connection = Connection {
        eventloop,
        client,
        filter,
        tx,
        metrics,
        session,
        connected: connected_tx,
    };
    Ok((side, BrokerTask(Task::External(Box::new(connection)))))
}

/// Takes over the persistent session of an instance that died, takes in what the broker
/// had queued for it, and then ends the session, so the broker stops sending that
/// instance's share of the devices into a queue nobody reads.
pub async fn drain_session(link: &BrokerLink, client_id: &str, deliveries: &IngestQueue) -> usize {
    let mut taken = 0;
    for clean in [false, true] {
        let mut options = link.options(client_id);
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

impl Connection {
    pub(super) fn run(self, shutdown: watch::Receiver<bool>) {
        tokio::spawn(self.poll(shutdown));
    }

    /// Drives the MQTT connection; hands every publish to the processor in arrival order.
    async fn poll(self, mut shutdown: watch::Receiver<bool>) {
        let Connection {
            mut eventloop,
            client,
            filter,
            tx,
            metrics,
            mut session,
            connected,
        } = self;
        // Retries every 250 ms (alarms wait while it is down), but says so once and then
        // every 10 s: a broker refusing the certificate for an hour must not fill the disk.
        let mut failures: u32 = 0;
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
                        failed_attempts = failures,
                        "ingest connected to the broker"
                    );
                    failures = 0;
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
                    // Not waiting for room in the client's queue: this task is the one that
                    // empties it.
                    if client
                        .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                        .is_err()
                    {
                        let (client, filter) = (client.clone(), filter.clone());
                        tokio::spawn(async move {
                            if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                                tracing::error!(error = %e, "cannot subscribe");
                            }
                        });
                    }
                }
                // Ready only once subscribed: before that, a brand-new session would miss messages.
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    connected.send_replace(true);
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
                    connected.send_replace(false);
                    if failures.is_multiple_of(40) {
                        tracing::warn!(
                            error = %e,
                            failed_attempts = failures + 1,
                            "broker connection lost; retrying every 250 ms"
                        );
                    }
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_user_has_a_password_of_its_own_from_the_one_secret() {
        let one = backend_password("secret", "vakt-1");
        // As docs/operations.md computes it for a broker set up by hand:
        // printf 'vakt broker login\nvakt-1' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            one,
            "98dda25cbd6018667a4dcca56e312f455b54452561682d0ab25bd1445b3928ad"
        );
        assert_ne!(one, backend_password("secret", "vakt-2"));
        assert_ne!(one, backend_password("other", "vakt-1"));
        assert_eq!(one.len(), 64);
        assert!(!one.contains("secret"));
    }

    #[test]
    fn broker_urls_name_host_port_and_whether_tls_is_spoken() {
        let at = |host: &str, port, tls| {
            Some(BrokerAddress {
                host: host.into(),
                port,
                tls,
            })
        };
        assert_eq!(
            BrokerLink::parse_url("mqtt://127.0.0.1:1883"),
            at("127.0.0.1", 1883, false)
        );
        assert_eq!(
            BrokerLink::parse_url("mqtt://broker"),
            at("broker", 1883, false)
        );
        assert_eq!(
            BrokerLink::parse_url("mqtts://broker"),
            at("broker", 8883, true)
        );
        assert_eq!(
            BrokerLink::parse_url("mqtts://broker.police.example:18883/"),
            at("broker.police.example", 18883, true)
        );
        assert_eq!(BrokerLink::parse_url("http://broker"), None);
        assert_eq!(BrokerLink::parse_url("mqtts://"), None);
        assert_eq!(BrokerLink::parse_url("mqtts://broker:x"), None);
    }
}
