//! Crash safety: the real `vakt` binary is killed with SIGKILL and started again.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use serde_json::Value;
use vakt::domain::{now_ms, Risk};
use vakt::store::SharedStore;

struct Deployment {
    dir: tempfile::TempDir,
    database_url: String,
    http_port: u16,
    mqtt_port: u16,
    mqtt_url: Option<String>,
    client_id: String,
    share_group: String,
}

impl Deployment {
    async fn new() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(dir.path()).await;
        Deployment {
            database_url,
            dir,
            http_port: free_port(),
            mqtt_port: free_port(),
            mqtt_url: std::env::var("VAKT_TEST_MQTT_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            client_id: unique("vakt-restart"),
            share_group: unique("restart"),
        }
    }

    fn spawn(&self) -> Child {
        self.spawn_with(&[])
    }

    fn spawn_with(&self, env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
        cmd.envs(env.iter().copied());
        cmd.arg("serve")
            .current_dir(self.dir.path())
            .env("VAKT_HTTP_ADDR", format!("127.0.0.1:{}", self.http_port))
            .env("VAKT_MQTT_LISTEN", format!("127.0.0.1:{}", self.mqtt_port))
            .env("VAKT_DATA_DIR", self.dir.path())
            .env("VAKT_DATABASE_URL", &self.database_url)
            .env("VAKT_MQTT_CLIENT_ID", &self.client_id)
            .env("VAKT_MQTT_SHARE_GROUP", &self.share_group)
            .env("VAKT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match &self.mqtt_url {
            Some(url) => cmd.env("VAKT_MQTT_URL", url),
            None => cmd.env_remove("VAKT_MQTT_URL"),
        };
        cmd.spawn().expect("vakt starts")
    }

    /// Instances of one deployment share one master key: the device keys are sealed and
    /// the audit chain linked under it.
    fn share_master_key_with(&self, other: &Deployment) {
        std::fs::copy(
            self.dir.path().join("master.key"),
            other.dir.path().join("master.key"),
        )
        .unwrap();
    }

    fn broker(&self) -> (String, u16) {
        match &self.mqtt_url {
            Some(url) => {
                let address = vakt::mqtt::BrokerLink::parse_url(url).unwrap();
                (address.host, address.port)
            }
            None => ("127.0.0.1".into(), self.mqtt_port),
        }
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        wait_for("vakt to be ready", Duration::from_secs(30), || {
            let req = reqwest::get(url.clone());
            async move { req.await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await;
    }

    async fn alerts(&self, token: &str) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/alerts", self.http_port))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }
}

/// An officer token and an issued device, written straight into the store.
async fn seed(store: &SharedStore, dep: &Deployment) -> (String, String, String) {
    let (id, key) = seed_issued_devices(store, dep.dir.path(), Risk::Medium, 1)
        .await
        .remove(0);
    let (token, hash) = vakt::credentials::new_token();
    store
        .insert_api_token(&hash, "officer", now_ms(), &common::SEEDED)
        .await
        .unwrap();
    (token, id, key)
}

async fn device(dep: &Deployment, id: &str, key: &str, boot: u32) -> SimDevice {
    let (host, port) = dep.broker();
    SimDevice::connect(SimOptions {
        host,
        port,
        device_id: id.into(),
        key: key.parse::<DeviceKey>().unwrap(),
        boot,
    })
    .await
    .unwrap()
}

fn kill_9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix: no shutdown code runs.
    child.wait().unwrap();
}

#[tokio::test]
async fn an_open_alert_survives_a_kill_9_and_the_device_keeps_counting_after_the_restart() {
    let dep = Deployment::new().await;
    let store = open_store(dep.dir.path(), &dep.database_url).await;
    let (token, id, key) = seed(&store, &dep).await;
    let mut vakt = dep.spawn();
    dep.wait_ready().await;

    let dev = device(&dep, &id, &key, 7).await;
    let (boot, seq) = dev.alarm("panic", None, None).await.unwrap();
    let f = dev.next_feedback(Duration::from_secs(2)).await.unwrap();
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "received"));
    kill_9(&mut vakt);

