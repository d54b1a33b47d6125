//! The embedded broker as a device, or someone holding one device's key, meets it: logins,
//! topic rights, the last will and a persistent session.

mod common;

use std::time::Duration;

use common::{wait_for, TestApp};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS,
};
use serde_json::json;

fn options(app: &TestApp, id: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, &app.running.mqtt_host, app.running.mqtt_port);
    o.set_credentials(id, password)
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true);
    o
}

/// Waits until a security event of `kind` (about `device`, when given) is stored.
async fn wait_for_security_event(app: &TestApp, kind: &str, device: Option<&str>) {
    let (admin, url) = (app.admin.clone(), app.url("/api/security-events"));
    wait_for(
        &format!("a stored {kind} security event"),
        Duration::from_secs(5),
        || {
            let req = admin.get(&url).send();
            async move {
                let events: serde_json::Value = req.await.unwrap().json().await.unwrap();
                events
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == kind && device.is_none_or(|d| e["device_id"] == d))
            }
        },
    )
    .await
}

/// The device's connection state as the API reports it, once it is `want`.
async fn wait_for_connection(app: &TestApp, device: &str, want: &'static str) {
    let (client, url) = (
        app.officer.clone(),
        app.url(&format!("/api/devices/{device}")),
    );
    wait_for("the device's online state", Duration::from_secs(10), || {
        let req = client.get(&url).send();
        async move {
            let v: serde_json::Value = req.await.unwrap().json().await.unwrap();
            v["health"]["connection"] == want
        }
    })
    .await
}

/// Connects `options` and waits for the broker's answer: `Err` with its code when refused.
async fn try_login(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
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
    .expect("an answer to the login");
    answer.map(|()| (client, eventloop))
}

/// Polls until `want` matches an event, failing after a few seconds.
async fn until(eventloop: &mut EventLoop, want: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(e) if want(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    })
    .await
    .expect("the awaited MQTT event")
}

#[tokio::test]
async fn a_login_with_a_wrong_password_the_key_itself_or_an_unknown_id_is_refused() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    for (id, password) in [
        (d.id.as_str(), "0".repeat(64)),
        // The key itself is not the password: a broker or a sniffer that saw it could sign.
        (d.id.as_str(), d.key.clone()),
        ("nobody-knows", d.password()),
        ("vakt-backend", String::new()),
    ] {
        let (_client, mut eventloop) = AsyncClient::new(options(&app, id, &password), 10);
        let refused = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("an answer");
        assert!(refused.is_err(), "{id} logged in with a wrong password");
    }
    app.wait_for_metric("vakt_broker_logins_refused_total", 4)
        .await;
}

#[tokio::test]
async fn a_device_cannot_subscribe_to_another_devices_topics_or_to_everything() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let a = app.issued_device("Stockholm").await;
    let b = app.issued_device("Stockholm").await;
    let (client, mut eventloop) = AsyncClient::new(options(&app, &a.id, &a.password()), 10);
    let filters = [
        format!("vakt/v1/dev/{}/ack", b.id),
        "vakt/v1/dev/+/alarm".to_owned(),
        "#".to_owned(),
        format!("vakt/v1/dev/{}/ack", a.id),
    ];
    for f in &filters {
        client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < filters.len() {
        if let Event::Incoming(Packet::SubAck(ack)) = until(&mut eventloop, |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_)))
        })
        .await
        {
            codes.extend(ack.return_codes);
        }
    }
    use rumqttc::SubscribeReasonCode::{Failure, Success};
    assert_eq!(
        codes,
        vec![Failure, Failure, Failure, Success(QoS::AtLeastOnce)]
    );
    app.wait_for_metric("vakt_subscribe_denied_total", 3).await;
    wait_for_security_event(&app, "subscribe_denied", Some(&a.id)).await;

    // Device b's position (b's holder is a protected person) and alarm reach the backend
    // only, and its answer b only: a sees nothing of either.
    let device_b = app.connect(&b).await;
    device_b
        .position(common::fix_near_home(), None)
        .await
        .unwrap();
    device_b.alarm("panic", None, None).await.unwrap();
    let fb = device_b
        .next_feedback(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fb.st, "received");
    let seen_by_a = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = eventloop.poll().await {
                return p.topic;
            }
        }
    })
    .await;
    assert!(seen_by_a.is_err(), "a read {seen_by_a:?}");
}

