//! The alarm path end to end: a real MQTT device, the real broker, ingest, store, API and
//! live stream.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn a_panic_from_an_issued_device_opens_a_correlated_priority_1_alert_and_the_device_hears_received(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;

    let started = Instant::now();
    let (boot, seq) = device
        .alarm("panic", Some(fix_near_home()), Some(80))
        .await
        .unwrap();
    let feedback = device
        .next_feedback(Duration::from_secs(1))
        .await
        .expect("a signed `received` within a second");

    assert_eq!(
        (feedback.boot, feedback.seq, feedback.st.as_str()),
        (boot, seq, "received")
    );
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(alert["priority"], 1);
    assert_eq!(alert["kind"], "panic");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["case_id"], d.case_id.as_str());
    assert_eq!(alert["risk"], "high");
    let reasons: Vec<&str> = alert["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons[0], "Panic button pressed");
    assert!(
        reasons.iter().any(|r| r.contains("Mikael Berg")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"Position is inside exclusion zone 'Home'"),
        "{reasons:?}"
    );
    assert!((alert["position"]["lat"].as_f64().unwrap() - (HOME.0 + 0.0004)).abs() < 1e-6);
    // The holder's identity is protected: how far the alarm is from the address is told
    // only to an officer who states why.
    assert_eq!(alert["reasons_masked"], true);
    assert!(
        !reasons.iter().any(|r| r.contains("registered address")),
        "{reasons:?}"
    );
    let alert = app
        .get(
            &app.officer,
            &format!("/api/alerts/{}?reason=sending%20help", alert["id"]),
        )
        .await["alert"]
        .clone();
    let reasons: Vec<&str> = alert["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.ends_with("from the registered address")),
        "{reasons:?}"
    );

    // The same reasons with codes and facts, for a console that words them in its language.
    let details = alert["reason_details"].as_array().unwrap();
    assert_eq!(details.len(), reasons.len());
    assert_eq!(details[0]["code"], "panic_pressed");
    assert_eq!(details[0]["text"], "Panic button pressed");
    let order = details
        .iter()
        .find(|r| r["code"] == "order_in_force")
        .expect("the order in force, coded");
    assert_eq!(order["values"]["restrained"], "Mikael Berg");
    let address = details
        .iter()
        .find(|r| r["code"] == "distance_to_address")
        .expect("the distance to the address, coded");
    assert!(address["values"]["distance_m"].as_i64().unwrap() > 0);
    assert_eq!(alert["feedback"], "received", "what the device was told");
}

#[tokio::test]
async fn the_alert_detail_names_the_case_the_orders_and_the_restrained_person_and_masks_a_protected_identity(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("fall", None, None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;

    let detail = app
        .get(&app.officer, &format!("/api/alerts/{}", alert["id"]))
        .await;
    assert_eq!(detail["orders"][0]["restrained"]["name"], "Mikael Berg");
    assert_eq!(detail["orders"][0]["zones"][0]["name"], "Home");
    assert_eq!(detail["orders"][0]["zones"][0]["shape"], "circle");
    // The plan and the zone drawn around the home point to the protected person.
    assert_eq!(detail["case"]["masked"], true);
    assert!(detail["case"]["response_plan"].is_null());
    assert!(detail["orders"][0]["zones"][0]["geometry"].is_null());
    assert_eq!(detail["orders"][0]["zones_masked"], true);
    assert_eq!(detail["person"]["masked"], true);
    assert_eq!(detail["person"]["name"], "***");
    assert!(detail["person"]["address"].is_null());
    assert_eq!(detail["history"][0]["action"], "opened");

    let revealed = app
        .get(
            &app.officer,
            &format!("/api/alerts/{}?reason=call-back%20to%20holder", alert["id"]),
        )
        .await;
    assert_eq!(revealed["person"]["name"], "Anna Lindqvist");
    assert_eq!(revealed["case"]["response_plan"], "Send a patrol at once.");
    assert_eq!(revealed["orders"][0]["zones"][0]["radius_m"], 300.0);
    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "person_revealed"
                && e["actor"] == "officer"
                && e["detail"] == "call-back to holder"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_redelivered_alarm_changes_nothing_and_is_answered_received_again() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();

    device
        .publish_signed("alarm", &[("kind", json!("panic"))], Some((boot, seq)))
        .await
        .unwrap();
    let again = device.next_feedback(Duration::from_secs(5)).await.unwrap();

    assert_eq!(
        (again.boot, again.seq, again.st.as_str()),
        (boot, seq, "received")
    );
    let alerts = app.open_alerts().await;
    let mine: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["device_id"] == d.id.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["count"], 1);
    assert!(app.metric("vakt_duplicates_total").await >= 1);
}

