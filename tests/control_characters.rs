//! Text never breaks storage: a NUL (which PostgreSQL cannot store) or another control
//! character is refused where it comes in, from a device or over HTTP, and one device's
//! health row the store refuses cannot hold back the other devices' rows.
//!
//! Meant for PostgreSQL above all (`VAKT_TEST_POSTGRES`), where a NUL used to stop every
//! device's health and give a 500; on SQLite the same refusals hold.

mod common;

use std::time::Duration;

use common::{wait_for, TestApp};
use serde_json::{json, Value};
use vakt::domain::now_ms;
use vakt::store::DeviceHealth;

async fn problem(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn a_person_name_with_a_nul_is_refused_as_problem_json_naming_the_field() {
    let app = TestApp::start().await;
    let resp = app
        .coordinator
        .post(app.url("/api/persons"))
        .json(&json!({"name": "Anna\u{0}Lindqvist", "region": "Stockholm"}))
        .send()
        .await
        .unwrap();
    let (status, content_type, body) = problem(resp).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["field"], "name");

    // Deeper down, and in a multi-line field, where a line break is fine but a NUL is not.
    let d = app.issued_device("Stockholm").await;
    for (patch, field) in [
        (
            json!({"relatives": [{"name": "Per\u{1b}[2J"}]}),
            "relatives[0].name",
        ),
        (json!({"response_plan": "Call.\u{0}"}), "response_plan"),
    ] {
        let resp = app
            .coordinator
            .patch(app.url(&format!("/api/cases/{}", d.case_id)))
            .json(&patch)
            .send()
            .await
            .unwrap();
        let (status, _, body) = problem(resp).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"response_plan": "Call 112.\nThen send a patrol."}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_nul_in_a_path_segment_or_query_parameter_is_refused_before_the_store() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    for (path, field) in [
        (format!("/api/persons/{}%00", d.person_id), "path"),
        (
            format!("/api/persons/{}?reason=court%00order", d.person_id),
            "reason",
        ),
        ("/api/audit?user=admin%00".to_owned(), "user"),
    ] {
        let client = if field == "user" {
            &app.admin
        } else {
            &app.coordinator
        };
        let resp = client.get(app.url(&path)).send().await.unwrap();
        let (status, content_type, body) = problem(resp).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["field"], field);
    }
}

#[tokio::test]
async fn a_signed_hello_with_a_nul_in_its_firmware_is_refused_and_other_devices_stay_alive() {
    let app = TestApp::start().await;
    let (a, b) = (
        app.issued_device("Stockholm").await,
        app.issued_device("Stockholm").await,
    );
    let (dev_a, dev_b) = (app.connect(&a).await, app.connect(&b).await);
    let malformed = app.metric("vakt_malformed_total").await;

    dev_a.hello("a\u{0}b", "VA-200", 60).await.unwrap();
    app.wait_for_metric("vakt_malformed_total", malformed + 1)
        .await;
    let before = now_ms();
    dev_b.heartbeat(80, false, -70).await.unwrap();

    // B's health reaches the store (the batch is not blocked), A's firmware never does.
    let url = app.url(&format!("/api/devices/{}", b.id));
    wait_for(
        "B's last_heard_at in the store",
        Duration::from_secs(10),
        || {
            let req = app.coordinator.get(&url).send();
            async move {
                let d: Value = req.await.unwrap().json().await.unwrap();
                d["health"]["last_heard_at"]
                    .as_str()
                    .and_then(vakt::domain::parse_rfc3339)
                    .is_some_and(|t| t >= before - 1000)
            }
        },
    )
    .await;
    let device_a = app
        .get(&app.coordinator, &format!("/api/devices/{}", a.id))
        .await;
    assert_eq!(device_a["health"]["fw"], Value::Null);
    let events = app.get(&app.admin, "/api/security-events").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["device_id"] == a.id.as_str()
                && e["kind"] == "malformed"
                && e["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("control character")),
        "{events}"
    );
    assert_eq!(app.metric("vakt_health_rows_refused_total").await, 0);
}

#[tokio::test]
async fn a_health_row_the_store_refuses_does_not_hold_back_the_other_devices() {
    let app = TestApp::start().await;
    let (a, b) = (
        app.issued_device("Stockholm").await,
        app.issued_device("Stockholm").await,
    );
    let store = &app.running.state.store;
    let metrics = vakt::metrics::Metrics::default();
    let heard = now_ms();
    // Text the decoder no longer lets through, as an older release may have queued it.
    let bad = DeviceHealth {
        last_heard_at: Some(heard),
        fw: Some("a\u{0}b".into()),
        last_seq: Some(7),
        ..Default::default()
    };
    let good = DeviceHealth {
        last_heard_at: Some(heard),
        last_boot: Some(1),
        last_seq: Some(42),
        ..Default::default()
    };
    let kept = vakt::ingest::write_health(
        store,
        &metrics,
        vec![(a.id.clone(), bad), (b.id.clone(), good)],
    )
    .await;

    assert!(kept.is_empty(), "nothing is left to retry forever");
    let stored = store.device(&b.id).await.unwrap();
    assert_eq!(stored.health.last_heard_at, Some(heard));
    assert_eq!(stored.health.last_seq, Some(42));
    let postgres = app.database_url.starts_with("postgres");
    let refused = metrics
        .health_rows_refused_total
        .load(std::sync::atomic::Ordering::Relaxed);
    // SQLite stores a NUL like any other character; PostgreSQL refuses the row, and only it.
    assert_eq!(refused, u64::from(postgres));
}
