//! Gaps in a device's `seq` and alarms the device repeats after the anti-replay window has
//! moved on: through a real device, the real broker, the ingest, the store and the API.

mod common;

use std::time::Duration;

use common::*;
use firmware_sim::SimDevice;
use serde_json::{json, Value};

/// A heartbeat with its `(boot, seq)` forced, as if the messages between were lost.
async fn heartbeat_at(device: &SimDevice, boot: u32, seq: u32) {
    let members = [("batt", json!(80)), ("chg", json!(0)), ("rssi", json!(-70))];
    device
        .publish_signed("hb", &members, Some((boot, seq)))
        .await
        .unwrap();
}

/// An alarm of `kind` at `(boot, seq)`; the same arguments give the same bytes, as a device
/// repeating it does.
async fn alarm_at(device: &SimDevice, kind: &str, boot: u32, seq: u32) {
    let members = [("kind", json!(kind)), ("ts", json!(1_764_320_000_123i64))];
    device
        .publish_signed("alarm", &members, Some((boot, seq)))
        .await
        .unwrap();
}

/// Waits for the signed `received` of `(boot, seq)`: the ingest is done with every message
/// the device sent before it.
async fn received(device: &SimDevice, boot: u32, seq: u32) {
    let feedback = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (feedback.boot, feedback.seq, feedback.st.as_str()),
        (boot, seq, "received")
    );
}

/// The device's health once `pred` holds (it is flushed in batches).
async fn health_when(app: &TestApp, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let device = app.get(&app.officer, &format!("/api/devices/{id}")).await;
        if pred(&device["health"]) {
            return device["health"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health never matched: {device}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alerts_of(app: &TestApp, device: &str, kind: &str) -> Vec<Value> {
    app.get(&app.officer, "/api/alerts?state=open,acknowledged,resolved")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["device_id"] == device && a["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_alarm_repeated_after_its_seq_left_the_window_and_already_stored_is_answered_received_again_and_changes_nothing(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    alarm_at(&device, "panic", 1, 0).await;
    received(&device, 1, 0).await;
    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    let path = format!("/api/alerts/{}", alert["id"]);
    let before = app.get(&app.officer, &path).await;

    // The device moves on until seq 0 is below the window, then repeats the alarm.
    heartbeat_at(&device, 1, 64).await;
    alarm_at(&device, "panic", 1, 0).await;
    received(&device, 1, 0).await;

    let after = app.get(&app.officer, &path).await;
    assert_eq!(after["alert"]["count"], 1);
    assert_eq!(after["alert"], before["alert"]);
    assert_eq!(after["history"], before["history"]);
    assert_eq!(alerts_of(&app, &d.id, "panic").await.len(), 1);
    assert_eq!(
        app.metric("vakt_replays_total").await,
        0,
        "no security event"
    );
    assert_eq!(app.metric("vakt_messages_late_total").await, 0);
    assert!(app.metric("vakt_duplicates_total").await >= 1);
}

#[tokio::test]
async fn an_alarm_that_never_arrived_is_taken_in_when_the_device_repeats_it_late_and_answered() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    // The device's own counter has not moved: its next alarm is seq 0, far below 100.
    heartbeat_at(&device, 1, 100).await;
    app.wait_for_metric("vakt_messages_accepted_total", 1).await;

    let (boot, seq) = device
        .alarm("panic", Some(fix_near_home()), None)
        .await
        .unwrap();
    assert_eq!((boot, seq), (1, 0));
    received(&device, 1, 0).await;

    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    assert_eq!(alert["priority"], 1);
    assert_eq!(alert["state"], "open");
    assert!(!alert["position"].is_null());
    assert_eq!(alert["reason_details"][0]["code"], "panic_pressed");
    assert_eq!(
        alert["reason_details"][1]["code"], "arrived_late",
        "the officer reads that it may have been pressed a while ago"
    );
    assert_eq!(app.metric("vakt_messages_late_total").await, 1);
    assert_eq!(app.metric("vakt_replays_total").await, 0);
    health_when(&app, &d.id, |h| h["messages_late"] == 1).await;
}

#[tokio::test]
async fn skipped_seqs_count_as_missing_on_the_device_and_in_the_metrics_exactly() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;

    // Boot 1 skips seqs 3..=9 (7) and then restarts; boot 2 is heard at seqs 0, 100 and
    // 101, so its seqs 1..=37 have left the window unseen (37). Seqs 38..=99 are still in
    // the window: a late one may yet arrive.
    for seq in [0, 1, 2, 10] {
        heartbeat_at(&device, 1, seq).await;
    }
    heartbeat_at(&device, 2, 0).await;
    heartbeat_at(&device, 2, 100).await;
    alarm_at(&device, "test", 2, 101).await;
    received(&device, 2, 101).await;

    assert_eq!(app.metric("vakt_messages_missing_total").await, 7 + 37);
    let health = health_when(&app, &d.id, |h| h["messages_missing"] != 0).await;
    assert_eq!(health["messages_missing"], 7 + 37);
    assert_eq!(health["messages_late"], 0);
    let schema = app.get(&app.anonymous, "/api/openapi.json").await;
    assert!(
        schema["components"]["schemas"]["HealthOut"]["properties"]["messages_missing"].is_object(),
        "the field is in the API document"
    );
}

#[tokio::test]
async fn many_missing_messages_open_one_priority_4_technical_alert_per_episode() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    heartbeat_at(&device, 1, 0).await;
    heartbeat_at(&device, 1, 100).await;

    let alert = app
        .wait_for_alert(&d.id, |a| a["kind"] == "messages_missing")
        .await;
    assert_eq!(alert["priority"], 4);
    assert_eq!(alert["reason_details"][0]["code"], "messages_missing");
    assert_eq!(alert["reason_details"][0]["values"]["count"], 36);

    // More go missing within the hour: the same episode, no second alert, no update.
    heartbeat_at(&device, 1, 300).await;
    alarm_at(&device, "test", 1, 301).await;
    received(&device, 1, 301).await;
    assert_eq!(app.metric("vakt_messages_missing_total").await, 36 + 200);
    let alerts = alerts_of(&app, &d.id, "messages_missing").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["count"], 1);
}

