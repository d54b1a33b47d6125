//! A burst on the zero-setup defaults: devices publish QoS 1 messages as fast as the broker
//! takes them. Whatever the broker acknowledged must already be taken in, since on the
//! embedded broker a device's PUBACK is the backend's word that the message is stored.
//!
//! `VAKT_BURST_DEVICES` and `VAKT_BURST_MESSAGES` size it (defaults: 20 devices, 250 messages
//! each, every 50th a panic); docs/benchmarks.md has the figures of the full-size run.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::Value;

fn sized(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PANIC_EVERY: u32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_the_broker_acknowledged_in_a_burst_is_already_taken_in() {
    let devices_n = sized("VAKT_BURST_DEVICES", 20);
    let messages = sized("VAKT_BURST_MESSAGES", 250);
    // Devices here send far more than any device may (the per-device rate limit, which
    // tests/flood.rs tries): lifted, so the burst measures what the backend takes in.
    let app = TestApp::start_with(|c| c.device_messages_per_s = 0).await;
    let mut issued = Vec::new();
    for _ in 0..devices_n {
        issued.push(app.issued_device("Stockholm").await);
    }
    let mut devices = Vec::new();
    for d in &issued {
        devices.push(std::sync::Arc::new(app.connect(d).await));
    }
    let accepted_before = app.metric("vakt_messages_accepted_total").await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for device in &devices {
        let device = device.clone();
        tasks.spawn(async move {
            let mut panics = 0u32;
            for i in 1..=messages {
                if i % PANIC_EVERY == 0 {
                    device.alarm("panic", None, None).await.unwrap();
                    panics += 1;
                } else {
                    device.heartbeat(80, false, -70).await.unwrap();
                }
            }
            // Every publish is acknowledged by the broker before this returns.
            device.flush(Duration::from_secs(300)).await.unwrap();
            (device.device_id().to_owned(), panics)
        });
    }
    let mut panics_sent = std::collections::HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (id, panics) = done.unwrap();
        panics_sent.insert(id, panics);
    }
    let elapsed = started.elapsed();

    // No waiting from here on: what the broker acknowledged must be in already.
    let total = u64::from(devices_n) * u64::from(messages);
    let accepted = app.metric("vakt_messages_accepted_total").await - accepted_before;
    assert_eq!(
        accepted, total,
        "the broker acknowledged {total} messages, the backend took in {accepted}"
    );
    let alerts: Vec<Value> = app.open_alerts().await;
    for (id, panics) in &panics_sent {
        let stored: i64 = alerts
            .iter()
            .filter(|a| a["device_id"] == id.as_str() && a["kind"] == "panic")
            .map(|a| a["count"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(
            stored,
            i64::from(*panics),
            "device {id}: {panics} panics acknowledged, {stored} stored"
        );
    }
    // And each panic is answered `received` by the backend.
    for device in &devices {
        let want = panics_sent[device.device_id()];
        let mut received = std::collections::HashSet::new();
        while received.len() < want as usize {
            let f = device.next_feedback(Duration::from_secs(30)).await.unwrap();
            if f.st == "received" {
                received.insert((f.boot, f.seq));
            }
        }
    }
    println!(
        "burst: {devices_n} devices x {messages} messages = {total} in {:.2} s ({:.0} msg/s), {} panics, all taken in",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        panics_sent.values().sum::<u32>(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_signed_before_the_clock_starts_are_all_taken_in() {
    let app = TestApp::start_with(|c| c.device_messages_per_s = 0).await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        let d = app.issued_device("Stockholm").await;
        devices.push(firmware_sim::FleetDevice::from((
            d.id,
            d.key.parse::<firmware_sim::DeviceKey>().unwrap(),
        )));
    }
    let accepted_before = app.metric("vakt_messages_accepted_total").await;
    let refused = || async {
        let mut n = 0;
        for name in [
            "vakt_bad_signatures_total",
            "vakt_replays_total",
            "vakt_malformed_total",
        ] {
            n += app.metric(name).await;
        }
        n
    };
    let refused_before = refused().await;

    let report = firmware_sim::saturate(firmware_sim::SaturateConfig {
        host: app.running.mqtt_host.clone(),
        port: app.running.mqtt_port,
        devices,
        messages: 200,
        window: 16,
        duration: None,
        rate: None,
        boot: 1,
        progress: None,
    })
    .await
    .unwrap();

    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!((report.connected, report.acked), (3, 600));
    app.wait_for_metric("vakt_messages_accepted_total", accepted_before + 600)
        .await;
    assert_eq!(
        app.metric("vakt_messages_accepted_total").await,
        accepted_before + 600,
        "every heartbeat taken in once"
    );
    assert_eq!(refused().await, refused_before, "none refused");
}
