//! One device connection of the embedded broker: MQTT 3.1.1 over TCP or TLS, with the PUBACK
//! of every publish held back until the ingest has taken the message in.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{authenticate, may_subscribe, Command, EmbeddedBroker, Login};
use crate::metrics::Metrics;
use crate::mqtt::Delivery;
use crate::protocol;

/// A packet larger than this ends the connection. Bodies up to it still reach the ingest,
/// which refuses anything over the protocol's 2048 bytes as a counted security event.
const MAX_PACKET: usize = 16 * 1024;
/// A connection that has not sent CONNECT by then is closed.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Publishes of one connection that the ingest has not finished with yet. Past this the
/// connection is not read: the device's own inflight limit then holds it back, so a burst
/// waits for the backend instead of being taken and lost.
const UPLINK_WINDOW: usize = 16;
/// Downlink publishes sent and not yet acknowledged by the device.
const DOWNLINK_INFLIGHT: usize = 32;
/// A device that does not read what it is sent for this long is cut off.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// How the connection ended, which decides whether the last will is published.
enum End {
    /// DISCONNECT from the device: the will is discarded.
    Graceful,
    /// The same device logged in again elsewhere: it is alive, no will.
    TakenOver,
    /// The backend is stopping.
    Shutdown,
    /// The connection broke, timed out or broke the protocol: the will is published.
    Lost(String),
}

/// A device's connection, plain or over TLS, as its two directions.
pub(super) struct DeviceStream {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
}

impl From<TcpStream> for DeviceStream {
    fn from(stream: TcpStream) -> Self {
        let (reader, writer) = stream.into_split();
        DeviceStream {
            reader: Box::new(reader),
            writer: Box::new(writer),
        }
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for DeviceStream {
    fn from(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        DeviceStream {
            reader: Box::new(reader),
            writer: Box::new(writer),
        }
    }
}

/// The TLS handshake of a device connection, within the time a device has to say CONNECT.
pub(super) async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    match tokio::time::timeout(CONNECT_WAIT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no handshake in time".into()),
    }
}

/// What to send once the ingest is done with a publish.
enum Receipt {
    PubAck(u16),
    PubRec(u16),
}

pub(super) async fn run(
    broker: EmbeddedBroker,
    stream: impl Into<DeviceStream>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let DeviceStream {
        mut reader,
        mut writer,
    } = stream.into();
    let mut rbuf = BytesMut::with_capacity(4096);
    let connect =
        match tokio::time::timeout(CONNECT_WAIT, read_packet(&mut reader, &mut rbuf)).await {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(other)) => {
                tracing::debug!(%peer, packet = ?other, "first packet was not CONNECT");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "no CONNECT");
                return;
            }
            Err(_) => return,
        };
    if connect.protocol != rumqttc::Protocol::V4 {
        refuse(&mut writer, ConnectReturnCode::RefusedProtocolVersion).await;
        return;
    }
    let (username, password) = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or_default();
    match authenticate(
        &broker.inner.directory,
        &broker.inner.backend_identities,
        &connect.client_id,
        username,
        password,
    ) {
        Login::Device => {}
        Login::Refused => {
            Metrics::inc(&broker.inner.metrics.broker_logins_refused_total);
            tracing::warn!(%peer, client_id = connect.client_id, username, "embedded broker refused a login");
            refuse(&mut writer, ConnectReturnCode::BadUserNamePassword).await;
            return;
        }
        Login::Backend { device } => {
            // The backend never logs in here: whoever names it wants its place (its
            // connection, or a session that receives every device's messages).
            Metrics::inc(&broker.inner.metrics.broker_logins_refused_total);
            Metrics::inc(&broker.inner.metrics.backend_identity_refused_total);
            broker.security_event(
                device.as_deref(),
                "backend_identity",
                format!(
                    "login from {peer} as client id {:?}, username {username:?}: reserved for the backend",
                    connect.client_id
                ),
            );
            refuse(&mut writer, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    }
    let device = connect.client_id.clone();
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (id, present, kept) = broker.attach(&device, connect.clean_session, commands_tx);
    let mut conn = Connection {
        broker: broker.clone(),
        device: device.clone(),
        writer,
        wbuf: BytesMut::with_capacity(1024),
        queued_down: kept.into(),
        inflight_down: HashMap::new(),
        next_pkid: 0,
    };
    conn.send(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        present,
    )));
    tracing::debug!(device, %peer, session_present = present, "device connected to the embedded broker");
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let end = conn
        .serve(reader, rbuf, commands, keep_alive, shutdown)
        .await;
    let undelivered: Vec<Publish> = {
        let mut inflight: Vec<(u16, Publish)> = conn.inflight_down.drain().collect();
        inflight.sort_by_key(|(pkid, _)| *pkid);
        inflight
            .into_iter()
            .map(|(_, p)| p)
            .chain(conn.queued_down.drain(..))
            .collect()
    };
    let was_live = broker.detach(&device, id, undelivered);
    match end {
        End::Lost(why) => {
            tracing::debug!(device, why, "device connection lost");
            // A will speaks for the device only while its connection is the device's live
            // one: once another has logged in, the device is not offline.
            if let Some(will) = connect.last_will.filter(|_| was_live) {
                let mut publish = Publish::from_bytes(will.topic, will.qos, will.message);
                publish.retain = will.retain;
                let _ = broker
                    .inner
                    .deliveries
                    .send(Delivery {
                        publish,
                        publisher: Some(device),
                        done: None,
                    })
                    .await;
            }
        }
        End::Graceful | End::TakenOver | End::Shutdown => {}
    }
}