#[tokio::test]
async fn repeated_panics_update_one_alert_instead_of_opening_another() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();
    device
        .alarm("fall", Some(fix_near_home()), None)
        .await
        .unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();

    let alert = app.wait_for_alert(&d.id, |a| a["count"] == 2).await;
    assert_eq!(
        app.open_alerts()
            .await
            .iter()
            .filter(|a| a["device_id"] == d.id.as_str())
            .count(),
        1
    );
    assert!(!alert["position"].is_null(), "the latest position is kept");
    assert_eq!(
        alert["kind"], "panic",
        "the incident keeps the kind it opened with"
    );
    assert_eq!(alert["reasons"][0], "Panic button pressed");
    assert_eq!(alert["reasons"][1], "Fall detected");
    let reasons = alert["reasons"].to_string();
    assert_eq!(
        reasons.matches("Case ").count(),
        1,
        "context appears once: {reasons}"
    );
    assert!(
        reasons.contains("inside exclusion zone 'Home'"),
        "context follows the latest position"
    );
}

#[tokio::test]
async fn forged_signatures_replays_and_garbage_change_nothing_and_the_ingest_keeps_going() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let topic = format!("vakt/v1/dev/{}/alarm", d.id);
    let forged = format!(
        r#"{{"boot":1,"kind":"panic","seq":900,"ts":1,"mac":"{}"}}"#,
        "0".repeat(64)
    );
    device
        .publish_raw(&topic, forged.into_bytes())
        .await
        .unwrap();
    device
        .publish_raw(&topic, b"not json at all".to_vec())
        .await
        .unwrap();
    device.publish_raw(&topic, vec![b'x'; 3000]).await.unwrap();
    device
        .publish_raw(
            &topic,
            br#"{"boot":1,"kind":"panic","seq":1.5,"ts":1,"mac":"00"}"#.to_vec(),
        )
        .await
        .unwrap();
    device
        .publish_raw("vakt/v1/dev/x/alarm", b"{}".to_vec())
        .await
        .unwrap();
    app.wait_for_metric("vakt_bad_signatures_total", 1).await;
    if app.embedded_broker() {
        // The embedded broker refuses a write outside the device's own topics before it is
        // read at all.
        app.wait_for_metric("vakt_topic_denied_total", 1).await;
        app.wait_for_metric("vakt_malformed_total", 3).await;
    } else {
        app.wait_for_metric("vakt_malformed_total", 4).await;
    }
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));

    // Once boot 1 has been heard, a heartbeat of boot 0 is a replay, even correctly signed.
    // (An alarm is not: the device may be repeating one it never heard `received` for;
    // tests/seq_gaps.rs.)
    device.heartbeat(90, false, -70).await.unwrap();
    app.wait_for_metric("vakt_messages_accepted_total", 1).await;
    device
        .publish_signed(
            "hb",
            &[("batt", json!(90)), ("chg", json!(0)), ("rssi", json!(-70))],
            Some((0, 6)),
        )
        .await
        .unwrap();
    app.wait_for_metric("vakt_replays_total", 1).await;
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));

    // And a real panic still gets through.
    device.alarm("panic", None, None).await.unwrap();
    assert_eq!(
        device
            .next_feedback(Duration::from_secs(5))
            .await
            .unwrap()
            .st,
        "received"
    );
    app.wait_for_alert(&d.id, |a| a["priority"] == 1).await;
    let ready = app.anonymous.get(app.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success());
}

#[tokio::test]
async fn three_bad_signatures_from_an_issued_device_raise_a_priority_2_alert() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let topic = format!("vakt/v1/dev/{}/hb", d.id);
    for seq in 0..3 {
        let forged = format!(
            r#"{{"batt":50,"boot":1,"chg":0,"rssi":-70,"seq":{seq},"ts":1,"mac":"{}"}}"#,
            "a".repeat(64)
        );
        device
            .publish_raw(&topic, forged.into_bytes())
            .await
            .unwrap();
    }
    let alert = app
        .wait_for_alert(&d.id, |a| a["kind"] == "bad_signatures")
        .await;
    assert_eq!(alert["priority"], 2);
}

