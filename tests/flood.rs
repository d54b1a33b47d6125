//! Abuse never delays alarms. An attacker holding one device's key floods that device's
//! topics (QoS 0, as fast as the broker takes them) while another device raises a panic:
//! the panic is answered `received` within a second, and the bad-signature alert of the
//! flooded device is written only every few seconds, not once per message.
//!
//! Runs on the embedded broker by default, on an external broker (Mosquitto) with
//! `VAKT_TEST_MQTT_URL`. `VAKT_FLOOD_MESSAGES` sizes the flood (default 50,000).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{metric_at, IssuedDevice, TestApp};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

fn flood_size() -> u64 {
    std::env::var("VAKT_FLOOD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

/// What the attacker sends, message `i`.
#[derive(Clone, Copy)]
enum Flood {
    /// `alarm` bodies with a signature that does not verify.
    GarbageMacAlarms,
    /// Heartbeats correctly signed with the stolen key.
    SignedHeartbeats,
}

/// Floods as the device `d` (its own credentials, its own topics) from a raw MQTT client;
/// returns the count of messages handed to the broker so far and the tasks to stop.
async fn start_flood(
    app: &TestApp,
    d: &IssuedDevice,
    kind: Flood,
) -> (Arc<AtomicU64>, tokio::task::JoinSet<()>) {
    let mut options = MqttOptions::new(&d.id, &app.running.mqtt_host, app.running.mqtt_port);
    options
        .set_credentials(&d.id, d.password())
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { while eventloop.poll().await.is_ok() {} });
    let (id, key) = (
        d.id.clone(),
        d.key.parse::<firmware_sim::DeviceKey>().unwrap(),
    );
    let counter = sent.clone();
    let total = flood_size();
    tasks.spawn(async move {
        let boot = 7;
        for i in 0..total {
            let (topic, body) = match kind {
                Flood::GarbageMacAlarms => {
                    let topic = firmware_sim::topic(&id, "alarm");
                    let body = format!(
                        r#"{{"boot":{boot},"kind":"panic","seq":{i},"ts":{i},"mac":"{}"}}"#,
                        "0".repeat(64)
                    );
                    (topic, body)
                }
                Flood::SignedHeartbeats => {
                    let topic = firmware_sim::topic(&id, "hb");
                    let members = [
                        ("batt", json!(80)),
                        ("boot", json!(boot)),
                        ("chg", json!(0)),
                        ("rssi", json!(-70)),
                        ("seq", json!(i)),
                        ("ts", json!(i)),
                    ];
                    let body = firmware_sim::signed_body(&key, &topic, &members).unwrap();
                    (topic, body)
                }
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
    (sent, tasks)
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    metric_at(app.running.http_addr, name).await.unwrap_or(0)
}

/// Floods one device, raises a panic from another, and returns how long the panic waited
/// for its signed `received`.
async fn panic_during_a_flood(kind: Flood) -> (TestApp, IssuedDevice, Duration, Duration) {
    let app = TestApp::start().await;
    let attacker = app.issued_device("Stockholm").await;
    let victim = app.issued_device("Stockholm").await;
    let victim_device = app.connect(&victim).await;
    let messages_before = metric(&app, "vakt_messages_total").await;

    let started = Instant::now();
    let (sent, mut flood) = start_flood(&app, &attacker, kind).await;
    // The flood is on: the backend has had the device's whole burst and holds it to its
    // rate (or, with no rate to hold it to, has had a good deal of it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = metric(&app, "vakt_messages_total").await - messages_before;
        let throttled = metric(&app, "vakt_messages_throttled_total").await;
        if seen >= 1_000 || (seen >= 200 && throttled > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let raised = Instant::now();
    let (boot, seq) = victim_device.alarm("panic", None, None).await.unwrap();
    let answered = loop {
        let f = victim_device
            .next_feedback(Duration::from_secs(60))
            .await
            .expect("the panic is answered");
        if f.st == "received" && (f.boot, f.seq) == (boot, seq) {
            break raised.elapsed();
        }
    };
    // Some more flood, then stop it: the alert's updates are counted over all of it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    flood.abort_all();
    let flooded_for = started.elapsed();
    println!(
        "flood: {} messages handed to the broker in {:.1} s; the backend saw {}, throttled {}, \
         bad signatures {}; another device's panic answered `received` after {} ms",
        sent.load(Ordering::Relaxed),
        flooded_for.as_secs_f64(),
        metric(&app, "vakt_messages_total").await - messages_before,
        metric(&app, "vakt_messages_throttled_total").await,
        metric(&app, "vakt_bad_signatures_total").await,
        answered.as_millis(),
    );
    (app, attacker, answered, flooded_for)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_signature_flood_on_one_devices_alarm_topic_does_not_delay_anothers_panic() {
    let (app, attacker, answered, flooded_for) =
        panic_during_a_flood(Flood::GarbageMacAlarms).await;
    assert!(
        answered < Duration::from_secs(1),
        "the panic waited {answered:?} behind the flood"
    );
    assert!(metric(&app, "vakt_messages_throttled_total").await > 0);

    // The flooded device's tamper alert is there, updated every few seconds at most.
    let alert = app
        .wait_for_alert(&attacker.id, |a| a["kind"] == "bad_signatures")
        .await;
    let updates = alert["count"].as_u64().unwrap();
    let most = 2 + flooded_for.as_secs() / 5;
    assert!(
        updates <= most,
        "the bad-signature alert was written {updates} times in {flooded_for:?}"
    );
    let events = app.get(&app.admin, "/api/security-events").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["device_id"] == attacker.id.as_str() && e["kind"] == "rate_limited"),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validly_signed_heartbeats_from_a_stolen_key_do_not_delay_anothers_panic() {
    let (app, _attacker, answered, _) = panic_during_a_flood(Flood::SignedHeartbeats).await;
    assert!(
        answered < Duration::from_secs(1),
        "the panic waited {answered:?} behind the flood"
    );
    assert!(metric(&app, "vakt_messages_throttled_total").await > 0);
}
