//! What operations sees of a running vakt: `/metrics` (labels, histograms, the port of its
//! own, the token), `vakt health`, and the logs as JSON with an access log that keeps
//! personal data out.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The value of the series `series` (a name with its labels) in a `/metrics` text.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

async fn get_text(url: String) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_panic_is_counted_by_kind_and_priority_and_timed_on_the_metrics_port_of_its_own() {
    let app = TestApp::start_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics = app
        .running
        .metrics_addr
        .expect("vakt listens on the metrics address");
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    // A console watching, for the live stream's latency.
    let resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();

    device
        .alarm("panic", Some(fix_near_home()), Some(80))
        .await
        .unwrap();
    device
        .next_feedback(Duration::from_secs(5))
        .await
        .expect("the device hears `received`");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("event: alert") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .expect("the console gets the alert")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let id = alert["id"].as_i64().unwrap();
    let _: Value = app
        .post(&app.officer, &format!("/api/alerts/{id}/ack"), json!({}))
        .await;
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{id}/resolve"),
            json!({"outcome": "false_alarm"}),
        )
        .await;

    let (status, text) = get_text(format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    let expect = |s: &str| series(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    assert_eq!(
        expect("vakt_device_messages_total{kind=\"alarm\",result=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        expect("vakt_device_messages_total{kind=\"alarm\",result=\"bad_signature\"}"),
        0.0
    );
    assert_eq!(
        expect("vakt_alerts_opened_total{kind=\"panic\",priority=\"1\"}"),
        1.0
    );
    assert_eq!(
        expect("vakt_alerts_opened_total{kind=\"panic\",priority=\"2\"}"),
        0.0
    );
    // The alarm's commit, counted in its bucket and every bucket above.
    let commits = expect("vakt_message_commit_seconds_count");
    assert!(commits >= 1.0, "{commits}");
    assert_eq!(
        expect("vakt_message_commit_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    assert!(expect("vakt_message_commit_seconds_bucket{le=\"5\"}") >= 1.0);
    assert!(expect("vakt_live_stream_seconds_count") >= 1.0);
    assert_eq!(
        expect("vakt_alert_acknowledge_seconds_count{priority=\"1\"}"),
        1.0
    );
    assert_eq!(
        expect("vakt_alert_acknowledge_seconds_bucket{priority=\"1\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        expect("vakt_alert_resolve_seconds_count{priority=\"1\"}"),
        1.0
    );
    assert_eq!(
        expect("vakt_alert_resolve_seconds_count{priority=\"2\"}"),
        0.0
    );
    assert!(text.contains(&format!(
        "\nvakt_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(expect("vakt_ready"), 1.0);

    // The port of its own answers the probes too; the console's port no longer has /metrics.
    assert_eq!(get_text(format!("http://{metrics}/healthz")).await.0, 200);
    let (status, ready) = get_text(format!("http://{metrics}/readyz")).await;
    assert_eq!((status, ready.contains("\"broker\":true")), (200, true));
    assert_eq!(
        get_text(format!("http://{metrics}/api/alerts")).await.0,
        404
    );
    assert_eq!(get_text(app.url("/metrics")).await.0, 404);
}

#[tokio::test]
async fn metrics_on_the_console_port_are_refused_without_the_token_and_served_with_it() {
    const TOKEN: &str = "a-long-scrape-token-for-the-test";
    let app = TestApp::start_with(|c| {
        c.metrics_token = Some(vakt::config::Secret(TOKEN.into()));
    })
    .await;
    let client = reqwest::Client::new();
    let scrape = |token: Option<&str>| {
        let mut req = client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    let refused = scrape(None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"metrics\""
    );
    let body = refused.text().await.unwrap();
    assert!(!body.contains("vakt_"), "{body}");
    assert_eq!(
        scrape(Some("a-long-scrape-token-for-the-tes"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        scrape(Some(&format!("{TOKEN}x"))).await.unwrap().status(),
        401
    );

    let served = scrape(Some(TOKEN)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert!(served
        .text()
        .await
        .unwrap()
        .contains("# TYPE vakt_device_messages_total counter"));
    // The probes need no token.
    assert_eq!(get_text(app.url("/readyz")).await.0, 200);
}

/// `vakt` with the given arguments and environment; its exit status, standard output and
/// standard error.
fn vakt(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_LOG_FORMAT")
        .output()
        .expect("vakt runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn vakt_health_says_ready_for_a_running_instance_and_why_not_where_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (http, metrics) = (free_port(), free_port());
    let env = vec![
        ("VAKT_HTTP_ADDR", format!("127.0.0.1:{http}")),
        ("VAKT_METRICS_ADDR", format!("127.0.0.1:{metrics}")),
        ("VAKT_MQTT_LISTEN", format!("127.0.0.1:{}", free_port())),
        (
            "VAKT_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        (
            "VAKT_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("vakt.db").display()),
        ),
        ("VAKT_LOG", "info,rumqttc=warn,sqlx=warn".into()),
        ("VAKT_MQTT_URL", String::new()),
    ];
    let log = dir.path().join("vakt.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .arg("serve")
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("VAKT_LOG_FORMAT", "json")
        .env_remove("VAKT_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("vakt serve starts");

    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let (ok, out, err) = vakt(&["health"], &env);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {err}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.trim(), format!("ready (127.0.0.1:{metrics})"));
    let (ok, out, _) = vakt(&["health", "--live"], &env);
    assert!(ok);
    assert_eq!(out.trim(), format!("alive (127.0.0.1:{metrics})"));
    // Without a metrics address it asks the console's port.
    let console_only: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "VAKT_METRICS_ADDR")
        .cloned()
        .collect();
    let (ok, out, err) = vakt(&["health"], &console_only);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("ready (127.0.0.1:{http})"));

    // What the access log must not keep: a person's id in the path, a reason in the query.
    let resp = reqwest::get(format!(
        "http://127.0.0.1:{http}/api/persons/p-4711?reason=her-new-address"
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);

    serve.kill().unwrap();
    serve.wait().unwrap();
    let (ok, out, err) = vakt(&["health"], &env);
    assert!(!ok, "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with(&format!("vakt: nothing answers at 127.0.0.1:{metrics}")),
        "{err}"
    );

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "vakt is serving"),
        "{text}"
    );
    let access = lines
        .iter()
        .find(|l| l["target"] == "vakt::access" && l["route"] == "/api/persons/{id}")
        .unwrap_or_else(|| panic!("no access line for the person:\n{text}"));
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 401);
    assert!(access["duration_ms"].as_f64().is_some());
    assert!(access["bytes"].as_u64().unwrap() > 0);
    assert!(!text.contains("p-4711"), "{text}");
    assert!(!text.contains("her-new-address"), "{text}");
}