#[tokio::test]
async fn acknowledge_and_resolve_reach_the_device_and_the_queue() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let id = alert["id"].as_i64().unwrap();

    let acked: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{id}/ack"),
            json!({"note": "calling her"}),
        )
        .await;
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "officer");
    let f = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "accepted"));
    assert_eq!(acked["feedback"], "accepted");

    let resolved: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{id}/resolve"),
            json!({"outcome": "police_dispatched", "note": "patrol on site"}),
        )
        .await;
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["outcome"], "police_dispatched");
    let f = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "resolved"));
    assert_eq!(resolved["feedback"], "resolved");
    assert!(app.open_alerts().await.iter().all(|a| a["id"] != id));

    // A new panic after resolving is a new incident.
    device.alarm("panic", None, None).await.unwrap();
    let again = app.wait_for_alert(&d.id, |a| a["state"] == "open").await;
    assert_ne!(again["id"], id);
}

#[tokio::test]
async fn resolving_without_an_outcome_is_refused_naming_the_field() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;

    let resp = app
        .officer
        .post(app.url(&format!("/api/alerts/{}/resolve", alert["id"])))
        .json(&json!({"note": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "outcome");

    let resp = app
        .officer
        .post(app.url(&format!("/api/alerts/{}/resolve", alert["id"])))
        .json(&json!({"outcome": "fixed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "outcome");
    assert_eq!(app.wait_for_alert(&d.id, |_| true).await["state"], "open");
}

#[tokio::test]
async fn cancel_marks_the_open_alert_for_a_call_back_and_a_test_opens_nothing() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("test", None, None).await.unwrap();
    assert_eq!(
        device
            .next_feedback(Duration::from_secs(5))
            .await
            .unwrap()
            .st,
        "received"
    );
    device.alarm("panic", None, None).await.unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();
    device.alarm("cancel", None, None).await.unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();

    let alert = app
        .wait_for_alert(&d.id, |a| a["cancel_pressed"] == true)
        .await;
    assert_eq!(alert["state"], "open", "cancel never closes an alert");
    assert_eq!(alert["priority"], 1, "cancel never lowers an alert");
    assert_eq!(
        app.open_alerts()
            .await
            .iter()
            .filter(|a| a["device_id"] == d.id.as_str())
            .count(),
        1
    );
    let health = app
        .get(&app.officer, &format!("/api/devices/{}", d.id))
        .await;
    assert!(
        health["health"]["last_test_at"].is_string() || {
            // Health is flushed in batches; wait for the next flush.
            tokio::time::sleep(Duration::from_secs(3)).await;
            app.get(&app.officer, &format!("/api/devices/{}", d.id))
                .await["health"]["last_test_at"]
                .is_string()
        }
    );
}

#[tokio::test]
async fn tamper_on_a_high_risk_case_is_priority_1_and_a_low_battery_heartbeat_priority_4_once() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("tamper", None, None).await.unwrap();
    let tamper = app.wait_for_alert(&d.id, |a| a["kind"] == "tamper").await;
    assert_eq!(tamper["priority"], 1);

    device.heartbeat(12, false, -80).await.unwrap();
    device.heartbeat(11, false, -80).await.unwrap();
    let low = app
        .wait_for_alert(&d.id, |a| a["kind"] == "low_battery")
        .await;
    assert_eq!(low["priority"], 4);
    device.alarm("panic", None, None).await.unwrap();
    app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    let low_again = app
        .wait_for_alert(&d.id, |a| a["kind"] == "low_battery")
        .await;
    assert_eq!(low_again["count"], 1, "one low-battery alert per episode");
}

#[tokio::test]
async fn the_live_stream_pushes_new_alerts_and_catches_up_from_last_event_id() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = resp.bytes_stream();

    let started = Instant::now();
    device.alarm("panic", None, None).await.unwrap();
    let (id, data) = next_alert_event(&mut stream).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "pushed in {:?}",
        started.elapsed()
    );
    assert_eq!(data["device_id"], d.id.as_str());
    assert_eq!(data["priority"], 1);
    drop(stream);

    // While nobody listens, an officer acknowledges it; a reconnect with Last-Event-ID gets it.
    let alert_id = data["id"].as_i64().unwrap();
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{alert_id}/ack"),
            json!({}),
        )
        .await;
    let resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .header("Last-Event-ID", id.to_string())
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let (later, data) = next_alert_event(&mut stream).await;
    assert!(later > id);
    assert_eq!(data["state"], "acknowledged");
}