    let mut vakt = dep.spawn();
    dep.wait_ready().await;
    let alerts = dep.alerts(&token).await;
    let alert = alerts
        .iter()
        .find(|a| a["device_id"] == id.as_str())
        .expect("the alert is still there");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["priority"], 1);

    // The same device, same boot, goes on: its next alarm is taken in as the same incident.
    drop(dev);
    let dev = device(&dep, &id, &key, 7).await;
    dev.publish_signed(
        "alarm",
        &[("kind", serde_json::json!("panic"))],
        Some((boot, seq + 10)),
    )
    .await
    .unwrap();
    let f = dev.next_feedback(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.seq, f.st.as_str()), (seq + 10, "received"));
    let alerts = dep.alerts(&token).await;
    let mine: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["device_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["count"], 2);
    kill_9(&mut vakt);
}

#[tokio::test]
async fn an_alarm_sent_while_the_backend_is_down_is_taken_in_when_it_comes_back() {
    let dep = Deployment::new().await;
    if dep.mqtt_url.is_none() {
        // The embedded broker dies with the backend; this needs an external broker that
        // keeps the ingest's persistent session (run with VAKT_TEST_MQTT_URL).
        return;
    }
    let store = open_store(dep.dir.path(), &dep.database_url).await;
    let (token, id, key) = seed(&store, &dep).await;
    let mut vakt = dep.spawn();
    dep.wait_ready().await;
    kill_9(&mut vakt);

    let dev = device(&dep, &id, &key, 3).await;
    let (boot, seq) = dev.alarm("fall", None, None).await.unwrap();
    dev.flush(Duration::from_secs(5)).await.unwrap();

    let mut vakt = dep.spawn();
    let f = dev
        .next_feedback(Duration::from_secs(20))
        .await
        .expect("received once the backend is back");
    assert_eq!((f.boot, f.seq, f.st.as_str()), (boot, seq, "received"));
    dep.wait_ready().await;
    let alerts = dep.alerts(&token).await;
    assert!(alerts
        .iter()
        .any(|a| a["device_id"] == id.as_str() && a["kind"] == "fall"));
    kill_9(&mut vakt);
}

/// Heartbeats from `dev` every `every` until `stop` is set.
fn keep_beating(
    dev: std::sync::Arc<SimDevice>,
    every: Duration,
) -> tokio::sync::watch::Sender<bool> {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let _ = dev.heartbeat(80, false, -70).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
        }
    });
    stop
}

