//! The broker, attacked with one stolen device key: taking the backend's place (its client
//! id or a device named like it), reading other devices' traffic, raising an alert on
//! another case with garbage, overwriting another device's retained `cfg`, and playing a
//! captured last will again; and with a device's MQTT password alone, forging its alarms.
//! Each attack runs on both topologies.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Packet, QoS};
use serde_json::{json, Value};

use crate::baseline::panic_is_answered;
use crate::on_both;
use crate::target::{Issued, Target, Topology, ALONE, BACKEND_USER};

/// The backend's client id on the target: the default on the embedded broker, the backend
/// user on Mosquitto (where the broker makes the username the client id).
fn backend_client_id(target: &Target) -> &'static str {
    match target.topology {
        Topology::Embedded => "vakt-ingest",
        Topology::MosquittoPostgres => BACKEND_USER,
    }
}

/// Connects and gives the client and its event loop once CONNACK is in, or the refusal.
async fn login(
    options: rumqttc::MqttOptions,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("no CONNACK: {e}"),
            }
        }
    })
    .await
    .expect("an answer to the login")
    .map(|()| (client, eventloop))
}

/// Drives an attacker's connection in the background, collecting the topics it receives.
fn listen(mut eventloop: EventLoop) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(p.topic);
            }
        }
    });
    rx
}

/// Publishes and waits for the broker's PUBACK (on the embedded broker that is after the
/// ingest has dealt with it; on Mosquitto after its ACL has).
async fn publish_acked(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    retain: bool,
    payload: &[u8],
) {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                return;
            }
        }
    })
    .await
    .expect("a PUBACK");
}

fn topic(d: &Issued, leaf: &str) -> String {
    format!("vakt/v1/dev/{}/{leaf}", d.id)
}

async fn connection_state(target: &Target, d: &Issued) -> Value {
    let v = target
        .get("coord-nord", &format!("/api/devices/{}", d.id))
        .await;
    v["health"]["connection"].clone()
}