struct Connection {
    broker: EmbeddedBroker,
    device: String,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    wbuf: BytesMut,
    queued_down: VecDeque<Publish>,
    inflight_down: HashMap<u16, Publish>,
    next_pkid: u16,
}

impl Connection {
    async fn serve(
        &mut self,
        mut reader: Box<dyn AsyncRead + Unpin + Send>,
        mut rbuf: BytesMut,
        mut commands: mpsc::UnboundedReceiver<Command>,
        keep_alive: Option<Duration>,
        mut shutdown: watch::Receiver<bool>,
    ) -> End {
        // Publishes read and not yet handed to the ingest, then those it is working on.
        let mut staged: VecDeque<(Publish, Option<Receipt>)> = VecDeque::new();
        let mut working = FuturesOrdered::new();
        let mut heard = Instant::now();
        let deliveries = self.broker.inner.deliveries.clone();
        self.pump_downlink();
        loop {
            if let Err(e) = self.flush().await {
                return End::Lost(e);
            }
            let window_open = staged.len() + working.len() < UPLINK_WINDOW;
            if !window_open {
                // While we do not read, the device's silence is ours: its keep-alive counts
                // again from when we listen.
                heard = Instant::now();
            }
            let quiet_until = keep_alive.map(|k| heard + k);
            tokio::select! {
                read = reader.read_buf(&mut rbuf), if window_open => {
                    match read {
                        Ok(0) => return End::Lost("closed by the device".into()),
                        Ok(_) => heard = Instant::now(),
                        Err(e) => return End::Lost(e.to_string()),
                    }
                    loop {
                        match Packet::read(&mut rbuf, MAX_PACKET) {
                            Ok(packet) => {
                                if let Some(end) = self.on_packet(packet, &mut staged) {
                                    return end;
                                }
                            }
                            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                            Err(e) => return End::Lost(format!("protocol error: {e}")),
                        }
                    }
                }
                // Waits for the device's rate too: a device sending faster is read slower.
                permit = deliveries.reserve(&self.device), if !staged.is_empty() => {
                    let Ok(permit) = permit else {
                        return End::Shutdown;
                    };
                    let (publish, receipt) = staged.pop_front().expect("staged");
                    let (done, taken) = oneshot::channel();
                    permit.send(Delivery {
                        publish,
                        publisher: Some(self.device.clone()),
                        done: Some(done),
                    });
                    working.push_back(async move { (receipt, taken.await.is_ok()) });
                }
                Some((receipt, taken)) = working.next(), if !working.is_empty() => {
                    if !taken {
                        // The ingest stopped before it had the message, or could not store
                        // it: no PUBACK, and a new connection makes the device send it again.
                        return End::Shutdown;
                    }
                    match receipt {
                        Some(Receipt::PubAck(pkid)) => self.send(Packet::PubAck(PubAck::new(pkid))),
                        Some(Receipt::PubRec(pkid)) => self.send(Packet::PubRec(PubRec::new(pkid))),
                        None => {}
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Deliver(p)) => {
                        self.queued_down.push_back(p);
                        self.pump_downlink();
                    }
                    Some(Command::TakenOver) | None => return End::TakenOver,
                },
                _ = sleep_until(quiet_until), if window_open => {
                    return End::Lost("keep-alive expired".into());
                }
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
    }

    /// Handles one packet from the device; `Some` ends the connection.
    fn on_packet(
        &mut self,
        packet: Packet,
        staged: &mut VecDeque<(Publish, Option<Receipt>)>,
    ) -> Option<End> {
        match packet {
            Packet::Publish(p) => {
                let receipt = match p.qos {
                    QoS::AtMostOnce => None,
                    QoS::AtLeastOnce => Some(Receipt::PubAck(p.pkid)),
                    QoS::ExactlyOnce => Some(Receipt::PubRec(p.pkid)),
                };
                staged.push_back((p, receipt));
            }
            // The message was handed over at PUBLISH (duplicates are the ingest's to spot).
            Packet::PubRel(rel) => self.send(Packet::PubComp(PubComp::new(rel.pkid))),
            Packet::PubAck(ack) => {
                self.inflight_down.remove(&ack.pkid);
                self.pump_downlink();
            }
            Packet::Subscribe(sub) => {
                let mut codes = Vec::with_capacity(sub.filters.len());
                let mut retained = Vec::new();
                for f in &sub.filters {
                    if may_subscribe(&self.device, &f.path) {
                        let qos = if f.qos == QoS::AtMostOnce {
                            QoS::AtMostOnce
                        } else {
                            QoS::AtLeastOnce
                        };
                        self.broker.subscribe(&self.device, &f.path, qos);
                        codes.push(SubscribeReasonCode::Success(qos));
                        let cfg = format!(
                            "{}{}/{}",
                            protocol::TOPIC_PREFIX,
                            self.device,
                            protocol::Downlink::Config.name()
                        );
                        if rumqttc::matches(&cfg, &f.path) {
                            if let Some(body) = self.broker.retained(&cfg) {
                                let mut p = Publish::from_bytes(cfg, qos, body);
                                p.retain = true;
                                retained.push(p);
                            }
                        }
                    } else {
                        Metrics::inc(&self.broker.inner.metrics.subscribe_denied_total);
                        self.broker.security_event(
                            Some(&self.device),
                            "subscribe_denied",
                            format!("{}: outside the device's own ack and cfg", f.path),
                        );
                        codes.push(SubscribeReasonCode::Failure);
                    }
                }
                self.send(Packet::SubAck(SubAck::new(sub.pkid, codes)));
                self.queued_down.extend(retained);
                self.pump_downlink();
            }
            Packet::Unsubscribe(unsub) => {
                for f in &unsub.topics {
                    self.broker.unsubscribe(&self.device, f);
                }
                self.send(Packet::UnsubAck(UnsubAck::new(unsub.pkid)));
            }
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect => return Some(End::Graceful),
            Packet::Connect(_) => return Some(End::Lost("a second CONNECT".into())),
            other => {
                return Some(End::Lost(format!(
                    "unexpected packet from a device: {other:?}"
                )))
            }
        }
        None
    }

    /// Sends queued downlink while the device's inflight window has room.
    fn pump_downlink(&mut self) {
        while self.inflight_down.len() < DOWNLINK_INFLIGHT {
            let Some(mut p) = self.queued_down.pop_front() else {
                return;
            };
            if p.qos == QoS::AtMostOnce {
                self.send(Packet::Publish(p));
                continue;
            }
            p.pkid = self.pkid();
            self.inflight_down.insert(p.pkid, p.clone());
            self.send(Packet::Publish(p));
        }
    }

    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight_down.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    fn send(&mut self, packet: Packet) {
        if let Err(e) = packet.write(&mut self.wbuf, MAX_PACKET) {
            tracing::error!(device = self.device, error = %e, "cannot encode a packet");
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // Flushed too: TLS keeps written bytes in its buffer until then.
        let write = async {
            self.writer.write_all(&self.wbuf).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(WRITE_WAIT, write).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the device does not read".into()),
        }
    }
}

async fn refuse(writer: &mut (dyn AsyncWrite + Unpin + Send), code: ConnectReturnCode) {
    let mut w = BytesMut::new();
    let _ = Packet::ConnAck(ConnAck::new(code, false)).write(&mut w, MAX_PACKET);
    let write = async {
        writer.write_all(&w).await?;
        writer.flush().await
    };
    let _ = tokio::time::timeout(WRITE_WAIT, write).await;
}

async fn read_packet(
    reader: &mut (dyn AsyncRead + Unpin + Send),
    buf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if reader.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
