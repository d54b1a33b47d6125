//! Simulated devices against the real Mosquitto on 127.0.0.1:1883, watched by a plain MQTT client.

use std::collections::HashMap;
use std::time::Duration;

use firmware_sim::{
    canonical_without_mac, run_fleet, signed_body, topic, verify, Burst, DeviceKey, FleetConfig,
    FleetDevice, FleetEvent, SimDevice, SimOptions,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

const HOST: &str = "127.0.0.1";
const PORT: u16 = 1883;
const WAIT: Duration = Duration::from_secs(10);

fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

fn options(id: &str, key: &DeviceKey, boot: u32) -> SimOptions {
    SimOptions {
        host: HOST.into(),
        port: PORT,
        device_id: id.into(),
        key: key.clone(),
        boot,
    }
}

/// A plain MQTT client standing where the backend would.
struct Observer {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Publish>,
}

impl Observer {
    /// Returns once the broker has confirmed the subscription.
    async fn watch(filter: &str) -> Observer {
        let mut opts = MqttOptions::new(unique_id("observer"), HOST, PORT);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let (tx, incoming) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            // Ends with the test's Observer, or when the broker goes away.
            while !tx.is_closed() {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(done) = subscribed_tx.take() {
                            let _ = done.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let _ = tx.send(publish);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        timeout(WAIT, subscribed).await.unwrap().unwrap();
        Observer { client, incoming }
    }

    async fn next(&mut self) -> Publish {
        timeout(WAIT, self.incoming.recv())
            .await
            .expect("nothing published in time")
            .unwrap()
    }

    async fn next_on(&mut self, wanted_topic: &str) -> Publish {
        loop {
            let publish = self.next().await;
            if publish.topic == wanted_topic {
                return publish;
            }
        }
    }

    async fn publish(&self, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .unwrap();
    }
}

/// Checks what a device sent: signed over its topic, members in canonical
/// order and without white space, `mac` last.
fn check_signed(key: &DeviceKey, publish: &Publish) -> Map<String, Value> {
    let body = verify(key, &publish.topic, &publish.payload)
        .unwrap_or_else(|e| panic!("{}: {e}", publish.topic));
    let canonical = canonical_without_mac(&body).unwrap();
    let wire = std::str::from_utf8(&publish.payload).unwrap();
    let open = &canonical[..canonical.len() - 1];
    assert!(
        wire.starts_with(open) && wire[open.len()..].starts_with(",\"mac\":\""),
        "not canonical with mac last: {wire}"
    );
    body
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hello_heartbeat_and_alarm_arrive_sorted_signed_and_counted() {
    let id = unique_id("sim-msgs");
    let key = DeviceKey::generate();
    let mut observer = Observer::watch(&topic(&id, "+")).await;
    let device = SimDevice::connect(options(&id, &key, 7)).await.unwrap();

    assert_eq!(device.hello("1.2.3", "vakt-one", 60).await.unwrap(), (7, 0));
    assert_eq!(device.heartbeat(87, false, -71).await.unwrap(), (7, 1));
    let fix = firmware_sim::Fix::from_degrees(59.3293, 18.0686, 10).unwrap();
    assert_eq!(
        device.alarm("panic", Some(fix), Some(55)).await.unwrap(),
        (7, 2)
    );
    device.flush(WAIT).await.unwrap();

    let hello = check_signed(&key, &observer.next_on(&topic(&id, "hello")).await);
    assert_eq!(hello["fw"], "1.2.3");
    assert_eq!(hello["model"], "vakt-one");
    assert_eq!(hello["hb"], 60);
    assert_eq!((&hello["boot"], &hello["seq"]), (&json!(7), &json!(0)));

    let hb = check_signed(&key, &observer.next_on(&topic(&id, "hb")).await);
    assert_eq!(
        (&hb["batt"], &hb["chg"], &hb["rssi"], &hb["seq"]),
        (&json!(87), &json!(0), &json!(-71), &json!(1))
    );

    let alarm = check_signed(&key, &observer.next_on(&topic(&id, "alarm")).await);
    assert_eq!(alarm["kind"], "panic");
    assert_eq!(
        (&alarm["lat"], &alarm["lon"], &alarm["acc"], &alarm["batt"]),
        (
            &json!(593_293_000),
            &json!(180_686_000),
            &json!(10),
            &json!(55)
        )
    );
    assert_eq!(alarm["seq"], 2);
    let age_ms = firmware_sim::now_ms() - alarm["ts"].as_i64().unwrap();
    assert!((0..60_000).contains(&age_ms), "ts is not now: {age_ms} ms");

    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_chosen_seq_repeats_a_message_without_moving_the_counter() {
    let id = unique_id("sim-dup");
    let key = DeviceKey::generate();
    let mut observer = Observer::watch(&topic(&id, "hb")).await;
    let device = SimDevice::connect(options(&id, &key, 3)).await.unwrap();

    let first = device.heartbeat(90, true, -60).await.unwrap();
    let members = [("batt", json!(90)), ("chg", json!(1)), ("rssi", json!(-60))];
    let repeated = device
        .publish_signed("hb", &members, Some(first))
        .await
        .unwrap();
    assert_eq!(repeated, first);
    assert_eq!(device.next_seq(), 1);

    for _ in 0..2 {
        let hb = check_signed(&key, &observer.next().await);
        assert_eq!((&hb["boot"], &hb["seq"]), (&json!(3), &json!(0)));
    }
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn an_ack_signed_with_the_device_key_is_feedback_and_a_forged_one_is_an_error() {
    let id = unique_id("sim-ack");
    let key = DeviceKey::generate();
    let backend = Observer::watch(&topic(&id, "alarm")).await;
    let device = SimDevice::connect(options(&id, &key, 1)).await.unwrap();
    let ack_topic = topic(&id, "ack");

    let members = [
        ("boot", json!(1)),
        ("seq", json!(0)),
        ("st", json!("received")),
        ("ts", json!(1_764_320_000_999_i64)),
    ];
    let forged = signed_body(&DeviceKey::generate(), &ack_topic, &members).unwrap();
    backend.publish(&ack_topic, false, forged).await;
    let err = device.next_feedback(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("mac"), "{err:#}");

    let real = signed_body(&key, &ack_topic, &members).unwrap();
    backend.publish(&ack_topic, false, real).await;
    let ack = device.next_feedback(WAIT).await.unwrap();
    assert_eq!(
        ack,
        firmware_sim::Feedback {
            boot: 1,
            seq: 0,
            st: "received".into(),
            ts: 1_764_320_000_999
        }
    );
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_retained_cfg_is_kept_only_when_its_mac_checks_out() {
    let id = unique_id("sim-cfg");
    let key = DeviceKey::generate();
    let backend = Observer::watch(&topic(&id, "cfg")).await;
    let cfg_topic = topic(&id, "cfg");
    let cfg = [("hb", json!(120)), ("ts", json!(1))];
    backend
        .publish(
            &cfg_topic,
            true,
            signed_body(&key, &cfg_topic, &cfg).unwrap(),
        )
        .await;

    let device = SimDevice::connect(options(&id, &key, 1)).await.unwrap();
    let kept = device.next_cfg(WAIT).await.unwrap();
    assert_eq!(kept["hb"], 120);
    assert!(!kept.contains_key("mac"));

    let forged = signed_body(&DeviceKey::generate(), &cfg_topic, &[("hb", json!(1))]).unwrap();
    backend.publish(&cfg_topic, true, forged).await;
    wait_until("the forged cfg to be rejected", || {
        device.rejected_cfg() == 1
    })
    .await;
    assert_eq!(device.latest_cfg().unwrap()["hb"], 120);

    let newer = [("hb", json!(90)), ("ts", json!(2))];
    backend
        .publish(
            &cfg_topic,
            true,
            signed_body(&key, &cfg_topic, &newer).unwrap(),
        )
        .await;
    assert_eq!(device.next_cfg(WAIT).await.unwrap()["hb"], 90);

    backend.publish(&cfg_topic, true, Vec::new()).await;
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_lost_connection_makes_the_broker_publish_the_signed_last_will() {
    let id = unique_id("sim-will");
    let key = DeviceKey::generate();
    let mut observer = Observer::watch(&topic(&id, "state")).await;
    let device = SimDevice::connect(options(&id, &key, 9)).await.unwrap();

    drop(device);

    let will = observer.next().await;
    assert!(!will.retain);
    let state = check_signed(&key, &will);
    assert_eq!(state["online"], false);
    assert_eq!(state["boot"], 9);
    assert!(state["ts"].is_i64());
    assert!(!state.contains_key("seq"));
}

#[tokio::test]
async fn after_a_lost_session_the_device_resubscribes_and_says_hello_again() {
    let id = unique_id("sim-reconnect");
    let key = DeviceKey::generate();
    let mut observer = Observer::watch(&topic(&id, "hello")).await;
    let device = SimDevice::connect(options(&id, &key, 4)).await.unwrap();
    device.hello("1.0.0", "vakt-one", 60).await.unwrap();
    assert_eq!(check_signed(&key, &observer.next().await)["seq"], 0);

    // Taking over the client id with a clean session throws the device off
    // and wipes its broker session, subscriptions included.
    let mut intruder = MqttOptions::new(&id, HOST, PORT);
    intruder.set_clean_session(true);
    let (_intruder, mut intruder_loop) = AsyncClient::new(intruder, 8);
    loop {
        let event = timeout(WAIT, intruder_loop.poll()).await.unwrap().unwrap();
        if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
            break;
        }
    }
    drop(intruder_loop);

    let again = check_signed(&key, &observer.next().await);
    assert_eq!((&again["boot"], &again["seq"]), (&json!(4), &json!(1)));
    let ack_topic = topic(&id, "ack");
    let members = [
        ("boot", json!(4)),
        ("seq", json!(1)),
        ("st", json!("resolved")),
        ("ts", json!(1)),
    ];
    let ack = signed_body(&key, &ack_topic, &members).unwrap();
    observer.publish(&ack_topic, false, ack).await;
    assert_eq!(device.next_feedback(WAIT).await.unwrap().st, "resolved");
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn connecting_where_no_broker_listens_fails_instead_of_hanging() {
    let opts = SimOptions {
        port: 1,
        ..options(&unique_id("sim-nobroker"), &DeviceKey::generate(), 1)
    };
    assert!(SimDevice::connect(opts).await.is_err());
}

#[tokio::test]
async fn a_device_logs_in_with_the_password_derived_from_its_key_and_a_refusal_fails_connect() {
    let listener = tokio::net::TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connect_tx, connect_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut connect = [0u8; 1024];
        let n = socket.read(&mut connect).await.unwrap();
        let _ = connect_tx.send(connect[..n].to_vec());
        // CONNACK, return code 4: bad user name or password.
        socket.write_all(&[0x20, 0x02, 0x00, 0x04]).await.unwrap();
    });
    let key = DeviceKey::generate();
    let opts = SimOptions {
        port,
        ..options(&unique_id("sim-refused"), &key, 1)
    };
    let err = SimDevice::connect(opts)
        .await
        .err()
        .expect("connect should fail");
    assert!(
        format!("{err:#}").contains("BadUserNamePassword"),
        "{err:#}"
    );
    let connect = String::from_utf8_lossy(&connect_rx.await.unwrap()).into_owned();
    assert!(connect.contains(&key.mqtt_password()), "{connect:?}");
    assert!(!connect.contains(&key.to_hex()), "the key itself went out");
}

#[tokio::test]
async fn a_device_id_outside_the_protocol_pattern_is_refused() {
    let err = SimDevice::connect(options("dev/1", &DeviceKey::generate(), 1))
        .await
        .err()
        .expect("connect should fail");
    assert!(err.to_string().contains("invalid device id"), "{err:#}");
}

/// Answers every alarm of the given devices with a signed `received` ack.
async fn fake_backend(keys: HashMap<String, DeviceKey>) {
    answering_backend(keys, false).await
}

/// `lose_first_copies`: acts as if the first copy of every alarm was lost on its way.
async fn answering_backend(keys: HashMap<String, DeviceKey>, lose_first_copies: bool) {
    let mut alarms = Observer::watch("vakt/v1/dev/+/alarm").await;
    let mut seen = std::collections::HashSet::new();
    tokio::spawn(async move {
        while let Some(alarm) = alarms.incoming.recv().await {
            let Some(id) = alarm.topic.split('/').nth(3) else {
                continue;
            };
            let Some(key) = keys.get(id) else { continue };
            if lose_first_copies && seen.insert(alarm.payload.clone()) {
                continue;
            }
            let body = verify(key, &alarm.topic, &alarm.payload).unwrap();
            let ack_topic = topic(id, "ack");
            let members = [
                ("boot", body["boot"].clone()),
                ("seq", body["seq"].clone()),
                ("st", json!("received")),
                ("ts", json!(firmware_sim::now_ms())),
            ];
            let ack = signed_body(key, &ack_topic, &members).unwrap();
            alarms.publish(&ack_topic, false, ack).await;
        }
    });
}

fn fleet_of(n: usize) -> Vec<FleetDevice> {
    let run = unique_id("fleet");
    (0..n)
        .map(|i| FleetDevice {
            id: format!("{run}-{i}"),
            key: DeviceKey::generate(),
            home: Some((59.3293, 18.0686)),
        })
        .collect()
}

#[tokio::test]
async fn a_fleet_measures_ack_latency_and_stops_when_told() {
    let devices = fleet_of(3);
    fake_backend(
        devices
            .iter()
            .map(|d| (d.id.clone(), d.key.clone()))
            .collect(),
    )
    .await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let mut cfg = FleetConfig::new(HOST, PORT, devices);
    cfg.heartbeat = Duration::from_secs(1);
    cfg.alarm_every = Some(Duration::from_millis(100));
    cfg.position_every = Some(Duration::from_secs(1));
    cfg.connect_rate = 0;
    cfg.stop = Some(stop);
    cfg.events = Some(events_tx);
    let fleet = tokio::spawn(run_fleet(cfg));

    let mut received = 0;
    while received < 5 {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            FleetEvent::Received { .. } => received += 1,
            FleetEvent::BadAck { error, .. } | FleetEvent::ConnectFailed { error, .. } => {
                panic!("{error}")
            }
            _ => {}
        }
    }
    stop_tx.send(true).unwrap();
    let report = timeout(WAIT, fleet).await.unwrap().unwrap().unwrap();

    assert_eq!((report.devices, report.connected), (3, 3));
    assert!(report.alarms >= 5, "{report:?}");
    assert!(report.received >= 5, "{report:?}");
    assert_eq!(report.received as usize, report.latencies.len());
    assert_eq!((report.bad_acks, report.connect_failures), (0, 0));
    assert!(report.median_latency() <= report.p99_latency());
    assert!(report.latencies.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn a_fleet_ends_by_itself_after_its_duration() {
    let mut cfg = FleetConfig::new(HOST, PORT, fleet_of(2));
    cfg.alarm_every = None;
    cfg.duration = Some(Duration::from_millis(500));
    let report = timeout(WAIT, run_fleet(cfg)).await.unwrap().unwrap();
    assert_eq!(report.connected, 2);
    assert_eq!(report.alarms, 0);
    assert!(report.elapsed >= Duration::from_millis(500));
}

/// A listener on a port of its own that forwards every connection to the broker and
/// counts them: a second listener of the same broker, as far as a device can tell.
async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut device, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut broker = tokio::net::TcpStream::connect((HOST, PORT)).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut device, &mut broker).await;
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_fleet_spreads_its_devices_over_the_broker_ports_in_turn() {
    use std::sync::atomic::Ordering;
    let (first, on_first) = counting_listener().await;
    let (second, on_second) = counting_listener().await;
    let devices = fleet_of(5);
    let (first_id, first_key) = (devices[0].id.clone(), devices[0].key.clone());
    let mut observer = Observer::watch(&topic(&first_id, "hello")).await;
    let mut cfg = FleetConfig::new(HOST, first, devices);
    cfg.more_ports = vec![second];
    cfg.alarm_every = None;
    cfg.heartbeat = Duration::from_secs(1);
    cfg.connect_rate = 0;
    cfg.duration = Some(Duration::from_millis(1500));
    let report = timeout(WAIT, run_fleet(cfg)).await.unwrap().unwrap();

    assert_eq!((report.connected, report.connect_failures), (5, 0));
    assert_eq!(
        (
            on_first.load(Ordering::SeqCst),
            on_second.load(Ordering::SeqCst)
        ),
        (3, 2)
    );
    // The first device, on the first port, really speaks MQTT through it.
    let hello = observer.next_on(&topic(&first_id, "hello")).await;
    check_signed(&first_key, &hello);
}

/// A signed `ack` for alarm `(boot, seq)`, as the backend would publish it.
fn ack_body(key: &DeviceKey, id: &str, (boot, seq): (u32, u32), st: &str) -> String {
    let members = [
        ("boot", json!(boot)),
        ("seq", json!(seq)),
        ("st", json!(st)),
        ("ts", json!(firmware_sim::now_ms())),
    ];
    signed_body(key, &topic(id, "ack"), &members).unwrap()
}

/// The next alarm copy with when it arrived, waiting up to `within`.
async fn next_copy(observer: &mut Observer, within: Duration) -> Option<(Instant, Publish)> {
    let copy = timeout(within, observer.incoming.recv()).await.ok()??;
    Some((Instant::now(), copy))
}

fn seq_of(publish: &Publish) -> u64 {
    let body: Value = serde_json::from_slice(&publish.payload).unwrap();
    body["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn an_unanswered_alarm_is_repeated_byte_for_byte_after_5_then_10_seconds_until_received() {
    let id = unique_id("sim-repeat");
    let key = DeviceKey::generate();
    let mut backend = Observer::watch(&topic(&id, "alarm")).await;
    let device = SimDevice::connect(options(&id, &key, 5)).await.unwrap();
    let first = device.alarm("panic", None, Some(80)).await.unwrap();
    let second = device.alarm("fall", None, None).await.unwrap();
    let (sent_at, first_copy) = next_copy(&mut backend, WAIT).await.unwrap();
    let (_, second_copy) = next_copy(&mut backend, WAIT).await.unwrap();
    assert_eq!(device.unanswered_alarms(), [first, second]);

    // Nothing is answered: both come again, the same bytes, about 5 s later.
    let (at, again) = next_copy(&mut backend, WAIT).await.unwrap();
    let (_, second_again) = next_copy(&mut backend, WAIT).await.unwrap();
    let after = at - sent_at;
    assert!(
        (Duration::from_millis(4_500)..Duration::from_millis(7_000)).contains(&after),
        "first repeat after {after:?}"
    );
    assert_eq!(again.payload, first_copy.payload);
    assert_eq!(second_again.payload, second_copy.payload);
    assert_eq!(again.topic, first_copy.topic);

    // The first is answered; the second only by a forgery, which must not count.
    let forged = ack_body(&DeviceKey::generate(), &id, second, "received");
    backend.publish(&topic(&id, "ack"), false, forged).await;
    let real = ack_body(&key, &id, first, "received");
    backend.publish(&topic(&id, "ack"), false, real).await;
    wait_until("the received to stop the first alarm's repeats", || {
        device.unanswered_alarms() == [second]
    })
    .await;

    // 10 s after its first repeat the second comes again; the first does not.
    let (at_third, third) = next_copy(&mut backend, Duration::from_secs(14))
        .await
        .expect("no second repeat");
    let gap = at_third - at;
    assert!(
        (Duration::from_millis(9_000)..Duration::from_millis(12_000)).contains(&gap),
        "second repeat {gap:?} after the first"
    );
    assert_eq!(third.payload, second_copy.payload);
    assert!(
        next_copy(&mut backend, Duration::from_millis(1_500))
            .await
            .is_none(),
        "the answered alarm came again"
    );
    assert_eq!(device.repeats_sent(), 3);

    let answer = ack_body(&key, &id, second, "resolved");
    backend.publish(&topic(&id, "ack"), false, answer).await;
    wait_until("every alarm to be answered", || {
        device.unanswered_alarms().is_empty()
    })
    .await;
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn after_a_lost_connection_an_unanswered_alarm_goes_out_again_at_once() {
    let id = unique_id("sim-repeat-reconnect");
    let key = DeviceKey::generate();
    let mut backend = Observer::watch(&topic(&id, "alarm")).await;
    let device = SimDevice::connect(options(&id, &key, 6)).await.unwrap();
    device.hello("1.0.0", "vakt-one", 60).await.unwrap();
    let alarm = device.alarm("panic", None, None).await.unwrap();
    let (sent_at, first_copy) = next_copy(&mut backend, WAIT).await.unwrap();

    // Taking over the client id with a clean session throws the device off
    // and wipes its broker session.
    let mut intruder = MqttOptions::new(&id, HOST, PORT);
    intruder.set_clean_session(true);
    let (_intruder, mut intruder_loop) = AsyncClient::new(intruder, 8);
    loop {
        let event = timeout(WAIT, intruder_loop.poll()).await.unwrap().unwrap();
        if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
            break;
        }
    }
    drop(intruder_loop);

    let (at, again) = next_copy(&mut backend, WAIT).await.unwrap();
    assert!(
        at - sent_at < Duration::from_millis(4_000),
        "repeated only {:?} after the first send",
        at - sent_at
    );
    assert_eq!(again.payload, first_copy.payload);
    assert_eq!(seq_of(&again), u64::from(alarm.1));
    assert_eq!(device.repeats_sent(), 1);

    let answer = ack_body(&key, &id, alarm, "received");
    backend.publish(&topic(&id, "ack"), false, answer).await;
    wait_until("the alarm to be answered", || {
        device.unanswered_alarms().is_empty()
    })
    .await;
    device.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_received_for_an_alarm_the_device_does_not_hold_changes_nothing() {
    let id = unique_id("sim-repeat-stray");
    let key = DeviceKey::generate();
    let backend = Observer::watch(&topic(&id, "alarm")).await;
    let device = SimDevice::connect(options(&id, &key, 8)).await.unwrap();
    let alarm = device.alarm("panic", None, None).await.unwrap();

    let stray = ack_body(&key, &id, (alarm.0, alarm.1 + 1), "received");
    backend.publish(&topic(&id, "ack"), false, stray).await;

    assert_eq!(device.next_feedback(WAIT).await.unwrap().seq, alarm.1 + 1);
    assert_eq!(device.unanswered_alarms(), [alarm]);
    device.disconnect().await.unwrap();
}

fn keys_of(devices: &[FleetDevice]) -> HashMap<String, DeviceKey> {
    devices
        .iter()
        .map(|d| (d.id.clone(), d.key.clone()))
        .collect()
}

#[tokio::test]
async fn a_burst_reports_per_device_what_was_sent_answered_and_acknowledged() {
    let devices = fleet_of(2);
    fake_backend(keys_of(&devices)).await;
    let mut cfg = FleetConfig::new(HOST, PORT, devices.clone());
    cfg.connect_rate = 0;
    cfg.burst = Some(Burst {
        messages: 200,
        alarm_every: 20,
        wait: Duration::from_secs(10),
        together: false,
    });

    let report = timeout(Duration::from_secs(20), run_fleet(cfg))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        (report.alarms, report.received, report.unanswered),
        (20, 20, 0)
    );
    assert_eq!((report.heartbeats, report.heartbeats_acked), (380, 380));
    assert_eq!(report.latencies.len(), 20);
    assert_eq!(report.per_device.len(), 2);
    for device in &report.per_device {
        assert_eq!(device.alarms_sent.len(), 10, "{device:?}");
        // hello is seq 0, then every 20th of the 200 messages is an alarm.
        let seqs: Vec<u32> = device.alarms_sent.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(seqs, (1..=10).map(|n| n * 20).collect::<Vec<_>>());
        let mut answered = device.alarms_answered.clone();
        answered.sort();
        assert_eq!(answered, device.alarms_sent);
        assert_eq!(
            (device.heartbeats_sent, device.heartbeats_acked),
            (190, 190)
        );
    }
    let json = report.to_json();
    assert_eq!(json["per_device"][0]["alarms_sent"][0][1], 20);
    assert_eq!(json["unanswered"], 0);
}

#[tokio::test]
async fn in_a_burst_alarms_whose_first_copy_is_lost_are_answered_after_a_repeat() {
    let devices = fleet_of(1);
    answering_backend(keys_of(&devices), true).await;
    let mut cfg = FleetConfig::new(HOST, PORT, devices);
    cfg.connect_rate = 0;
    cfg.burst = Some(Burst {
        messages: 40,
        alarm_every: 10,
        wait: Duration::from_secs(15),
        together: false,
    });

    let report = timeout(Duration::from_secs(25), run_fleet(cfg))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        (report.alarms, report.received, report.unanswered),
        (4, 4, 0)
    );
    assert!(report.repeats >= 4, "{report:?}");
    assert!(
        report.latencies[0] >= Duration::from_millis(4_500),
        "{report:?}"
    );
    assert_eq!(report.per_device[0].repeats, report.repeats);
}
