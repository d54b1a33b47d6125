//! One simulated device: an MQTT 3.1.1 session that signs what it sends and verifies what it receives.

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, Publish, QoS, Request, SubscribeFilter, SubscribeReasonCode,
};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::protocol::{is_valid_device_id, now_ms, topic, Fix};
use crate::pubacks::{Pending, PubackTally};
use crate::repeat::Repeats;
use crate::signing::{signed_body, unwrap_new_key, verify, DeviceKey, VerifyError};
use crate::tls::DeviceTls;

const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long `connect` waits for the broker's ConnAck and SubAck.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Bounds `disconnect` when the broker is gone and DISCONNECT cannot be written.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and as whom a device connects.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub host: String,
    pub port: u16,
    pub device_id: String,
    pub key: DeviceKey,
    /// Must grow from one simulated start to the next; see `boot_from_clock`.
    pub boot: u32,
}

/// A verified `ack` from the backend about the alarm `(boot, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub boot: u32,
    pub seq: u32,
    /// `received`, `accepted` or `resolved`.
    pub st: String,
    pub ts: i64,
}

impl Feedback {
    fn from_body(body: &Map<String, Value>) -> anyhow::Result<Feedback> {
        let uint = |name: &str| {
            body.get(name)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| anyhow!("ack has no u32 {name:?}"))
        };
        Ok(Feedback {
            boot: uint("boot")?,
            seq: uint("seq")?,
            st: body
                .get("st")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("ack has no string \"st\""))?
                .to_owned(),
            ts: body
                .get("ts")
                .and_then(Value::as_i64)
                .ok_or_else(|| anyhow!("ack has no integer \"ts\""))?,
        })
    }
}

#[derive(Clone)]
struct Hello {
    fw: String,
    model: String,
    hb_s: u32,
}

/// The device's keys, as a device keeps them in flash across a key rotation.
struct KeyRing {
    /// Signs everything the device sends.
    current: DeviceKey,
    /// The key the backend still holds until it has heard the device sign with `current`;
    /// downlink signed with it is still genuine. Forgotten at the first downlink signed
    /// with `current`.
    previous: Option<DeviceKey>,
    /// The MQTT password in use is `previous`'s: the broker refused `current`'s (its
    /// password file, or its dynamic-security client, may not have the new key's yet).
    password_is_previous: bool,
}

/// What the public handle and the event loop task share.
struct Shared {
    id: String,
    keys: Mutex<KeyRing>,
    /// New keys taken from a signed `cfg`.
    rotations: AtomicU64,
    boot: u32,
    next_seq: AtomicU32,
    client: AsyncClient,
    /// QoS 1 publishes the broker has not acknowledged yet.
    unacked: watch::Sender<usize>,
    acks: mpsc::UnboundedSender<Vec<u8>>,
    cfg: watch::Sender<Option<Map<String, Value>>>,
    rejected_cfg: AtomicU64,
    /// `ts` of the newest `cfg` taken: an older one (a retained copy, a replay) is ignored.
    cfg_ts: AtomicI64,
    /// Repeated after every reconnect, as the protocol asks of a device.
    hello: Mutex<Option<Hello>>,
    /// Alarms without a verified answer yet, sent again until one comes.
    repeats: Mutex<Repeats>,
    /// Off: new alarms are sent once, as a device without repetition would.
    repeating: AtomicBool,
    repeats_sent: AtomicU64,
    /// Wakes the repeat task when the schedule may have moved.
    repeat_wake: Notify,
    /// Whether a connection is up with its subscriptions in place; repeats wait for it.
    online: watch::Sender<bool>,
    /// Held while a publish is queued, so the tally learns kinds in the client's order.
    queue_order: tokio::sync::Mutex<()>,
    pubacks: Mutex<PubackTally>,
}

/// A simulated alarm device connected to a broker.
///
/// Dropping it cuts the connection without DISCONNECT, so the broker
/// publishes the last will, as when a real device dies.
pub struct SimDevice {
    shared: Arc<Shared>,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
    cfg_seen: tokio::sync::Mutex<watch::Receiver<Option<Map<String, Value>>>>,
    driver: JoinHandle<()>,
    repeater: JoinHandle<()>,
}

impl SimDevice {
    /// Connects and subscribes; returns once the broker has accepted both.
    pub async fn connect(opts: SimOptions) -> anyhow::Result<SimDevice> {
        Self::connect_over(opts, None).await
    }

