//! Device key rotation end to end: the backend hands a device a new key in a signed `cfg`,
//! the real firmware simulator takes it up, and from then on only the new key counts.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use serde_json::{json, Value};

async fn connect_with(
    app: &TestApp,
    id: &str,
    key: &DeviceKey,
    boot: u32,
) -> anyhow::Result<SimDevice> {
    SimDevice::connect(SimOptions {
        host: app.running.mqtt_host.clone(),
        port: app.running.mqtt_port,
        device_id: id.to_owned(),
        key: key.clone(),
        boot,
    })
    .await
}

/// Waits for the device to hold a key other than `old`.
async fn wait_for_new_key(device: &SimDevice, old: &DeviceKey) -> DeviceKey {
    wait_for(
        "the device takes up its new key",
        Duration::from_secs(15),
        || async { device.key() != *old },
    )
    .await;
    device.key()
}

#[tokio::test]
async fn a_rotated_key_reaches_the_device_in_a_signed_cfg_and_then_only_the_new_key_counts() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let old: DeviceKey = d.key.parse().unwrap();
    let device = app.connect(&d).await;
    device.hello("1.0", "T1", 60).await.unwrap();
    device.flush(Duration::from_secs(5)).await.unwrap();

    let rotated: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{}/rotate-key", d.id),
            json!({}),
        )
        .await;
    let shown: DeviceKey = rotated["key"].as_str().unwrap().parse().unwrap();
    assert_ne!(shown, old);
    assert_eq!(rotated["device"]["key_rotation"]["state"], "announced");

    // The cfg is signed with the old key and carries the new one wrapped, not in clear.
    let new = wait_for_new_key(&device, &old).await;
    assert_eq!(
        new, shown,
        "the device unwrapped the key the coordinator was shown"
    );
    assert_eq!(device.key_rotations(), 1);
    let cfg = device.latest_cfg().unwrap();
    assert!(cfg["newkey"].as_str().unwrap() != shown.to_hex());

    // Its next alarm is signed with the new key: accepted, and the rotation is complete.
    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    let received = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (received.boot, received.seq, received.st.as_str()),
        (boot, seq, "received")
    );
    app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    let status = app
        .get(&app.coordinator, &format!("/api/devices/{}", d.id))
        .await;
    assert!(status["key_rotation"].is_null(), "{status}");
    assert!(status["key_rotated_at"].is_string(), "{status}");
    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == d.id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"device_key_rotation_started"),
        "{actions:?}"
    );
    assert!(actions.contains(&"device_key_rotated"), "{actions:?}");

    // The backend now signs with the new key: the retained cfg no longer carries a key.
    wait_for(
        "a cfg signed with the new key",
        Duration::from_secs(10),
        || async {
            device
                .latest_cfg()
                .is_some_and(|c| !c.contains_key("newkey"))
        },
    )
    .await;

    // The old key is dead: a message signed with it is a bad signature, and the broker
    // refuses the password derived from it; the new key's logs in.
    let before = app.metric("vakt_bad_signatures_total").await;
    let (topic, body) = heartbeat_signed_with(&d.id, &old, boot, seq + 10);
    device.publish_raw(&topic, body).await.unwrap();
    app.wait_for_metric("vakt_bad_signatures_total", before + 1)
        .await;
    device.disconnect().await.unwrap();
    if std::env::var("VAKT_TEST_MQTT_URL").is_err() {
        // The embedded broker checks passwords against the register; an external broker has
        // its own password file (`vakt broker mosquitto-files`).
        assert!(
            connect_with(&app, &d.id, &old, 2).await.is_err(),
            "the old key no longer logs in"
        );
    }
    let again = connect_with(&app, &d.id, &new, 2)
        .await
        .expect("the new key logs in");
    let (boot, seq) = again.alarm("fall", None, None).await.unwrap();
    let f = again.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "received"));
}

/// A heartbeat signed with a given key, as somebody still holding the old key would send it.
fn heartbeat_signed_with(id: &str, key: &DeviceKey, boot: u32, seq: u32) -> (String, Vec<u8>) {
    let topic = format!("vakt/v1/dev/{id}/hb");
    let members = [
        ("batt", json!(80)),
        ("boot", json!(boot)),
        ("chg", json!(0)),
        ("rssi", json!(-70)),
        ("seq", json!(seq)),
        ("ts", json!(1_764_320_000_000i64)),
    ];
    let body = firmware_sim::signed_body(key, &topic, &members).unwrap();
    (topic, body.into_bytes())
}