#[tokio::test]
async fn a_late_cancel_pressed_before_the_open_alarm_does_not_mark_it_but_a_later_one_does() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    // The cancel at seq 5 is lost on the way; the holder then presses panic at seq 10.
    alarm_at(&device, "panic", 1, 10).await;
    received(&device, 1, 10).await;
    heartbeat_at(&device, 1, 80).await;

    alarm_at(&device, "cancel", 1, 5).await;
    received(&device, 1, 5).await;
    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    assert_eq!(
        alert["cancel_pressed"], false,
        "the cancel came before the panic"
    );
    assert_eq!(app.metric("vakt_messages_late_total").await, 1);

    alarm_at(&device, "cancel", 1, 81).await;
    received(&device, 1, 81).await;
    app.wait_for_alert(&d.id, |a| a["cancel_pressed"] == true)
        .await;
}

#[tokio::test]
async fn an_alarm_repeated_from_an_older_boot_is_answered_but_an_old_heartbeat_is_still_a_replay() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    alarm_at(&device, "panic", 1, 0).await;
    received(&device, 1, 0).await;
    heartbeat_at(&device, 2, 0).await;

    alarm_at(&device, "panic", 1, 0).await;
    received(&device, 1, 0).await;
    heartbeat_at(&device, 1, 1).await;

    app.wait_for_metric("vakt_replays_total", 1).await;
    let alerts = alerts_of(&app, &d.id, "panic").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["count"], 1);
    assert_eq!(app.metric("vakt_messages_late_total").await, 0);
}