    /// Connects over TLS (mqtts), trusting `tls`'s CA, and subscribes.
    pub async fn connect_tls(opts: SimOptions, tls: &DeviceTls) -> anyhow::Result<SimDevice> {
        Self::connect_over(opts, Some(tls)).await
    }

    /// Connects over plain TCP, or TLS with `tls`.
    pub async fn connect_over(
        opts: SimOptions,
        tls: Option<&DeviceTls>,
    ) -> anyhow::Result<SimDevice> {
        let id = opts.device_id;
        ensure!(is_valid_device_id(&id), "invalid device id {id:?}");
        let mut mqtt = MqttOptions::new(&id, &opts.host, opts.port);
        if let Some(tls) = tls {
            mqtt.set_transport(tls.transport());
        }
        mqtt.set_credentials(&id, opts.key.mqtt_password())
            .set_clean_session(false)
            .set_keep_alive(KEEP_ALIVE)
            .set_last_will(last_will(&id, &opts.key, opts.boot)?);
        let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
        // Queued now, sent by the event loop right after ConnAck.
        client.subscribe_many(downlink_filters(&id)).await?;

        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let (cfg_tx, cfg_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            id,
            keys: Mutex::new(KeyRing {
                current: opts.key,
                previous: None,
                password_is_previous: false,
            }),
            rotations: AtomicU64::new(0),
            boot: opts.boot,
            next_seq: AtomicU32::new(0),
            client,
            unacked: watch::Sender::new(0),
            acks: acks_tx,
            cfg: cfg_tx,
            rejected_cfg: AtomicU64::new(0),
            cfg_ts: AtomicI64::new(i64::MIN),
            hello: Mutex::new(None),
            repeats: Mutex::new(Repeats::default()),
            repeating: AtomicBool::new(true),
            repeats_sent: AtomicU64::new(0),
            repeat_wake: Notify::new(),
            online: watch::Sender::new(true),
            queue_order: tokio::sync::Mutex::new(()),
            pubacks: Mutex::new(PubackTally::default()),
        });
        let address = format!("{}:{}", opts.host, opts.port);
        tokio::time::timeout(CONNECT_TIMEOUT, handshake(&mut eventloop, &shared))
            .await
            .map_err(|_| anyhow!("no ConnAck/SubAck from {address} within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("device {} could not connect to {address}", shared.id))?;

        let driver = tokio::spawn(drive(eventloop, Arc::clone(&shared)));
        let repeater = tokio::spawn(repeat(Arc::clone(&shared)));
        Ok(SimDevice {
            shared,
            acks: tokio::sync::Mutex::new(acks_rx),
            cfg_seen: tokio::sync::Mutex::new(cfg_rx),
            driver,
            repeater,
        })
    }

    pub fn device_id(&self) -> &str {
        &self.shared.id
    }

    pub fn boot(&self) -> u32 {
        self.shared.boot
    }

    /// The `seq` the next message will carry.
    pub fn next_seq(&self) -> u32 {
        self.shared.next_seq.load(Ordering::SeqCst)
    }

    /// Sends `hello`; it is sent again by itself after every reconnect.
    pub async fn hello(&self, fw: &str, model: &str, hb_s: u32) -> anyhow::Result<(u32, u32)> {
        let hello = Hello {
            fw: fw.to_owned(),
            model: model.to_owned(),
            hb_s,
        };
        *self.shared.hello.lock().expect("hello lock") = Some(hello.clone());
        self.shared.send_hello(&hello).await
    }

    /// `batt` in percent, `rssi` in dBm.
    pub async fn heartbeat(
        &self,
        batt: u8,
        charging: bool,
        rssi: i16,
    ) -> anyhow::Result<(u32, u32)> {
        let members = [
            ("batt", json!(batt)),
            ("chg", json!(u8::from(charging))),
            ("rssi", json!(rssi)),
        ];
        self.publish_signed("hb", &members, None).await
    }

    /// `kind` is not checked, so a test can send one the protocol lacks.
    ///
    /// The alarm is sent again, byte for byte, until a verified `received` (or
    /// `accepted`, `resolved`) names it: see [`crate::repeat`].
    pub async fn alarm(
        &self,
        kind: &str,
        fix: Option<Fix>,
        batt: Option<u8>,
    ) -> anyhow::Result<(u32, u32)> {
        let mut members = vec![("kind", json!(kind))];
        members.extend(fix.iter().flat_map(Fix::members));
        members.extend(batt.map(|b| ("batt", json!(b))));
        self.publish_signed("alarm", &members, None).await
    }

    /// `spd` is in cm/s.
    pub async fn position(&self, fix: Fix, spd: Option<u32>) -> anyhow::Result<(u32, u32)> {
        let mut members = fix.members().to_vec();
        members.extend(spd.map(|s| ("spd", json!(s))));
        self.publish_signed("pos", &members, None).await
    }

    /// Signs and publishes `members` on `vakt/v1/dev/{id}/{suffix}`, adding
    /// `boot`, `seq` and `ts`; a member given here replaces the generated one.
    /// On `alarm` it is repeated until answered, as [`SimDevice::alarm`] is.
    ///
    /// `at` forces `(boot, seq)` to craft a duplicate or a replay; the
    /// device's own counter then does not move, and the message is sent once.
    pub async fn publish_signed(
        &self,
        suffix: &str,
        members: &[(&str, Value)],
        at: Option<(u32, u32)>,
    ) -> anyhow::Result<(u32, u32)> {
        self.shared.publish_signed(suffix, members, at).await
    }

    /// Publishes `payload` as is at QoS 1, for forged or malformed messages.
    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.shared.publish_raw(topic, payload).await
    }