#[tokio::test]
async fn a_device_keeps_working_with_its_old_key_until_it_takes_up_the_new_one() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let old: DeviceKey = d.key.parse().unwrap();
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{}/rotate-key", d.id),
            json!({}),
        )
        .await;
    // A device that was away during the rotation still logs in with the old key, and its
    // messages still count; the retained cfg then hands it the new key.
    let device = connect_with(&app, &d.id, &old, 1)
        .await
        .expect("the old key still logs in");
    let new = wait_for_new_key(&device, &old).await;
    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    let f = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.boot, f.seq), (boot, seq));
    let status = app
        .get(&app.coordinator, &format!("/api/devices/{}", d.id))
        .await;
    assert!(status["key_rotation"].is_null(), "{status}");
    assert_ne!(new, old);
}

#[tokio::test]
async fn a_returned_device_gets_no_new_key_and_another_region_cannot_rotate_one() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let west = app
        .client_for("coord-west", vakt::store::Role::Coordinator, Some("Väst"))
        .await;
    let resp = west
        .post(app.url(&format!("/api/devices/{}/rotate-key", d.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let officer = app
        .officer
        .post(app.url(&format!("/api/devices/{}/rotate-key", d.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(officer.status(), 403);

    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{}/return", d.id),
            json!({"reason": "case closed"}),
        )
        .await;
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/devices/{}/rotate-key", d.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

#[tokio::test]
async fn vakt_device_rotate_key_on_the_command_line_reaches_a_connected_device_through_the_running_service(
) {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let old: DeviceKey = d.key.parse().unwrap();
    let device = app.connect(&d).await;

    let run = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["device", "rotate-key", "--id", &d.id])
        .current_dir(app.dir.path())
        .env("VAKT_DATABASE_URL", &app.database_url)
        .env("VAKT_DATA_DIR", app.dir.path())
        .env_remove("VAKT_CONFIG")
        .env("VAKT_LOG", "warn")
        .output()
        .expect("vakt runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed = stdout
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .expect("the new key is printed once");

    // The command has no broker link; the running service announces the key.
    let new = wait_for_new_key(&device, &old).await;
    assert_eq!(new.to_hex(), printed);
    device.heartbeat(90, false, -60).await.unwrap();
    wait_for(
        "the rotation completes",
        Duration::from_secs(10),
        || async {
            let status = app
                .get(&app.coordinator, &format!("/api/devices/{}", d.id))
                .await;
            status["key_rotation"].is_null()
        },
    )
    .await;

    let missing = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["device", "rotate-key", "--id", "no-such-device"])
        .current_dir(app.dir.path())
        .env("VAKT_DATABASE_URL", &app.database_url)
        .env("VAKT_DATA_DIR", app.dir.path())
        .env_remove("VAKT_CONFIG")
        .env("VAKT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("no device no-such-device"), "{said}");
}

#[tokio::test]
async fn a_second_rotation_replaces_the_first_and_the_first_new_key_never_counts() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let old: DeviceKey = d.key.parse().unwrap();
    let path = format!("/api/devices/{}/rotate-key", d.id);
    let first: Value = app.post(&app.coordinator, &path, json!({})).await;
    let second: Value = app.post(&app.coordinator, &path, json!({})).await;
    let first: DeviceKey = first["key"].as_str().unwrap().parse().unwrap();
    let second: DeviceKey = second["key"].as_str().unwrap().parse().unwrap();

    // The device, still on its old key, gets the latest cfg: the second key.
    let device = connect_with(&app, &d.id, &old, 1).await.unwrap();
    wait_for(
        "the device takes up the second key",
        Duration::from_secs(15),
        || async { device.key() == second },
    )
    .await;

    let before = app.metric("vakt_bad_signatures_total").await;
    let (topic, body) = heartbeat_signed_with(&d.id, &first, 1, 1000);
    device.publish_raw(&topic, body).await.unwrap();
    app.wait_for_metric("vakt_bad_signatures_total", before + 1)
        .await;

    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    let f = device.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "received"));
    let status = app
        .get(&app.coordinator, &format!("/api/devices/{}", d.id))
        .await;
    assert!(status["key_rotation"].is_null(), "{status}");
}