async fn wait_for_connection_state(target: &Target, d: &Issued, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while connection_state(target, d).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never became {want}:\n{}",
            d.id,
            target.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_metric(target: &Target, name: &str, at_least: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while target.metric(name).await < at_least as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed below {at_least}:\n{}",
            target.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_backends_place_cannot_be_taken_with_a_device_key(target: &Target) {
    let backend = backend_client_id(target);
    // A coordinator cannot make a device named like the backend, through the API.
    for id in [backend, "vakt-1", "VAKT-2"] {
        let (status, problem) = target
            .call(
                Some("coord-nord"),
                Method::POST,
                "/api/devices",
                Some(json!({"id": id, "kind": "alarm"})),
            )
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("id")),
            "{id}: {problem}"
        );
    }

    let attacker = target.issue_device("Nord").await;
    let victim = target.issue_device("Nord").await;
    // The attacker's own key under the backend's client id, again and again, with a clean
    // session (which made Mosquitto drop the backend) and without (its session).
    let mut kept = Vec::new();
    for round in 0..6 {
        let clean = round % 2 == 0;
        let mut o = target.mqtt_options(backend, &attacker.id, &attacker.password());
        o.set_clean_session(clean);
        match (target.topology, login(o).await) {
            (Topology::Embedded, Ok(_)) => panic!("the embedded broker let {backend} in"),
            (Topology::Embedded, Err(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized)
            }
            // Mosquitto lets the device in as itself, under its own id.
            (Topology::MosquittoPostgres, Ok((client, eventloop))) => {
                client
                    .subscribe("vakt/v1/dev/+/+", QoS::AtLeastOnce)
                    .await
                    .unwrap();
                kept.push((client, listen(eventloop)));
            }
            (Topology::MosquittoPostgres, Err(code)) => {
                panic!("{} refused as itself: {code:?}", attacker.id)
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The backend is where it was: an honest panic is answered within a second.
    assert!(target.ready().await, "not ready:\n{}", target.log());
    panic_is_answered(target, &victim, Duration::from_secs(1)).await;
    assert!(target.ready().await, "not ready:\n{}", target.log());
    match target.topology {
        Topology::Embedded => {
            assert!(target.metric("vakt_backend_identity_refused_total").await >= 6);
            let events = target.security_events().await;
            assert!(
                events
                    .iter()
                    .any(|e| e["kind"] == "backend_identity"
                        && e["device_id"] == attacker.id.as_str()),
                "no backend_identity event naming {}: {events:?}",
                attacker.id
            );
        }
        Topology::MosquittoPostgres => {
            let log = target.log();
            assert!(
                !log.contains(&format!("{backend} already connected")),
                "the backend was cut off:\n{log}"
            );
            // Nothing of the victim reached the attacker through the backend's id.
            for (_client, mut seen) in kept {
                while let Ok(t) = seen.try_recv() {
                    assert!(!t.contains(&victim.id), "the attacker read {t}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_place_cannot_be_taken_with_a_device_key_on_the_embedded_broker() {
    let _alone = ALONE.lock().await;
    let target = Target::start(Topology::Embedded).await;
    the_backends_place_cannot_be_taken_with_a_device_key(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_place_cannot_be_taken_with_a_device_key_on_mosquitto_and_postgres() {
    let _alone = ALONE.lock().await;
    let Some(target) = Target::start_if_possible(Topology::MosquittoPostgres).await else {
        return;
    };
    the_backends_place_cannot_be_taken_with_a_device_key(&target).await;
}

async fn one_device_key_reads_nothing_of_another_device(target: &Target) {
    let attacker = target.issue_device("Nord").await;
    let victim = target.issue_device("Nord").await;
    let o = target.mqtt_options(&attacker.id, &attacker.id, &attacker.password());
    let (client, eventloop) = login(o).await.expect("the attacker logs in");
    for filter in [
        "#".to_owned(),
        "vakt/v1/dev/+/+".to_owned(),
        topic(&victim, "pos"),
        topic(&victim, "alarm"),
        topic(&victim, "ack"),
        topic(&victim, "cfg"),
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let mut seen = listen(eventloop);
    // The victim (a protected person) sends where they are, and a panic.
    let device = target.device(&victim).await;
    device
        .position(crate::common::fix_near_home(), None)
        .await
        .unwrap();
    device
        .alarm("panic", Some(crate::common::fix_near_home()), Some(80))
        .await
        .unwrap();
    let answer = device.next_feedback(Duration::from_secs(10)).await.unwrap();
    assert_eq!(answer.st, "received");
    target
        .wait_for_alert(&victim.id, |a| a["kind"] == "panic")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(t) = seen.try_recv() {
        assert!(!t.contains(&victim.id), "the attacker read {t}");
    }
    if target.topology == Topology::Embedded {
        assert!(target.metric("vakt_subscribe_denied_total").await >= 5);
    }
}

on_both!(
    one_device_key_reads_nothing_of_another_device_on_the_embedded_broker,
    one_device_key_reads_nothing_of_another_device_on_mosquitto_and_postgres,
    one_device_key_reads_nothing_of_another_device
);

/// Whoever sees a device's MQTT password (a broker's operator, its logs, a link without
/// TLS) may log in as the device, but cannot sign as it: the password is derived from the
/// key, not the key. And the key itself is not a password the broker takes.
async fn the_mqtt_password_signs_nothing_and_the_key_is_no_password(target: &Target) {
    let victim = target.issue_device("Nord").await;
    let o = target.mqtt_options(&victim.id, &victim.id, &victim.key);
    assert!(
        login(o).await.is_err(),
        "the broker took the device key itself as the password"
    );
    let o = target.mqtt_options(&victim.id, &victim.id, &victim.password());
    let (client, mut eventloop) = login(o).await.expect("the password logs in");
    // A panic signed with what the eavesdropper has: the password, taken for a key.
    let as_key = firmware_sim::DeviceKey::from_bytes(
        hex::decode(victim.password()).unwrap().try_into().unwrap(),
    );
    let members = [
        ("boot", json!(1)),
        ("kind", json!("panic")),
        ("seq", json!(1)),
        ("ts", json!(vakt::domain::now_ms())),
    ];
    let forged = firmware_sim::signed_body(&as_key, &topic(&victim, "alarm"), &members).unwrap();
    publish_acked(
        &client,
        &mut eventloop,
        &topic(&victim, "alarm"),
        false,
        forged.as_bytes(),
    )
    .await;
    wait_for_metric(target, "vakt_bad_signatures_total", 1).await;
    assert!(
        target
            .alerts()
            .await
            .iter()
            .all(|a| a["device_id"] != victim.id.as_str()),
        "the forged panic raised an alert"
    );
}

on_both!(
    the_mqtt_password_signs_nothing_and_the_key_is_no_password_on_the_embedded_broker,
    the_mqtt_password_signs_nothing_and_the_key_is_no_password_on_mosquitto_and_postgres,
    the_mqtt_password_signs_nothing_and_the_key_is_no_password
);

async fn garbage_on_another_devices_topic_raises_nothing_on_its_case(target: &Target) {
    let attacker = target.issue_device("Nord").await;
    let victim = target.issue_device("Nord").await;
    let o = target.mqtt_options(&attacker.id, &attacker.id, &attacker.password());
    let (client, mut eventloop) = login(o).await.expect("the attacker logs in");
    let forged = format!(
        r#"{{"boot":1,"kind":"panic","seq":7,"ts":1,"mac":"{}"}}"#,
        "0".repeat(64)
    );
    for leaf in ["alarm", "alarm", "alarm", "hb", "pos"] {
        publish_acked(
            &client,
            &mut eventloop,
            &topic(&victim, leaf),
            false,
            forged.as_bytes(),
        )
        .await;
    }
    // The victim's own panic goes through, and it is the only alert on the device.
    panic_is_answered(target, &victim, Duration::from_secs(5)).await;
    let on_victim: Vec<Value> = target
        .alerts()
        .await
        .into_iter()
        .filter(|a| a["device_id"] == victim.id.as_str() || a["case_id"] == victim.case_id.as_str())
        .collect();
    assert!(
        on_victim.iter().all(|a| a["kind"] == "panic"),
        "the garbage raised something: {on_victim:?}"
    );
    assert_eq!(target.metric("vakt_bad_signatures_total").await, 0);
}

on_both!(
    garbage_on_another_devices_topic_raises_nothing_on_its_case_on_the_embedded_broker,
    garbage_on_another_devices_topic_raises_nothing_on_its_case_on_mosquitto_and_postgres,
    garbage_on_another_devices_topic_raises_nothing_on_its_case
);

/// The first `cfg` the victim gets on subscribing: it must be the backend's, signed with the
/// victim's key and carrying the pending new key.
async fn retained_cfg_is_the_backends(target: &Target, victim: &Issued) {
    let o = target.mqtt_options(&victim.id, &victim.id, &victim.password());
    let (client, mut eventloop) = login(o).await.expect("the victim logs in");
    client
        .subscribe(topic(victim, "cfg"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = eventloop.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("a retained cfg");
    let body = vakt::protocol::Body::parse(&p.payload).unwrap();
    let key = vakt::protocol::DeviceKey::from_hex(&victim.key).unwrap();
    let mac = body.str("mac").unwrap_or_default().to_owned();
    assert!(
        body.str("newkey").is_some() && key.verify(&p.topic, &body.canonical(), &mac),
        "the retained cfg is not the backend's: {:?}",
        p.payload
    );
    let _ = client.disconnect().await;
}

async fn another_devices_retained_cfg_cannot_be_overwritten(target: &Target) {
    let attacker = target.issue_device("Nord").await;
    let victim = target.issue_device("Nord").await;
    // A key rotation waits for the victim: its retained cfg carries the new key.
    target
        .ok(
            "coord-nord",
            Method::POST,
            &format!("/api/devices/{}/rotate-key", victim.id),
            Some(json!({})),
        )
        .await;
    retained_cfg_is_the_backends(target, &victim).await;

    let o = target.mqtt_options(&attacker.id, &attacker.id, &attacker.password());
    let (client, mut eventloop) = login(o).await.expect("the attacker logs in");
    let forged = br#"{"hb":1,"ts":1,"mac":"00"}"#;
    for (leaf, retain) in [("cfg", true), ("cfg", false), ("ack", false), ("ack", true)] {
        publish_acked(
            &client,
            &mut eventloop,
            &topic(&victim, leaf),
            retain,
            forged,
        )
        .await;
    }
    retained_cfg_is_the_backends(target, &victim).await;
}

on_both!(
    another_devices_retained_cfg_cannot_be_overwritten_on_the_embedded_broker,
    another_devices_retained_cfg_cannot_be_overwritten_on_mosquitto_and_postgres,
    another_devices_retained_cfg_cannot_be_overwritten
);

async fn a_captured_last_will_cannot_be_played_again(target: &Target) {
    let attacker = target.issue_device("Nord").await;
    let victim = target.issue_device("Nord").await;
    let device = target.device(&victim).await;
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(10)).await.unwrap();
    wait_for_connection_state(target, &victim, "online").await;

    // The victim's will as captured: signed with its key, for its current boot.
    let state = topic(&victim, "state");
    let body = vakt::protocol::Body::parse(br#"{"boot":1,"online":false,"ts":1}"#).unwrap();
    let key = vakt::protocol::DeviceKey::from_hex(&victim.key).unwrap();
    let will = body
        .with_mac(&key.sign(&state, &body.canonical()))
        .into_bytes();

    // As the attacker's own last will, retained and not; the connection then dies without
    // DISCONNECT. A broker may also refuse such a will at the door.
    for (n, retain) in [false, true].into_iter().enumerate() {
        let mut o = target.mqtt_options(&attacker.id, &attacker.id, &attacker.password());
        o.set_last_will(rumqttc::LastWill::new(
            state.as_str(),
            will.clone(),
            QoS::AtLeastOnce,
            retain,
        ));
        if let Ok(connected) = login(o).await {
            drop(connected);
        }
        // Let the broker see the connection die (and send the will) before the attacker's
        // next login, which would otherwise take the connection over and end it quietly.
        match target.topology {
            Topology::Embedded => wait_for_metric(target, "vakt_topic_denied_total", n + 1).await,
            Topology::MosquittoPostgres => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // And published outright.
    let o = target.mqtt_options(&attacker.id, &attacker.id, &attacker.password());
    let (client, mut eventloop) = login(o).await.expect("the attacker logs in");
    for retain in [false, true] {
        publish_acked(&client, &mut eventloop, &state, retain, &will).await;
    }
    if target.topology == Topology::Embedded {
        wait_for_metric(target, "vakt_topic_denied_total", 4).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        connection_state(target, &victim).await,
        "online",
        "the replayed will marked {} offline",
        victim.id
    );
    // The victim's own will still works: the path the attack would have used is live.
    drop(device);
    wait_for_connection_state(target, &victim, "connection_lost").await;
}

on_both!(
    a_captured_last_will_cannot_be_played_again_on_the_embedded_broker,
    a_captured_last_will_cannot_be_played_again_on_mosquitto_and_postgres,
    a_captured_last_will_cannot_be_played_again
);
