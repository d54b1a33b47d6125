//! Supervision from outside: real devices over MQTT, the wall clock, and the API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A device that beats every 2 s, supervised with a 1 s grace: silent 5 s after it was last
/// heard.
async fn app_with_short_deadlines() -> TestApp {
    TestApp::start_with(|c| {
        c.silence_grace_s = Some(1);
        c.supervision.overdue_p1_s = 3;
        c.supervision.overdue_p2_s = 3;
        c.supervision.overdue_p3_s = 3;
    })
    .await
}

#[tokio::test]
async fn a_device_with_a_2_s_interval_and_1_s_grace_is_declared_silent_between_5_and_6_5_s_after_it_was_last_heard(
) {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 2).await.unwrap();
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    let last_heard = Instant::now();
    drop(device);

    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "silent").await;
    let after = last_heard.elapsed();
    assert!(
        after >= Duration::from_millis(4900),
        "declared after {after:?}"
    );
    assert!(
        after <= Duration::from_millis(6500),
        "declared after {after:?}"
    );
    assert_eq!(alert["priority"], 2, "high-risk case: priority 2");
    assert!(alert["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("No message from the device since"));
    assert_eq!(alert["reason_details"][0]["code"], "silent");
    assert_eq!(alert["reason_details"][0]["values"]["hb_s"], 2);
    assert_eq!(alert["reason_details"][1]["code"], "priority_by_risk");
    assert!(alert["feedback"].is_null(), "no device message opened it");
    let device = app
        .get(&app.officer, &format!("/api/devices/{}", d.id))
        .await;
    assert_eq!(device["health"]["connection"], "silent");
}

#[tokio::test]
async fn a_device_that_keeps_beating_is_never_declared_silent() {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 2).await.unwrap();
    for _ in 0..6 {
        device.heartbeat(80, false, -70).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));
    let device = app
        .get(&app.officer, &format!("/api/devices/{}", d.id))
        .await;
    assert_eq!(device["health"]["connection"], "online");
}

#[tokio::test]
async fn a_silent_device_heard_again_for_two_intervals_is_marked_back_online_once() {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 2).await.unwrap();
    app.wait_for_alert(&d.id, |a| a["kind"] == "silent").await;

    // One word is not enough: it takes two whole intervals of being heard.
    device.heartbeat(80, false, -70).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    device.heartbeat(80, false, -70).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "silent").await;
    assert_eq!(alert["back_online"], false);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    device.heartbeat(80, false, -70).await.unwrap();

    let alert = app
        .wait_for_alert(&d.id, |a| a["kind"] == "silent" && a["back_online"] == true)
        .await;
    assert_eq!(
        alert["state"], "open",
        "back online does not resolve: an officer does"
    );
    let detail = app
        .get(&app.officer, &format!("/api/alerts/{}", alert["id"]))
        .await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "back_online").count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_unacknowledged_priority_1_alert_is_flagged_overdue_and_pushed_again() {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let started = Instant::now();
    device.alarm("panic", None, None).await.unwrap();

    let alert = app.wait_for_alert(&d.id, |a| a["overdue"] == true).await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(alert["priority"], 1);
    let detail = app
        .get(&app.officer, &format!("/api/alerts/{}", alert["id"]))
        .await;
    let history = detail["history"].as_array().unwrap();
    let overdue = history
        .iter()
        .find(|h| h["action"] == "overdue")
        .expect("an overdue entry");
    // In English words, and as a code with its facts for the console to word.
    assert!(overdue["note"]
        .as_str()
        .unwrap()
        .starts_with("not acknowledged within"));
    assert_eq!(overdue["note_code"], "not_acknowledged");
    assert!(overdue["note_values"]["limit_s"].as_u64().unwrap() > 0);
    let opened = &history[0];
    assert_eq!(opened["action"], "opened");
    assert_eq!(opened["note_code"], "message");
    assert_eq!(opened["note_values"]["kind"], "panic");
    assert!(opened["note_values"]["seq"].is_u64());
}

#[tokio::test]
async fn an_overdue_priority_3_alert_is_raised_to_priority_2_and_an_acknowledged_one_is_not_overdue(
) {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Syd").await;
    // A low-risk case: the silence alert opens at priority 3.
    let _: Value = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"risk": "low"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 2).await.unwrap();
    let silent = app.wait_for_alert(&d.id, |a| a["kind"] == "silent").await;
    assert_eq!(silent["priority"], 3);
    let raised = app
        .wait_for_alert(&d.id, |a| a["kind"] == "silent" && a["overdue"] == true)
        .await;
    assert_eq!(raised["priority"], 2);

    device.alarm("tamper", None, None).await.unwrap();
    let tamper = app.wait_for_alert(&d.id, |a| a["kind"] == "tamper").await;
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{}/ack", tamper["id"]),
            json!({}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tamper = app.wait_for_alert(&d.id, |a| a["kind"] == "tamper").await;
    assert_eq!(tamper["overdue"], false);
}