    /// Waits until the broker has acknowledged every QoS 1 message sent so
    /// far (the backend acknowledges an alarm only once it is stored).
    pub async fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut unacked = self.shared.unacked.subscribe();
        let settled = tokio::time::timeout(timeout, unacked.wait_for(|n| *n == 0))
            .await
            .map_err(|_| anyhow!("broker did not acknowledge every publish within {timeout:?}"))?
            .is_ok();
        ensure!(settled, "device event loop ended");
        Ok(())
    }

    /// The next `ack` from the backend, once its `mac` checks out.
    ///
    /// A forged or malformed ack is consumed and returned as an error.
    pub async fn feedback(&self) -> anyhow::Result<Feedback> {
        let payload = self
            .acks
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| anyhow!("device event loop ended"))?;
        let ack_topic = topic(&self.shared.id, "ack");
        let (body, _) = self
            .shared
            .verify_downlink(&ack_topic, &payload)
            .map_err(|e| anyhow!("rejected ack on {ack_topic}: {e}"))?;
        Feedback::from_body(&body)
    }

    /// `feedback`, bounded by `timeout`.
    pub async fn next_feedback(&self, timeout: Duration) -> anyhow::Result<Feedback> {
        tokio::time::timeout(timeout, self.feedback())
            .await
            .map_err(|_| anyhow!("no ack for {} within {timeout:?}", self.shared.id))?
    }

    /// The last `cfg` body whose `mac` checked out, without `mac`.
    pub fn latest_cfg(&self) -> Option<Map<String, Value>> {
        self.shared.cfg.borrow().clone()
    }

    /// Waits for a verified `cfg` that arrived after the one this last
    /// returned (the first call also sees one that arrived at connect).
    pub async fn next_cfg(&self, timeout: Duration) -> anyhow::Result<Map<String, Value>> {
        let mut seen = self.cfg_seen.lock().await;
        let newer = async {
            loop {
                seen.changed().await?;
                if let Some(cfg) = seen.borrow_and_update().clone() {
                    return Ok(cfg);
                }
            }
        };
        tokio::time::timeout(timeout, newer)
            .await
            .map_err(|_| anyhow!("no verified cfg for {} within {timeout:?}", self.shared.id))?
            .map_err(|_: watch::error::RecvError| anyhow!("device event loop ended"))
    }

    /// How many `cfg` messages were dropped for a bad or missing `mac`.
    pub fn rejected_cfg(&self) -> u64 {
        self.shared.rejected_cfg.load(Ordering::Relaxed)
    }

    /// The key the device signs with now (it changes when a `cfg` hands over a new one).
    pub fn key(&self) -> DeviceKey {
        self.shared.current_key()
    }

    /// How many new keys the device has taken from a signed `cfg`.
    pub fn key_rotations(&self) -> u64 {
        self.shared.rotations.load(Ordering::Relaxed)
    }

    /// The `(boot, seq)` of the alarms still repeated for want of an answer, oldest first.
    pub fn unanswered_alarms(&self) -> Vec<(u32, u32)> {
        let repeats = self.shared.repeats.lock().expect("repeats lock");
        repeats.pending().map(|a| (a.boot, a.seq)).collect()
    }

    /// How many times an alarm has been sent again.
    pub fn repeats_sent(&self) -> u64 {
        self.shared.repeats_sent.load(Ordering::Relaxed)
    }

    /// How many publishes on `vakt/v1/dev/{id}/{suffix}` the broker has acknowledged
    /// (PUBACK), repeats included. A PUBACK only says the broker has the message.
    pub fn broker_acked(&self, suffix: &str) -> u64 {
        self.shared
            .pubacks
            .lock()
            .expect("puback lock")
            .acked(suffix)
    }

    /// Alarms given up unanswered because newer unanswered ones took their place.
    pub fn dropped_alarms(&self) -> u64 {
        self.shared.repeats.lock().expect("repeats lock").dropped()
    }

    /// How many unanswered alarms the device keeps repeating (16 unless set; the
    /// protocol asks for at least 16). Past it, the oldest is given up.
    pub fn set_keep_unanswered(&self, keep: usize) {
        self.shared
            .repeats
            .lock()
            .expect("repeats lock")
            .set_keep(keep);
    }

    /// Off: alarms from now on are sent once, relying on the broker alone (for
    /// tests that count exactly what arrives); the ones held already keep repeating.
    pub fn set_repeating(&self, on: bool) {
        self.shared.repeating.store(on, Ordering::Relaxed);
    }

    /// Sends DISCONNECT (so no last will) and ends the session task.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        self.repeater.abort();
        self.shared.client.disconnect().await?;
        tokio::time::timeout(DISCONNECT_TIMEOUT, &mut self.driver)
            .await
            .map_err(|_| anyhow!("DISCONNECT not sent within {DISCONNECT_TIMEOUT:?}"))??;
        Ok(())
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        self.driver.abort();
        self.repeater.abort();
    }
}