#[tokio::test]
async fn garbage_written_to_another_devices_topic_is_refused_and_raises_nothing_on_its_case() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let attacker = app.issued_device("Stockholm").await;
    let victim = app.issued_device("Stockholm").await;
    let device = app.connect(&attacker).await;
    let forged = format!(
        r#"{{"boot":1,"kind":"panic","seq":7,"ts":1,"mac":"{}"}}"#,
        "0".repeat(64)
    );
    for _ in 0..5 {
        device
            .publish_raw(
                &format!("vakt/v1/dev/{}/alarm", victim.id),
                forged.clone().into_bytes(),
            )
            .await
            .unwrap();
    }
    device.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(app.metric("vakt_topic_denied_total").await, 5);
    assert_eq!(app.metric("vakt_bad_signatures_total").await, 0);
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != victim.id.as_str()));
}

#[tokio::test]
async fn a_retained_uplink_is_refused() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let (client, mut eventloop) = AsyncClient::new(options(&app, &d.id, &d.password()), 10);
    client
        .publish(
            format!("vakt/v1/dev/{}/alarm", d.id),
            QoS::AtLeastOnce,
            true,
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    until(&mut eventloop, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    assert_eq!(app.metric("vakt_topic_denied_total").await, 1);
}

#[tokio::test]
async fn the_last_will_is_published_when_the_connection_dies_and_not_after_a_disconnect() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    let online = |app: &TestApp, want: &'static str| {
        let (client, url) = (
            app.officer.clone(),
            app.url(&format!("/api/devices/{}", d.id)),
        );
        async move {
            wait_for("the device's online state", Duration::from_secs(10), || {
                let req = client.get(&url).send();
                async move {
                    let v: serde_json::Value = req.await.unwrap().json().await.unwrap();
                    v["health"]["connection"] == want
                }
            })
            .await
        }
    };
    online(&app, "online").await;
    // Dropping the device cuts its connection without DISCONNECT.
    drop(device);
    online(&app, "connection_lost").await;

    // A clean DISCONNECT publishes no will. (The device restarted: a new boot.)
    let again = firmware_sim::SimDevice::connect(firmware_sim::SimOptions {
        host: app.running.mqtt_host.clone(),
        port: app.running.mqtt_port,
        device_id: d.id.clone(),
        key: d.key.parse().unwrap(),
        boot: 2,
    })
    .await
    .unwrap();
    again.heartbeat(80, false, -70).await.unwrap();
    again.flush(Duration::from_secs(5)).await.unwrap();
    online(&app, "online").await;
    again.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    online(&app, "online").await;
}

#[tokio::test]
async fn an_answer_sent_while_the_device_was_offline_reaches_it_when_it_comes_back() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let mut o = options(&app, &d.id, &d.password());
    o.set_clean_session(false);
    let topic = format!("vakt/v1/dev/{}/ack", d.id);
    {
        let (client, mut eventloop) = AsyncClient::new(o.clone(), 10);
        client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
        until(&mut eventloop, |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_)))
        })
        .await;
    }
    // The session lives on without its connection; the backend answers an alarm meanwhile.
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    device.disconnect().await.unwrap();

    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let resp = app
        .officer
        .post(app.url(&format!("/api/alerts/{}/ack", alert["id"])))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let _ = client;
    // The officer's acknowledgement was published while the device was away.
    until(&mut eventloop, |e| match e {
        Event::Incoming(Packet::Publish(p)) if p.topic == topic => {
            let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            body["st"] == "accepted"
        }
        _ => false,
    })
    .await;
}

