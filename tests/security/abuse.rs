//! Abuse that must cost the others nothing: a flood on one stolen device's own topics must
//! not delay another device's alarm, and text with a NUL (which PostgreSQL cannot store),
//! from a device or over HTTP, must be refused where it comes in instead of stopping every
//! device's health or ending in a 500.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};

use crate::baseline::panic_is_answered;
use crate::on_both;
use crate::target::{Issued, Target, ALONE};

const FLOOD: u64 = 50_000;

/// Publishes `FLOOD` QoS 0 messages as device `d` on its own topics, from a raw client;
/// `signed`: heartbeats signed with the stolen key, else alarms with a garbage `mac`.
async fn flood(target: &Target, d: &Issued, signed: bool) -> tokio::task::JoinSet<()> {
    let (client, mut eventloop) =
        AsyncClient::new(target.mqtt_options(&d.id, &d.id, &d.password()), 1000);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { while eventloop.poll().await.is_ok() {} });
    let (id, key) = (
        d.id.clone(),
        d.key.parse::<firmware_sim::DeviceKey>().unwrap(),
    );
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tasks.spawn(async move {
        for i in 0..FLOOD {
            let (topic, body) = if signed {
                let topic = firmware_sim::topic(&id, "hb");
                let members = [
                    ("batt", json!(80)),
                    ("boot", json!(9)),
                    ("chg", json!(0)),
                    ("rssi", json!(-70)),
                    ("seq", json!(i)),
                    ("ts", json!(i)),
                ];
                let body = firmware_sim::signed_body(&key, &topic, &members).unwrap();
                (topic, body)
            } else {
                let topic = firmware_sim::topic(&id, "alarm");
                let mac = "0".repeat(64);
                let body =
                    format!(r#"{{"boot":9,"kind":"panic","seq":{i},"ts":{i},"mac":"{mac}"}}"#);
                (topic, body)
            };
            if client
                .publish(topic, QoS::AtMostOnce, false, body)
                .await
                .is_err()
            {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Under way once the backend has had more than a device's burst, or holds it back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.metric("vakt_messages_throttled_total").await == 0
        && target.metric("vakt_messages_total").await < 1_000
    {
        assert!(
            Instant::now() < deadline,
            "the flood never reached the backend ({} sent)",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

async fn a_garbage_signature_flood_delays_no_other_devices_panic(target: &Target) {
    let (attacker, victim) = (
        target.issue_device("Nord").await,
        target.issue_device("Syd").await,
    );
    let started = Instant::now();
    let mut tasks = flood(target, &attacker, false).await;
    panic_is_answered(target, &victim, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    tasks.abort_all();
    let alert = target
        .wait_for_alert(&attacker.id, |a| a["kind"] == "bad_signatures")
        .await;
    let most = 2 + started.elapsed().as_secs() / 5;
    let written = alert["count"].as_u64().unwrap();
    assert!(
        written <= most,
        "the bad-signature alert was written {written} times in {:?}, a store write and a \
         console push each",
        started.elapsed()
    );
}

on_both!(
    a_garbage_signature_flood_delays_no_other_devices_panic_on_the_embedded_broker,
    a_garbage_signature_flood_delays_no_other_devices_panic_on_mosquitto_and_postgres,
    a_garbage_signature_flood_delays_no_other_devices_panic_alone
);

async fn a_garbage_signature_flood_delays_no_other_devices_panic_alone(target: &Target) {
    let _alone = ALONE.lock().await;
    a_garbage_signature_flood_delays_no_other_devices_panic(target).await;
}

async fn a_signed_flood_from_a_stolen_key_delays_no_other_devices_panic(target: &Target) {
    let _alone = ALONE.lock().await;
    let (attacker, victim) = (
        target.issue_device("Nord").await,
        target.issue_device("Syd").await,
    );
    let mut tasks = flood(target, &attacker, true).await;
    panic_is_answered(target, &victim, Duration::from_secs(1)).await;
    tasks.abort_all();
    assert!(target.metric("vakt_messages_throttled_total").await > 0);
    // Reported with the next health flush, once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = target.security_events().await;
        if events
            .iter()
            .any(|e| e["device_id"] == attacker.id.as_str() && e["kind"] == "rate_limited")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rate_limited security event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both!(
    a_signed_flood_from_a_stolen_key_delays_no_other_devices_panic_on_the_embedded_broker,
    a_signed_flood_from_a_stolen_key_delays_no_other_devices_panic_on_mosquitto_and_postgres,
    a_signed_flood_from_a_stolen_key_delays_no_other_devices_panic
);

async fn a_signed_hello_with_a_nul_freezes_no_devices_health(target: &Target) {
    let (attacker, other) = (
        target.issue_device("Nord").await,
        target.issue_device("Nord").await,
    );
    let (bad, good) = (target.device(&attacker).await, target.device(&other).await);
    bad.hello("2.4\u{0}evil", "VA-200", 60).await.unwrap();
    let since = vakt::domain::now_ms();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    good.heartbeat(77, false, -60).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = target
            .get("coord-nord", &format!("/api/devices/{}", other.id))
            .await;
        let heard = d["health"]["last_heard_at"]
            .as_str()
            .and_then(vakt::domain::parse_rfc3339);
        if heard.is_some_and(|t| t >= since) && d["health"]["battery"] == 77 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "another device's health froze after a NUL hello: {d}\n{}",
            target.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = target
        .get("coord-nord", &format!("/api/devices/{}", attacker.id))
        .await;
    assert_eq!(d["health"]["fw"], Value::Null, "a NUL reached the store");
    assert!(target
        .security_events()
        .await
        .iter()
        .any(|e| e["device_id"] == attacker.id.as_str() && e["kind"] == "malformed"));
}

on_both!(
    a_signed_hello_with_a_nul_freezes_no_devices_health_on_the_embedded_broker,
    a_signed_hello_with_a_nul_freezes_no_devices_health_on_mosquitto_and_postgres,
    a_signed_hello_with_a_nul_freezes_no_devices_health
);

async fn text_with_a_nul_is_refused_naming_the_field_not_a_500(target: &Target) {
    let d = target.issue_device("Nord").await;
    let (status, body) = target
        .call(
            Some("coord-nord"),
            Method::POST,
            "/api/persons",
            Some(json!({"name": "Anna\u{0}", "region": "Nord"})),
        )
        .await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("name"))
    );
    for (path, field) in [
        (format!("/api/persons/{}%00", d.person_id), "path"),
        (
            format!("/api/persons/{}?reason=x%00", d.person_id),
            "reason",
        ),
    ] {
        let (status, body) = target
            .call(Some("coord-nord"), Method::GET, &path, None)
            .await;
        assert_eq!(
            (status, &body["field"]),
            (StatusCode::BAD_REQUEST, &json!(field)),
            "{path}"
        );
    }
}

on_both!(
    text_with_a_nul_is_refused_naming_the_field_not_a_500_on_the_embedded_broker,
    text_with_a_nul_is_refused_naming_the_field_not_a_500_on_mosquitto_and_postgres,
    text_with_a_nul_is_refused_naming_the_field_not_a_500
);