#[tokio::test]
async fn a_new_stream_catches_up_from_the_last_event_id_in_its_query() {
    // A browser opening a fresh stream (after logging in again) cannot set the header.
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    device.alarm("panic", None, None).await.unwrap();
    let (id, data) = next_alert_event(&mut stream).await;
    drop(stream);

    let alert_id = data["id"].as_i64().unwrap();
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{alert_id}/ack"),
            json!({}),
        )
        .await;
    let resp = app
        .officer
        .get(app.url(&format!("/api/alerts/stream?last_event_id={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let (later, data) = next_alert_event(&mut stream).await;
    assert!(later > id);
    assert_eq!(data["state"], "acknowledged", "the change made while away");
}

#[tokio::test]
async fn every_open_console_gets_an_alarm_as_the_same_event_a_catching_up_console_gets() {
    // A live change is rendered once and shared by the streams; the catch-up renders its
    // own. Both must be the same event.
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let resp = app
            .officer
            .get(app.url("/api/alerts/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp.bytes_stream());
    }
    device.alarm("panic", None, None).await.unwrap();
    let mut seen = Vec::new();
    for stream in &mut streams {
        seen.push(next_alert_event(stream).await);
    }
    let (id, data) = &seen[0];
    assert_eq!(data["device_id"], d.id.as_str());
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "every console gets the same event");
    }

    let resp = app
        .officer
        .get(app.url(&format!("/api/alerts/stream?last_event_id={}", id - 1)))
        .send()
        .await
        .unwrap();
    let mut catching_up = resp.bytes_stream();
    assert_eq!(
        next_alert_event(&mut catching_up).await,
        (*id, data.clone()),
        "the catch-up renders the change as the live streams had it"
    );
}

#[tokio::test]
async fn an_alarms_way_from_the_ingest_to_the_consoles_is_timed_on_metrics_and_a_heartbeats_alert_is_not(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    assert_eq!(app.metric("vakt_alarm_to_console_seconds_count").await, 0);

    device.alarm("panic", None, None).await.unwrap();
    next_alert_event(&mut stream).await;
    app.wait_for_metric("vakt_alarm_to_console_seconds_count", 1)
        .await;
    let bucket = "vakt_alarm_to_console_seconds_bucket{le=\"+Inf\"}";
    assert_eq!(app.metric(bucket).await, 1);

    // A low battery on a heartbeat opens an alert too, but no alarm was sent.
    let pushed = app.metric("vakt_live_stream_seconds_count").await;
    device.heartbeat(12, false, -80).await.unwrap();
    device.heartbeat(11, false, -80).await.unwrap();
    while next_alert_event(&mut stream).await.1["kind"] != "low_battery" {}
    app.wait_for_metric("vakt_live_stream_seconds_count", pushed + 1)
        .await;
    assert_eq!(app.metric("vakt_alarm_to_console_seconds_count").await, 1);
}

async fn next_alert_event(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
) -> (i64, Value) {
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            if field("event:").as_deref() == Some("alert") {
                return (
                    field("id:").unwrap().parse().unwrap(),
                    serde_json::from_str(&field("data:").unwrap()).unwrap(),
                );
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an alert event in time")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_tag_inside_an_exclusion_zone_of_its_order_raises_priority_1() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let tag: Value = app
        .post(
            &app.coordinator,
            "/api/devices",
            json!({"id": unique("tag"), "kind": "tag"}),
        )
        .await;
    let tag_id = tag["id"].as_str().unwrap();
    let _: Value = app
        .post(&app.coordinator, &format!("/api/cases/{}/orders", d.case_id), json!({
            "kind": "special_extended", "restrained": {"name": "Mikael Berg"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [{"name": "Street", "geometry": {"type": "Polygon", "coordinates": [[
                [HOME.1 - 0.002, HOME.0 - 0.001], [HOME.1 + 0.002, HOME.0 - 0.001],
                [HOME.1 + 0.002, HOME.0 + 0.001], [HOME.1 - 0.002, HOME.0 + 0.001], [HOME.1 - 0.002, HOME.0 - 0.001]]]}}],
            "tag_device_id": tag_id
        }))
        .await;
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{tag_id}/issue"),
            json!({"case_id": d.case_id, "holder_person_id": d.person_id}),
        )
        .await;
    let tag_device = app
        .connect(&IssuedDevice {
            id: tag_id.into(),
            key: tag["key"].as_str().unwrap().into(),
            case_id: d.case_id.clone(),
            person_id: d.person_id.clone(),
        })
        .await;

    tag_device
        .position(
            firmware_sim::Fix::from_degrees(HOME.0 + 0.0005, HOME.1, 5).unwrap(),
            None,
        )
        .await
        .unwrap();

    let alert = app
        .wait_for_alert(tag_id, |a| a["kind"] == "tag_in_zone")
        .await;
    assert_eq!(alert["priority"], 1);
    assert!(alert["reasons"][0]
        .as_str()
        .unwrap()
        .contains("inside exclusion zone 'Street'"));
}

#[tokio::test]
async fn an_unknown_device_is_counted_and_recorded_as_a_security_event() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let body = r#"{"boot":1,"kind":"panic","seq":1,"ts":1,"mac":"00"}"#;
    device
        .publish_raw("vakt/v1/dev/nobody-knows/alarm", body.as_bytes().to_vec())
        .await
        .unwrap();
    // An external broker's ACL stops this; the embedded broker has the ingest refuse it as a
    // write outside the device's own topics.
    let kind = if app.embedded_broker() {
        app.wait_for_metric("vakt_topic_denied_total", 1).await;
        "topic_denied"
    } else {
        app.wait_for_metric("vakt_unknown_devices_total", 1).await;
        "unknown_device"
    };
    assert!(app.metric("vakt_security_events_total").await >= 1);
    // The event is stored right after it is counted.
    let admin = app.admin.clone();
    let url = app.url("/api/security-events");
    wait_for("the stored security event", Duration::from_secs(5), || {
        let req = admin.get(&url).send();
        async move {
            let events: Value = req.await.unwrap().json().await.unwrap();
            events.as_array().unwrap().iter().any(|e| e["kind"] == kind)
        }
    })
    .await;
    let resp = app
        .officer
        .get(app.url("/api/security-events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn a_protected_persons_position_shows_while_the_alert_is_open_and_is_withheld_once_resolved_unless_a_reason_is_given(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await; // the holder has a protected identity
    let device = app.connect(&d).await;
    device
        .alarm("panic", Some(fix_near_home()), None)
        .await
        .unwrap();
    device.next_feedback(Duration::from_secs(5)).await.unwrap();
    let open = app.wait_for_alert(&d.id, |_| true).await;
    let id = open["id"].as_i64().unwrap();
    assert!(
        open["position"]["lat"].is_number(),
        "officers need it to send help"
    );
    assert_eq!(open["position_masked"], false);

    let resolved: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{id}/resolve"),
            json!({"outcome": "false_alarm"}),
        )
        .await;
    for alert in [
        resolved,
        app.get(&app.officer, "/api/alerts?state=resolved").await[0].clone(),
        app.get(&app.officer, &format!("/api/alerts/{id}")).await["alert"].clone(),
    ] {
        assert_eq!(alert["id"], id);
        assert!(alert["position"].is_null(), "{alert}");
        assert_eq!(alert["position_masked"], true);
        let reasons = alert["reasons"].to_string();
        assert!(!reasons.contains("Position is"), "{reasons}");
        assert!(reasons.contains("Panic button pressed"), "{reasons}");
    }

    let shown = app
        .get(
            &app.officer,
            &format!("/api/alerts/{id}?reason=review%20of%20the%20incident"),
        )
        .await;
    assert!(shown["alert"]["position"]["lat"].is_number());
    assert_eq!(shown["alert"]["position_masked"], false);
    assert!(shown["alert"]["reasons"]
        .to_string()
        .contains("from the registered address"));
    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "person_revealed"
                && e["actor"] == "officer"
                && e["detail"] == "review of the incident"),
        "{audit}"
    );
}