#[tokio::test]
async fn a_coordinators_interval_wins_and_reaches_the_device_as_a_signed_retained_config() {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 60).await.unwrap();

    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/devices/{}", d.id)))
        .json(&json!({"hb_interval_s": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cfg = device
        .next_cfg(Duration::from_secs(5))
        .await
        .expect("a verified cfg");
    assert_eq!(cfg["hb"], 2);

    // Held to 2 s now, not to the 60 s it announced: silent about 5 s later.
    let started = Instant::now();
    app.wait_for_alert(&d.id, |a| a["kind"] == "silent").await;
    assert!(started.elapsed() < Duration::from_secs(8));

    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/devices/{}", d.id)))
        .json(&json!({"hb_interval_s": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn a_device_of_a_closed_case_is_no_longer_watched_for_silence() {
    let app = app_with_short_deadlines().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 2).await.unwrap();
    device.heartbeat(80, false, -70).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/close", d.case_id),
            json!({}),
        )
        .await;
    drop(device);
    // Silent 5 s after it was last heard, were it still watched.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let alerts = app.open_alerts().await;
    assert!(
        !alerts
            .iter()
            .any(|a| a["kind"] == "silent" && a["device_id"] == d.id.as_str()),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn an_order_with_zones_ending_within_7_days_raises_one_priority_4_reminder() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let soon = chrono::Utc::now() + chrono::Duration::days(3);
    let _: Value = app
        .post(&app.coordinator, &format!("/api/cases/{}/orders", d.case_id), json!({
            "kind": "contact_ban", "restrained": {"name": "Johan Ek"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": soon.to_rfc3339(),
            "zones": [{"name": "School", "geometry": {"type": "Point", "coordinates": [18.0, 59.3]}, "radius_m": 200}]
        }))
        .await;
    // The leader looks at orders when it takes the lead, when orders change, and every minute.
    let deadline = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let alerts = app.open_alerts().await;
        if let Some(a) = alerts.iter().find(|a| a["kind"] == "order_ending") {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "no order-ending reminder");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["priority"], 4);
    assert!(alert["reasons"][0].as_str().unwrap().contains("Johan Ek"));
}

#[tokio::test]
async fn two_instances_flushing_the_health_of_the_same_devices_at_once_do_not_deadlock() {
    use vakt::store::DeviceHealth;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    if !url.starts_with("postgres") {
        return; // One SQLite file has one writer at a time: nothing to deadlock.
    }
    let first = open_store(dir.path(), &url).await;
    let second = open_store(dir.path(), &url).await;
    let devices = seed_issued_devices(&first, dir.path(), vakt::domain::Risk::High, 200).await;
    // Each instance gathers its batch in its own (hash map) order.
    let batch = |at: i64| -> Vec<(String, DeviceHealth)> {
        devices
            .iter()
            .map(|(id, _)| {
                let health = DeviceHealth {
                    last_heard_at: Some(at),
                    ..DeviceHealth::default()
                };
                (id.clone(), health)
            })
            .collect()
    };
    for round in 0..20 {
        let forward = batch(round);
        let mut backward = batch(round);
        backward.reverse();
        let (a, b) = tokio::join!(first.flush_health(&forward), second.flush_health(&backward));
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn a_health_flush_writes_what_each_device_reported_keeps_the_rest_and_adds_the_counts() {
    use vakt::domain::Position;
    use vakt::store::DeviceHealth;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    // More devices than one statement takes, so the flush spans statements.
    let devices = seed_issued_devices(&store, dir.path(), vakt::domain::Risk::High, 1_203).await;
    let position = Position {
        lat: 59.329_323_5,
        lon: 18.068_580_8,
        acc_m: None,
    };
    let full = |i: usize| DeviceHealth {
        last_heard_at: Some(1_000 + i as i64),
        battery: Some(87),
        charging: Some(true),
        rssi: Some(-71),
        fw: Some("2.4.1".into()),
        reported_model: Some("VA-2".into()),
        hello_hb_s: Some(60),
        online: Some(true),
        last_boot: Some(3),
        last_seq: Some(i as u32),
        last_test_at: Some(500),
        last_position: Some((position, 900)),
        messages_missing: 2,
        messages_late: 1,
    };
    let first: Vec<(String, DeviceHealth)> = devices
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), full(i)))
        .collect();
    store.flush_health(&first).await.unwrap();
    // A later flush with a heartbeat only: the rest stays, the counts add up.
    let later: Vec<(String, DeviceHealth)> = devices
        .iter()
        .map(|(id, _)| {
            let health = DeviceHealth {
                last_heard_at: Some(5_000),
                charging: Some(false),
                messages_missing: 3,
                ..DeviceHealth::default()
            };
            (id.clone(), health)
        })
        .collect();
    store.flush_health(&later).await.unwrap();

    for (i, (id, _)) in devices.iter().enumerate().step_by(97) {
        let h = store.device(id).await.unwrap().health;
        assert_eq!(h.last_heard_at, Some(5_000), "{id}");
        assert_eq!(h.charging, Some(false), "{id}");
        assert_eq!(h.online, Some(true), "{id}");
        assert_eq!((h.battery, h.rssi), (Some(87), Some(-71)), "{id}");
        assert_eq!(h.fw.as_deref(), Some("2.4.1"), "{id}");
        assert_eq!(h.reported_model.as_deref(), Some("VA-2"), "{id}");
        assert_eq!(h.hello_hb_s, Some(60), "{id}");
        assert_eq!((h.last_boot, h.last_seq), (Some(3), Some(i as u32)), "{id}");
        assert_eq!(h.last_test_at, Some(500), "{id}");
        assert_eq!(h.last_position, Some((position, 900)), "{id}");
        assert_eq!((h.messages_missing, h.messages_late), (5, 1), "{id}");
    }
}