impl Shared {
    fn current_key(&self) -> DeviceKey {
        self.keys.lock().expect("key lock").current.clone()
    }

    /// Checks a downlink body against the current key, then the previous one. Returns the
    /// members and the key that signed them.
    fn verify_downlink(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(Map<String, Value>, DeviceKey), VerifyError> {
        let mut keys = self.keys.lock().expect("key lock");
        match verify(&keys.current, topic, payload) {
            Ok(body) => {
                // The backend signs with the new key: it has taken it up.
                keys.previous = None;
                keys.password_is_previous = false;
                Ok((body, keys.current.clone()))
            }
            Err(e) => match &keys.previous {
                Some(previous) => verify(previous, topic, payload).map(|b| (b, previous.clone())),
                None => Err(e),
            },
        }
    }

    /// A genuine `cfg` with `newkey` hands the device a new key: from now on it signs with
    /// it. Returns the key when it is new.
    fn take_new_key(
        &self,
        topic: &str,
        cfg: &Map<String, Value>,
        signer: &DeviceKey,
    ) -> Option<DeviceKey> {
        let wrapped = cfg.get("newkey")?.as_str()?;
        let ts = cfg.get("ts")?.as_i64()?;
        let new = unwrap_new_key(signer, topic, ts, wrapped).ok()?;
        let mut keys = self.keys.lock().expect("key lock");
        if new == keys.current {
            return None; // the retained cfg of a rotation already taken
        }
        keys.previous = Some(signer.clone());
        keys.current = new.clone();
        keys.password_is_previous = false;
        self.rotations.fetch_add(1, Ordering::Relaxed);
        Some(new)
    }

    /// The password for the next connection attempt, derived from a key; after a refusal it
    /// alternates between the new key's and the previous one's.
    fn password(&self, refused: bool) -> String {
        let mut keys = self.keys.lock().expect("key lock");
        if refused && keys.previous.is_some() {
            keys.password_is_previous = !keys.password_is_previous;
        }
        match (&keys.previous, keys.password_is_previous) {
            (Some(previous), true) => previous.mqtt_password(),
            _ => keys.current.mqtt_password(),
        }
    }

    async fn send_hello(&self, hello: &Hello) -> anyhow::Result<(u32, u32)> {
        let members = [
            ("fw", json!(hello.fw)),
            ("model", json!(hello.model)),
            ("hb", json!(hello.hb_s)),
        ];
        self.publish_signed("hello", &members, None).await
    }

    async fn publish_signed(
        &self,
        suffix: &str,
        members: &[(&str, Value)],
        at: Option<(u32, u32)>,
    ) -> anyhow::Result<(u32, u32)> {
        let (boot, seq) =
            at.unwrap_or_else(|| (self.boot, self.next_seq.fetch_add(1, Ordering::SeqCst)));
        let mut all = vec![
            ("boot", json!(boot)),
            ("seq", json!(seq)),
            ("ts", json!(now_ms())),
        ];
        for (name, value) in members {
            match all.iter_mut().find(|(existing, _)| existing == name) {
                Some(slot) => slot.1 = value.clone(),
                None => all.push((name, value.clone())),
            }
        }
        let topic = topic(&self.id, suffix);
        let body = signed_body(&self.current_key(), &topic, &all)?.into_bytes();
        // Held before it goes out, so that even the quickest answer finds it.
        let held = suffix == "alarm" && at.is_none() && self.repeating.load(Ordering::Relaxed);
        if held {
            let mut repeats = self.repeats.lock().expect("repeats lock");
            repeats.sent(boot, seq, topic.clone(), body.clone(), Instant::now());
        }
        if let Err(e) = self.publish_raw(&topic, body).await {
            if held {
                self.repeats
                    .lock()
                    .expect("repeats lock")
                    .received(boot, seq);
            }
            return Err(e);
        }
        if held {
            self.repeat_wake.notify_one();
        }
        Ok((boot, seq))
    }

    async fn publish_raw(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.unacked.send_modify(|n| *n += 1);
        let kind = topic.rsplit('/').next().unwrap_or_default();
        let order = self.queue_order.lock().await;
        self.pubacks.lock().expect("puback lock").queued(kind);
        let sent = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await;
        if sent.is_err() {
            self.pubacks.lock().expect("puback lock").unqueued();
            self.settle(1);
        }
        drop(order);
        Ok(sent?)
    }

    fn settle(&self, acknowledged: usize) {
        self.unacked
            .send_modify(|n| *n = n.saturating_sub(acknowledged));
    }

    /// Returns a new key when a `cfg` handed one over (the next connection logs in with it).
    fn on_publish(&self, publish: Publish) -> Option<DeviceKey> {
        if publish.topic == topic(&self.id, "ack") {
            self.stop_repeating_answered(&publish.topic, &publish.payload);
            // Verified by the reader too, so that a forged ack surfaces as an error there.
            let _ = self.acks.send(publish.payload.to_vec());
        } else if publish.topic == topic(&self.id, "cfg") && !publish.payload.is_empty() {
            match self.verify_downlink(&publish.topic, &publish.payload) {
                Ok((cfg, signer)) => {
                    let ts = cfg.get("ts").and_then(Value::as_i64).unwrap_or(i64::MIN);
                    if ts < self.cfg_ts.fetch_max(ts, Ordering::SeqCst) {
                        return None; // older than one already taken
                    }
                    let new = self.take_new_key(&publish.topic, &cfg, &signer);
                    self.cfg.send_replace(Some(cfg));
                    return new;
                }
                Err(_) => {
                    self.rejected_cfg.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None
    }
}

impl Shared {
    /// Every state of a genuine `ack` says the alarm is stored, so each ends its repeats.
    fn stop_repeating_answered(&self, topic: &str, payload: &[u8]) {
        let Ok((body, _)) = self.verify_downlink(topic, payload) else {
            return;
        };
        let Ok(ack) = Feedback::from_body(&body) else {
            return;
        };
        if matches!(ack.st.as_str(), "received" | "accepted" | "resolved") {
            let answered = self
                .repeats
                .lock()
                .expect("repeats lock")
                .received(ack.boot, ack.seq);
            if answered.is_some() {
                self.repeat_wake.notify_one();
            }
        }
    }
}

fn downlink_filters(id: &str) -> Vec<SubscribeFilter> {
    ["ack", "cfg"]
        .into_iter()
        .map(|suffix| SubscribeFilter::new(topic(id, suffix), QoS::AtLeastOnce))
        .collect()
}

/// The signed `state` body the broker publishes if the connection dies.
fn last_will(id: &str, key: &DeviceKey, boot: u32) -> anyhow::Result<LastWill> {
    let state_topic = topic(id, "state");
    let members = [
        ("boot", json!(boot)),
        ("online", json!(false)),
        ("ts", json!(now_ms())),
    ];
    let body = signed_body(key, &state_topic, &members)?;
    Ok(LastWill::new(state_topic, body, QoS::AtLeastOnce, false))
}

/// Polls until the broker has accepted the connection and both subscriptions.
async fn handshake(eventloop: &mut EventLoop, shared: &Shared) -> anyhow::Result<()> {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                if suback
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure))
                {
                    bail!("broker refused the ack/cfg subscriptions");
                }
                return Ok(());
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if shared.on_publish(publish).is_some() {
                    eventloop
                        .mqtt_options
                        .set_credentials(&shared.id, shared.password(false));
                }
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => {
                bail!("broker refused the connection: {code:?}")
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the session until DISCONNECT, reconnecting with back-off when it drops.
async fn drive(mut eventloop: EventLoop, shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        // A broker without our session discards what rumqttc kept for
        // retransmission; those publishes will never be acknowledged.
        let resendable = if eventloop.network.is_none() {
            pending_publishes(&eventloop)
        } else {
            Pending::default()
        };
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff = MIN_BACKOFF;
                if !connack.session_present {
                    shared.settle(resendable.fresh + resendable.retransmit.len());
                    shared
                        .pubacks
                        .lock()
                        .expect("puback lock")
                        .session_lost(&resendable);
                }
                tokio::spawn(after_reconnect(
                    Arc::clone(&shared),
                    !connack.session_present,
                ));
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if shared.on_publish(publish).is_some() {
                    eventloop
                        .mqtt_options
                        .set_credentials(&shared.id, shared.password(false));
                }
            }
            Ok(Event::Incoming(Packet::PubAck(puback))) => {
                shared.settle(1);
                shared
                    .pubacks
                    .lock()
                    .expect("puback lock")
                    .puback(puback.pkid);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                shared.pubacks.lock().expect("puback lock").outgoing(pkid);
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                shared.pubacks.lock().expect("puback lock").collided(pkid);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                shared.online.send_replace(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                // A broker that still has the old key's password refuses the new one's.
                let refused = matches!(
                    e,
                    ConnectionError::ConnectionRefused(
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                    )
                );
                eventloop
                    .mqtt_options
                    .set_credentials(&shared.id, shared.password(refused));
                // The will is signed once per connection attempt, so its
                // `ts` says when this connection was made.
                if let Ok(will) = last_will(&shared.id, &shared.current_key(), shared.boot) {
                    eventloop.mqtt_options.set_last_will(will);
                }
            }
        }
    }
}

fn pending_publishes(eventloop: &EventLoop) -> Pending {
    let mut pending = Pending::default();
    for request in &eventloop.pending {
        match request {
            Request::Publish(p) if p.qos != QoS::AtMostOnce && p.pkid == 0 => pending.fresh += 1,
            Request::Publish(p) if p.qos != QoS::AtMostOnce => pending.retransmit.push(p.pkid),
            _ => {}
        }
    }
    pending
}

/// Spawned because the event loop task must keep polling while these wait
/// for room in the request channel.
async fn after_reconnect(shared: Arc<Shared>, resubscribe: bool) {
    if resubscribe
        && shared
            .client
            .subscribe_many(downlink_filters(&shared.id))
            .await
            .is_err()
    {
        return;
    }
    let hello = shared.hello.lock().expect("hello lock").clone();
    if let Some(hello) = hello {
        let _ = shared.send_hello(&hello).await;
    }
    // Any of them may have been lost with the connection.
    shared
        .repeats
        .lock()
        .expect("repeats lock")
        .reconnected(Instant::now());
    shared.online.send_replace(true);
    shared.repeat_wake.notify_one();
}

/// Sends unanswered alarms again when they are due, while a connection is up.
async fn repeat(shared: Arc<Shared>) {
    let mut online = shared.online.subscribe();
    loop {
        if online.wait_for(|up| *up).await.is_err() {
            return;
        }
        let (due, next) = {
            let mut repeats = shared.repeats.lock().expect("repeats lock");
            (repeats.due(Instant::now()), repeats.next_due())
        };
        for alarm in due {
            if shared
                .publish_raw(&alarm.topic, alarm.payload)
                .await
                .is_err()
            {
                return; // the event loop is gone
            }
            shared.repeats_sent.fetch_add(1, Ordering::Relaxed);
        }
        let next_due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => pending().await,
            }
        };
        tokio::select! {
            () = next_due => {}
            () = shared.repeat_wake.notified() => {}
            _ = online.changed() => {}
        }
    }
}
