//! A protected person's data, and the live stream that carries alarms with positions.
//!
//! - An officer of the region reads the lists and details of cases, orders and alerts and
//!   the live stream without stating a reason: the relatives, the response plan, the
//!   zones drawn around the home and the distances to the address must not be there.
//! - A console's live stream must end when its session does: at logout and at the idle
//!   limit, not keep delivering alarms with positions.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use crate::on_both;
use crate::target::{Target, Topology, PASSWORD};

/// What points to the protected person of `Target::issue_device`.
const PROTECTED: [&str; 11] = [
    "Anna Lindqvist",
    "123 45 67",
    "Drottninggatan",
    "59.3366",
    "Erik Lindqvist",
    "765 43 21",
    "then send a patrol",
    "\"coordinates\"",
    "\"radius_m\"",
    "distance_to_address",
    "from the registered address",
];

async fn text_of(target: &Target, user: &str, path: &str) -> String {
    let resp = target
        .client(user)
        .get(target.url(path))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "GET {path} gave {status}: {body}");
    body
}

async fn an_officer_reads_no_protected_data_of_the_region_without_a_reason(target: &Target) {
    let d = target.issue_device("Nord").await;
    let stream = target
        .client("officer-nord")
        .get(target.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let device = target.device(&d).await;
    device
        .alarm("panic", Some(crate::common::fix_near_home()), None)
        .await
        .unwrap();
    let alert = target.wait_for_alert(&d.id, |_| true).await;
    let id = alert["id"].as_i64().unwrap();
    let orders = target
        .get("coord-nord", &format!("/api/cases/{}/orders", d.case_id))
        .await;
    let order = orders[0]["id"].as_str().unwrap().to_owned();

    for path in [
        "/api/cases".to_owned(),
        format!("/api/cases/{}", d.case_id),
        format!("/api/cases/{}/orders", d.case_id),
        format!("/api/orders/{order}"),
        format!("/api/persons/{}", d.person_id),
        "/api/alerts?state=open,acknowledged,resolved".to_owned(),
        format!("/api/alerts/{id}"),
    ] {
        let body = text_of(target, "officer-nord", &path).await;
        for secret in PROTECTED {
            assert!(
                !body.contains(secret),
                "{path} gave {secret} without a reason: {body}"
            );
        }
    }

    let mut events = stream.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: alert") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the alarm on the live stream")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    for secret in PROTECTED {
        assert!(
            !seen.contains(secret),
            "the live stream gave {secret}: {seen}"
        );
    }

    // With a reason the officer sees it, and the audit log says who and why.
    let shown = text_of(
        target,
        "officer-nord",
        &format!("/api/alerts/{id}?reason=calling%20her%20back"),
    )
    .await;
    for needed in [
        "Erik Lindqvist",
        "then send a patrol",
        "\"radius_m\"",
        "from the registered address",
    ] {
        assert!(
            shown.contains(needed),
            "a reason did not show {needed}: {shown}"
        );
    }
    let audit = target.get("boss", "/api/audit?user=officer-nord").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "person_revealed" && e["detail"] == "calling her back"),
        "{audit}"
    );
}

on_both!(
    an_officer_reads_no_protected_data_of_the_region_without_a_reason_on_the_embedded_broker,
    an_officer_reads_no_protected_data_of_the_region_without_a_reason_on_mosquitto_and_postgres,
    an_officer_reads_no_protected_data_of_the_region_without_a_reason
);

/// A console: an officer's password login with the session cookie.
async fn console(target: &Target) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let resp = client
        .post(target.url("/api/login"))
        .json(&json!({"username": "officer-nord", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    client
}

/// Reads the stream to its end; fails if it is still open after `within`. The reason of
/// its last event, when that was `session_end`.
async fn stream_end(
    target: &Target,
    resp: reqwest::Response,
    within: Duration,
    what: &str,
) -> Option<String> {
    let mut events = resp.bytes_stream();
    let mut seen = String::new();
    let ended = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the live stream was still open {within:?} after {what}: {seen}\n{}",
        target.log()
    );
    let last = seen.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let data = last
        .contains("event: session_end")
        .then(|| last.lines().find_map(|l| l.strip_prefix("data:")))??;
    serde_json::from_str::<Value>(data.trim()).ok()?["reason"]
        .as_str()
        .map(str::to_owned)
}

async fn the_live_stream_ends_at_logout(target: &Target) {
    let client = console(target).await;
    let stream = client
        .get(target.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let logout = client
        .request(Method::POST, target.url("/api/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let why = stream_end(target, stream, Duration::from_secs(2), "logout").await;
    assert_eq!(why.as_deref(), Some("logged_out"));
}

on_both!(
    the_live_stream_ends_at_logout_on_the_embedded_broker,
    the_live_stream_ends_at_logout_on_mosquitto_and_postgres,
    the_live_stream_ends_at_logout
);

/// The target with a two-second idle limit, from a `vakt.toml` named by `VAKT_CONFIG`.
async fn idle_in_two_seconds(topology: Topology) -> Option<(Target, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vakt.toml");
    std::fs::write(&file, "session_idle_s = 2\n").unwrap();
    let file = file.display().to_string();
    if topology == Topology::MosquittoPostgres
        && std::env::var("VAKT_TEST_POSTGRES").map_or(true, |v| v.is_empty())
    {
        eprintln!("skipped on Mosquitto and PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return None;
    }
    let target = Target::start_with(topology, &[("VAKT_CONFIG", file.as_str())]).await;
    Some((target, dir))
}

async fn the_live_stream_of_a_session_left_alone_ends_at_the_idle_limit(topology: Topology) {
    let Some((target, _config)) = idle_in_two_seconds(topology).await else {
        return;
    };
    let client = console(&target).await;
    let stream = client
        .get(target.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let why = stream_end(&target, stream, Duration::from_secs(6), "the idle limit").await;
    assert_eq!(why.as_deref(), Some("expired"));
    let me = client.get(target.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_of_a_session_left_alone_ends_at_the_idle_limit_on_the_embedded_broker() {
    the_live_stream_of_a_session_left_alone_ends_at_the_idle_limit(Topology::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_of_a_session_left_alone_ends_at_the_idle_limit_on_mosquitto_and_postgres()
{
    the_live_stream_of_a_session_left_alone_ends_at_the_idle_limit(Topology::MosquittoPostgres)
        .await;
}