#[tokio::test]
async fn a_second_login_with_the_same_id_ends_the_first_without_its_will() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let mut o = options(&app, &d.id, &d.password());
    o.set_last_will(LastWill::new(
        format!("vakt/v1/dev/{}/state", d.id),
        b"not even signed".to_vec(),
        QoS::AtLeastOnce,
        false,
    ));
    let (_first, mut first_loop) = AsyncClient::new(o.clone(), 10);
    until(&mut first_loop, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    })
    .await;
    let (_second, mut second_loop) = AsyncClient::new(o, 10);
    until(&mut second_loop, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    })
    .await;
    let first_ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if first_loop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(first_ended.is_ok(), "the first connection is still open");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The will would have been a malformed message: none arrived.
    assert_eq!(app.metric("vakt_malformed_total").await, 0);
}

#[tokio::test]
async fn an_alarm_the_store_refuses_is_not_acknowledged_and_is_taken_in_once_the_store_takes_it() {
    let app = TestApp::start().await;
    if !app.embedded_broker() || app.database_url.starts_with("postgres") {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    common::tamper(
        &app.database_url,
        "CREATE TRIGGER refuse_alerts BEFORE INSERT ON alerts \
         BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
    )
    .await;
    device.alarm("panic", None, None).await.unwrap();
    app.wait_for_metric("vakt_store_refused_total", 1).await;
    // No PUBACK and no `received`: the device must not believe the alarm arrived.
    assert!(device.flush(Duration::from_secs(2)).await.is_err());
    assert!(device
        .next_feedback(Duration::from_millis(500))
        .await
        .is_err());
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));

    common::tamper(&app.database_url, "DROP TRIGGER refuse_alerts").await;
    // The device sends it again after its connection was closed, and now it is stored.
    device.flush(Duration::from_secs(30)).await.unwrap();
    app.wait_for_alert(&d.id, |a| a["priority"] == 1).await;
    let f = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!(f.st, "received");
}

#[tokio::test]
async fn a_login_under_a_backend_identity_is_refused_and_recorded_even_with_a_right_device_key() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let configured = app.running.state.config.mqtt_client_id.clone();
    let password = d.password();
    let attempts = [
        // The device's own password, asking for the backend's client id, persistent session.
        ("vakt-ingest", d.id.as_str(), password.as_str(), false),
        ("vakt-1", d.id.as_str(), password.as_str(), true),
        // The configured client id, and a backend name as the username.
        (configured.as_str(), configured.as_str(), "", false),
        ("vakt-backend", "vakt-backend", password.as_str(), false),
    ];
    for (client_id, user, password, clean) in attempts {
        let mut o = MqttOptions::new(client_id, &app.running.mqtt_host, app.running.mqtt_port);
        o.set_credentials(user, password)
            .set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(5));
        match try_login(o).await {
            Ok(_) => panic!("{client_id} / {user} logged in"),
            Err(code) => assert_eq!(code, ConnectReturnCode::NotAuthorized, "{client_id}"),
        }
    }
    app.wait_for_metric("vakt_backend_identity_refused_total", 4)
        .await;
    // The attempt with the device's right password names the device whose it was.
    wait_for_security_event(&app, "backend_identity", Some(&d.id)).await;
    assert!(app.metric("vakt_security_events_total").await >= 1);

    // The device itself, as itself, still logs in and is taken in.
    let device = app.connect(&d).await;
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    wait_for_connection(&app, &d.id, "online").await;
}