#[tokio::test]
async fn a_device_that_keeps_beating_is_not_declared_silent_across_a_kill_9_and_restart() {
    let dep = Deployment::new().await;
    let store = open_store(dep.dir.path(), &dep.database_url).await;
    let (token, id, key) = seed(&store, &dep).await;
    let mut vakt = dep.spawn_with(&[("VAKT_SILENCE_GRACE_S", "1")]);
    dep.wait_ready().await;
    let dev = std::sync::Arc::new(device(&dep, &id, &key, 1).await);
    dev.hello("1.0", "T1", 2).await.unwrap();
    let beating = keep_beating(dev.clone(), Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(4)).await;

    kill_9(&mut vakt);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut vakt = dep.spawn_with(&[("VAKT_SILENCE_GRACE_S", "1")]);
    dep.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let alerts = dep.alerts(&token).await;
    assert!(
        alerts.iter().all(|a| a["device_id"] != id.as_str()),
        "{alerts:?}"
    );

    // And it is still watched: when it stops, it is declared silent.
    beating.send(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dep
        .alerts(&token)
        .await
        .iter()
        .any(|a| a["device_id"] == id.as_str() && a["kind"] == "silent")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never declared silent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill_9(&mut vakt);
}

async fn metric(port: u16, name: &str) -> Option<u64> {
    metric_at(([127, 0, 0, 1], port).into(), name).await
}

#[tokio::test]
async fn when_the_supervision_leader_is_killed_another_instance_takes_over_within_10_s() {
    let first = Deployment::new().await;
    if first.mqtt_url.is_none() || !first.database_url.starts_with("postgres") {
        // Several instances need the shared database and broker (VAKT_TEST_POSTGRES and
        // VAKT_TEST_MQTT_URL).
        return;
    }
    let second = Deployment {
        dir: tempfile::tempdir().unwrap(),
        database_url: first.database_url.clone(),
        http_port: free_port(),
        mqtt_port: free_port(),
        mqtt_url: first.mqtt_url.clone(),
        client_id: unique("vakt-second"),
        share_group: first.share_group.clone(),
    };
    let store = open_store(first.dir.path(), &first.database_url).await;
    let (token, id, key) = seed(&store, &first).await;
    first.share_master_key_with(&second);
    let env = [("VAKT_SILENCE_GRACE_S", "1")];
    let mut a = first.spawn_with(&env);
    first.wait_ready().await;
    wait_for(
        "the first instance to lead",
        Duration::from_secs(10),
        || async { metric(first.http_port, "vakt_supervision_leader").await == Some(1) },
    )
    .await;
    let mut b = second.spawn_with(&env);
    second.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(second.http_port, "vakt_supervision_leader").await,
        Some(0),
        "one leader at a time"
    );

    let dev = std::sync::Arc::new(device(&first, &id, &key, 1).await);
    dev.hello("1.0", "T1", 2).await.unwrap();
    let beating = keep_beating(dev.clone(), Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;

    kill_9(&mut a);
    let killed = std::time::Instant::now();
    wait_for(
        "the second instance to lead",
        Duration::from_secs(10),
        || async { metric(second.http_port, "vakt_supervision_leader").await == Some(1) },
    )
    .await;
    assert!(killed.elapsed() < Duration::from_secs(10));

    // The device kept beating through the takeover: not silent.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(second
        .alerts(&token)
        .await
        .iter()
        .all(|a| a["device_id"] != id.as_str()));

    // It stops: the new leader declares it silent, once.
    beating.send(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let silent: Vec<Value> = second
            .alerts(&token)
            .await
            .into_iter()
            .filter(|a| a["device_id"] == id.as_str() && a["kind"] == "silent")
            .collect();
        if !silent.is_empty() {
            assert_eq!(silent.len(), 1);
            assert_eq!(silent[0]["count"], 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never declared silent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill_9(&mut b);
}

#[tokio::test]
async fn a_change_made_on_one_instance_reaches_the_live_stream_of_another() {
    let first = Deployment::new().await;
    if first.mqtt_url.is_none() || !first.database_url.starts_with("postgres") {
        return; // Needs the shared PostgreSQL and broker, as above.
    }
    let second = Deployment {
        dir: tempfile::tempdir().unwrap(),
        database_url: first.database_url.clone(),
        http_port: free_port(),
        mqtt_port: free_port(),
        mqtt_url: first.mqtt_url.clone(),
        client_id: unique("vakt-second"),
        share_group: first.share_group.clone(),
    };
    let store = open_store(first.dir.path(), &first.database_url).await;
    let (token, id, key) = seed(&store, &first).await;
    first.share_master_key_with(&second);
    let mut a = first.spawn();
    let mut b = second.spawn();
    first.wait_ready().await;
    second.wait_ready().await;

    let dev = device(&first, &id, &key, 1).await;
    dev.alarm("panic", None, None).await.unwrap();
    dev.next_feedback(Duration::from_secs(5)).await.unwrap();
    let alert = first
        .alerts(&token)
        .await
        .into_iter()
        .find(|a| a["device_id"] == id.as_str())
        .unwrap();

    use futures_util::StreamExt;
    let resp = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/alerts/stream",
            second.http_port
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let ack: Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/alerts/{}/ack",
            first.http_port, alert["id"]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ack["state"], "acknowledged");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("\"state\":\"acknowledged\"") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the change arrives on the other instance")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    kill_9(&mut a);
    kill_9(&mut b);
}