#[tokio::test]
async fn a_device_cannot_overwrite_another_devices_retained_cfg_or_write_its_ack() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let attacker = app.issued_device("Stockholm").await;
    let victim = app.issued_device("Stockholm").await;
    // A key rotation waits for the victim: its retained cfg carries the wrapped new key.
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/devices/{}/rotate-key", victim.id)))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let cfg_topic = format!("vakt/v1/dev/{}/cfg", victim.id);
    let ack_topic = format!("vakt/v1/dev/{}/ack", victim.id);
    let victim_key = vakt::protocol::DeviceKey::from_hex(&victim.key).unwrap();
    let backend_cfg = |p: &rumqttc::Publish| {
        let body = vakt::protocol::Body::parse(&p.payload).unwrap();
        let mac = body.str("mac").unwrap().to_owned();
        body.str("newkey").is_some() && victim_key.verify(&p.topic, &body.canonical(), &mac)
    };
    let (victim_client, mut victim_loop) =
        AsyncClient::new(options(&app, &victim.id, &victim.password()), 10);
    victim_client
        .subscribe(format!("vakt/v1/dev/{}/+", victim.id), QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut victim_loop, |e| match e {
        Event::Incoming(Packet::Publish(p)) => p.topic == cfg_topic && backend_cfg(p),
        _ => false,
    })
    .await;

    // The attacker writes a cfg for the victim, retained and not, and an ack.
    let (client, mut eventloop) =
        AsyncClient::new(options(&app, &attacker.id, &attacker.password()), 10);
    let forged = br#"{"hb":1,"ts":1,"mac":"00"}"#.to_vec();
    for (topic, retain) in [(&cfg_topic, true), (&cfg_topic, false), (&ack_topic, false)] {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, retain, forged.clone())
            .await
            .unwrap();
        until(&mut eventloop, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        })
        .await;
    }
    app.wait_for_metric("vakt_topic_denied_total", 3).await;
    wait_for_security_event(&app, "topic_denied", Some(&attacker.id)).await;
    // Nothing of it reached the victim live ...
    let live = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = victim_loop.poll().await {
                return p;
            }
        }
    })
    .await;
    assert!(live.is_err(), "the victim got {live:?}");
    drop((victim_client, victim_loop));

    // ... nor replaced its retained cfg: subscribing again brings the backend's, new key
    // and all.
    let (victim_client, mut victim_loop) =
        AsyncClient::new(options(&app, &victim.id, &victim.password()), 10);
    victim_client
        .subscribe(cfg_topic.as_str(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let Event::Incoming(Packet::Publish(p)) = until(&mut victim_loop, |e| {
        matches!(e, Event::Incoming(Packet::Publish(_)))
    })
    .await
    else {
        unreachable!()
    };
    assert!(
        backend_cfg(&p),
        "the retained cfg is not the backend's: {:?}",
        p.payload
    );
}

#[tokio::test]
async fn a_captured_last_will_cannot_be_played_again_against_its_device() {
    let app = TestApp::start().await;
    if !app.embedded_broker() {
        return;
    }
    let attacker = app.issued_device("Stockholm").await;
    let victim = app.issued_device("Stockholm").await;
    let device = app.connect(&victim).await;
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    wait_for_connection(&app, &victim.id, "online").await;

    // The victim's own will, as captured off the air: signed with its key, its boot.
    let state_topic = format!("vakt/v1/dev/{}/state", victim.id);
    let body = vakt::protocol::Body::parse(br#"{"boot":1,"online":false,"ts":1}"#).unwrap();
    let key = vakt::protocol::DeviceKey::from_hex(&victim.key).unwrap();
    let will = body
        .with_mac(&key.sign(&state_topic, &body.canonical()))
        .into_bytes();

    // Played as the attacker's own will, retained and not; the connection then dies
    // without DISCONNECT, so the broker publishes it.
    for (n, retain) in [false, true].into_iter().enumerate() {
        let mut o = options(&app, &attacker.id, &attacker.password());
        o.set_last_will(LastWill::new(
            state_topic.as_str(),
            will.clone(),
            QoS::AtLeastOnce,
            retain,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 10);
        until(&mut eventloop, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_)))
        })
        .await;
        drop((client, eventloop));
        // The will is refused once the broker has seen the connection die; the next login
        // before that would take the connection over and end it without a will.
        app.wait_for_metric("vakt_topic_denied_total", n as u64 + 1)
            .await;
    }
    // And published outright, retained and not.
    let (client, mut eventloop) =
        AsyncClient::new(options(&app, &attacker.id, &attacker.password()), 10);
    for retain in [false, true] {
        client
            .publish(state_topic.as_str(), QoS::AtLeastOnce, retain, will.clone())
            .await
            .unwrap();
        until(&mut eventloop, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        })
        .await;
    }
    app.wait_for_metric("vakt_topic_denied_total", 4).await;
    wait_for_security_event(&app, "topic_denied", Some(&attacker.id)).await;
    // The victim still counts as online, and its own will still works.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_connection(&app, &victim.id, "online").await;
    drop(device);
    wait_for_connection(&app, &victim.id, "connection_lost").await;
}
