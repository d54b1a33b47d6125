//! Live broker credentials, tried for real: a private Mosquitto with the dynamic-security
//! plugin, configured from `deploy/mosquitto/mosquitto-dynsec.conf`, its plugin file made
//! by `mosquitto_ctrl dynsec init` with an administrator; the real `vakt` binary
//! (`VAKT_MQTT_BROKER_ADMIN=dynsec`) keeping it in step with the device register; devices
//! and attackers logging in as real MQTT clients.
//!
//! Needs `mosquitto` with its `mosquitto_ctrl` and dynamic-security plugin (Debian's
//! `mosquitto` package has all three); `.ci/run` installs it. The register is on PostgreSQL when
//! `VAKT_TEST_POSTGRES` names a server (as `.ci/run` sets it), on SQLite otherwise; the
//! test with two instances needs PostgreSQL and says so without it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{device_password, find_mosquitto, free_port, unique};
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::{json, Value};

const ADMIN: &str = "vakt-admin";
const BACKEND_SECRET: &str = "backend-secret-of-the-dynsec-suite";
/// How soon a change through the API must hold on the broker.
const PROMPTLY: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
const HOME: (f64, f64) = (59.3366, 18.0612);

/// A private Mosquitto with the plugin and vakt's administrator in its file.
struct Broker {
    port: u16,
    admin_password: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    async fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dynamic-security.json");
        let admin_password = unique("admin-pw");
        let init = Command::new("mosquitto_ctrl")
            .args(["dynsec", "init"])
            .arg(&file)
            .args([ADMIN, &admin_password])
            .output()
            .expect("mosquitto_ctrl runs (Debian: apt-get install mosquitto)");
        assert!(
            init.status.success(),
            "mosquitto_ctrl dynsec init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // The shipped configuration, with this test's port, plugin path and file, no TLS
        // listener (its certificates are the operator's) and nothing kept on disk.
        let port = free_port();
        let conf = common::mosquitto_conf(
            "mosquitto-dynsec.conf",
            &format!("listener {port} 127.0.0.1\n"),
            &[
                ("plugin", common::dynsec_plugin().display().to_string()),
                ("plugin_opt_config_file", file.display().to_string()),
            ],
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.path().join("mosquitto.log");
        let child = Command::new(find_mosquitto())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("mosquitto starts");
        let broker = Broker {
            port,
            admin_password,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto does not listen:\n{}",
                broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        broker
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `mosquitto_ctrl dynsec …` as the administrator; what it printed.
    fn ctrl(&self, args: &[&str]) -> String {
        let out = Command::new("mosquitto_ctrl")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-u", ADMIN, "-P", &self.admin_password, "-i", "test-ctrl"])
            .arg("dynsec")
            .args(args)
            .output()
            .expect("mosquitto_ctrl runs");
        assert!(out.status.success(), "mosquitto_ctrl {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One deployment: a broker, a register, a master key shared by its vakt instances.
struct Site {
    broker: Broker,
    dir: tempfile::TempDir,
    database_url: String,
    master_key: String,
    /// The coordinator's bearer token.
    coordinator: reqwest::Client,
}

/// A running `vakt serve`.
struct Vakt {
    name: String,
    http: u16,
    child: Child,
    log: PathBuf,
}

impl Drop for Vakt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vakt {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metric(&self, name: &str) -> u64 {
        let addr = format!("127.0.0.1:{}", self.http).parse().unwrap();
        common::metric_at(addr, name).await.unwrap_or(0)
    }

    /// Stops it as an operator would, and waits until it is gone.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device added through the API, with the key it was given.
struct Added {
    id: String,
    key: String,
}

impl Added {
    fn password(&self) -> String {
        device_password(&self.key)
    }
}

impl Site {
    /// A broker and a register (PostgreSQL where `.ci/run` names a server, else SQLite),
    /// with a coordinator.
    async fn start() -> Site {
        let broker = Broker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let database_url = common::fresh_database(dir.path()).await;
        let master_key = hex::encode(vakt::keys::os_random::<32>());
        let mut site = Site {
            broker,
            dir,
            database_url,
            master_key,
            coordinator: reqwest::Client::new(),
        };
        // Users first: they also make the schema.
        site.run(
            &[
                "user",
                "add",
                "--username",
                "coord",
                "--role",
                "coordinator",
            ],
            Some("correct horse battery staple\n"),
        );
        let token = site.run(&["token", "create", "--username", "coord"], None);
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", token.lines().last().unwrap().trim()))
                .unwrap(),
        );
        site.coordinator = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        site
    }

    /// The environment of every vakt of this site: the broker, its administrator, the
    /// register, the master key.
    fn env(&self, name: &str) -> Vec<(String, String)> {
        let data = self.dir.path().join(format!("data-{name}"));
        std::fs::create_dir_all(&data).unwrap();
        [
            ("VAKT_DATA_DIR", data.display().to_string()),
            ("VAKT_DATABASE_URL", self.database_url.clone()),
            ("VAKT_MASTER_KEY", self.master_key.clone()),
            ("VAKT_LOG", "info,rumqttc=warn,sqlx=warn".into()),
            (
                "VAKT_MQTT_URL",
                format!("mqtt://127.0.0.1:{}", self.broker.port),
            ),
            ("VAKT_MQTT_USERNAME", name.into()),
            ("VAKT_MQTT_PASSWORD", BACKEND_SECRET.into()),
            ("VAKT_MQTT_BROKER_ADMIN", "dynsec".into()),
            ("VAKT_MQTT_ADMIN_USERNAME", ADMIN.into()),
            (
                "VAKT_MQTT_ADMIN_PASSWORD",
                self.broker.admin_password.clone(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
        cmd.current_dir(self.dir.path()).env_remove("VAKT_CONFIG");
        for (k, v) in self.env(name) {
            cmd.env(k, v);
        }
        cmd
    }

    /// A `vakt` command, run to its end; what it printed. It must succeed.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = self
            .command("vakt-cli")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vakt runs");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "vakt {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `vakt serve` as the instance `name` (its broker user), once it is ready.
    async fn serve(&self, name: &str, extra_env: &[(&str, &str)]) -> Vakt {
        let http = free_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = self.command(name);
        cmd.env("VAKT_HTTP_ADDR", format!("127.0.0.1:{http}"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("vakt serve starts");
        let vakt = Vakt {
            name: name.to_owned(),
            http,
            child,
            log,
        };
        // Ready means its ingest is logged in and subscribed on the broker: with the backend
        // user vakt itself made there.
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(vakt.url("/readyz"))
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return vakt;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not ready:\n{}\n--- mosquitto ---\n{}",
                vakt.log_text(),
                self.broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, vakt: &Vakt, path: &str, body: Value) -> Value {
        let resp = self
            .coordinator
            .post(vakt.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A device added to the stock through the API.
    async fn add(&self, vakt: &Vakt) -> Added {
        let device = self
            .call(
                vakt,
                "/api/devices",
                json!({"id": unique("dev"), "kind": "alarm", "model": "T1"}),
            )
            .await;
        Added {
            id: device["id"].as_str().unwrap().to_owned(),
            key: device["key"].as_str().unwrap().to_owned(),
        }
    }

    /// Issued to a new protected person's new high-risk case with a home zone.
    async fn issue(&self, vakt: &Vakt, d: &Added) {
        let person = self
            .call(
                vakt,
                "/api/persons",
                json!({
                    "name": "Anna Lindqvist", "phone": "+46 70 123 45 67",
                    "address": {"text": "Drottninggatan 71, Stockholm", "lat": HOME.0, "lon": HOME.1},
                    "protected_identity": true, "region": "Nord"
                }),
            )
            .await;
        let case = self
            .call(
                vakt,
                "/api/cases",
                json!({
                    "reference": unique("2026"), "person_id": person["id"], "risk": "high",
                    "region": "Nord", "response_plan": "Send a patrol at once."
                }),
            )
            .await;
        let case_id = case["id"].as_str().unwrap();
        self.call(
            vakt,
            &format!("/api/cases/{case_id}/orders"),
            json!({
                "kind": "contact_ban",
                "restrained": {"name": "Mikael Berg", "description": "185 cm, grey hooded jacket"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
                "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0]}, "radius_m": 300}]
            }),
        )
        .await;
        self.call(
            vakt,
            &format!("/api/devices/{}/issue", d.id),
            json!({"case_id": case_id, "holder_person_id": person["id"]}),
        )
        .await;
    }

    async fn take_back(&self, vakt: &Vakt, d: &Added, lost: bool) {
        self.call(
            vakt,
            &format!("/api/devices/{}/return", d.id),
            json!({"reason": "the test is over", "lost": lost}),
        )
        .await;
    }

    fn options(&self, client_id: &str, username: &str, password: &str) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", self.broker.port);
        o.set_credentials(username, password)
            .set_keep_alive(Duration::from_secs(10))
            .set_clean_session(true);
        o
    }

    /// Logs in, and gives the connection once CONNACK is in, or the refusal.
    async fn login(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
        let (client, mut eventloop) =
            AsyncClient::new(self.options(client_id, username, password), 64);
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                    Err(e) => panic!("no CONNACK: {e}"),
                }
            }
        })
        .await
        .expect("an answer to the login");
        answer.map(|()| (client, eventloop))
    }

    async fn device_logs_in(&self, id: &str, password: &str) -> bool {
        self.login(id, id, password).await.is_ok()
    }

    /// Waits until the device logs in (or is refused, `want` false); how long it took.
    async fn wait_login(&self, vakt: &Vakt, id: &str, password: &str, want: bool) -> Duration {
        let started = Instant::now();
        while self.device_logs_in(id, password).await != want {
            assert!(
                started.elapsed() < PROMPTLY,
                "{id} still {} after {PROMPTLY:?}:\n{}\n--- mosquitto ---\n{}",
                if want { "refused" } else { "logs in" },
                vakt.log_text(),
                self.broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }

    /// The device itself (firmware-sim, which derives its password on its own).
    async fn device(&self, d: &Added) -> SimDevice {
        SimDevice::connect(SimOptions {
            host: "127.0.0.1".into(),
            port: self.broker.port,
            device_id: d.id.clone(),
            key: d.key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("{} cannot connect: {e}\n{}", d.id, self.broker.log_text()))
    }
}

fn postgres_named() -> bool {
    std::env::var("VAKT_TEST_POSTGRES").is_ok_and(|v| !v.is_empty())
}

async fn panic_is_answered(site: &Site, d: &Added) {
    let device = site.device(d).await;
    let (boot, seq) = device
        .alarm("panic", Some(common::fix_near_home()), Some(80))
        .await
        .unwrap();
    loop {
        let f = device
            .next_feedback(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("no `received` for {}'s panic: {e}", d.id));
        if (f.boot, f.seq) == (boot, seq) {
            assert_eq!(f.st, "received");
            break;
        }
    }
    device.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_through_the_api_logs_in_within_5_s_with_its_derived_password_and_its_panic_is_answered(
) {
    let site = Site::start().await;
    let vakt = site.serve("vakt-1", &[]).await;
    // Before: vakt's own backend user exists (it is ready), and nothing else of vakt's.
    let before = site.broker.ctrl(&["listClients"]);

    let d = site.add(&vakt).await;
    let took = site.wait_login(&vakt, &d.id, &d.password(), true).await;
    assert!(took < PROMPTLY, "{took:?}");
    // The key itself is no password, and the login is the device's own client id only.
    assert!(!site.device_logs_in(&d.id, &d.key).await);
    assert!(
        site.login("vakt-1", &d.id, &d.password()).await.is_err(),
        "the device logged in under the backend's client id"
    );

    site.issue(&vakt, &d).await;
    panic_is_answered(&site, &d).await;

    let after = site.broker.ctrl(&["listClients"]);
    assert!(
        before.contains(ADMIN) && before.contains("vakt-1"),
        "{before}"
    );
    assert!(after.contains(&d.id) && after.contains(ADMIN), "{after}");
    assert!(vakt.metric("vakt_broker_admin_reconciliations_total").await >= 1);
    assert_eq!(vakt.metric("vakt_broker_admin_errors_total").await, 0);
    // Neither the key nor the password went to the logs.
    let logs = vakt.log_text() + &site.broker.log_text();
    assert!(!logs.contains(&d.key) && !logs.contains(&d.password()));
    assert!(!logs.contains(BACKEND_SECRET) && !logs.contains(&site.broker.admin_password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_device_and_a_lost_one_are_refused_within_5_s() {
    let site = Site::start().await;
    let vakt = site.serve("vakt-1", &[]).await;
    let returned = site.add(&vakt).await;
    let lost = site.add(&vakt).await;
    for d in [&returned, &lost] {
        site.issue(&vakt, d).await;
        site.wait_login(&vakt, &d.id, &d.password(), true).await;
    }
    // A connection that is up when the device goes is ended too.
    let (_client, mut connected) = site
        .login(&returned.id, &returned.id, &returned.password())
        .await
        .unwrap();

    site.take_back(&vakt, &returned, false).await;
    let took = site
        .wait_login(&vakt, &returned.id, &returned.password(), false)
        .await;
    assert!(took < PROMPTLY, "{took:?}");
    let cut = tokio::time::timeout(PROMPTLY, async {
        loop {
            if connected.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the returned device's connection stayed up");

    site.take_back(&vakt, &lost, true).await;
    site.wait_login(&vakt, &lost.id, &lost.password(), false)
        .await;
    // Gone from the broker altogether, rights included.
    let clients = site.broker.ctrl(&["listClients"]);
    let roles = site.broker.ctrl(&["listRoles"]);
    for d in [&returned, &lost] {
        assert!(!clients.contains(&d.id), "{clients}");
        assert!(!roles.contains(&d.id), "{roles}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_re_key_the_new_derived_password_logs_in_and_the_old_one_no_longer_does() {
    let site = Site::start().await;
    let vakt = site.serve("vakt-1", &[]).await;
    let d = site.add(&vakt).await;
    site.issue(&vakt, &d).await;
    site.wait_login(&vakt, &d.id, &d.password(), true).await;

    let rotated = site
        .call(
            &vakt,
            &format!("/api/devices/{}/rotate-key", d.id),
            json!({}),
        )
        .await;
    let new = Added {
        id: d.id.clone(),
        key: rotated["key"].as_str().unwrap().to_owned(),
    };
    // Until the device has signed with the new key, the broker holds the current key's
    // password (it holds one per device), so a device that has not heard of the new key yet
    // still gets in to hear of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(site.device_logs_in(&d.id, &d.password()).await);
    assert!(!site.device_logs_in(&d.id, &new.password()).await);

    // The device takes the new key up from its cfg and signs with it: the rotation
    // completes, and the broker gets the new key's password.
    let device = site.device(&d).await;
    let deadline = Instant::now() + WAIT;
    while device.key().to_hex() != new.key {
        assert!(
            Instant::now() < deadline,
            "the device never took the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    device.heartbeat(80, false, -70).await.unwrap();
    let took = site.wait_login(&vakt, &d.id, &new.password(), true).await;
    assert!(took < PROMPTLY, "{took:?}");
    site.wait_login(&vakt, &d.id, &d.password(), false).await;
    // The device itself was put out by the change and is back in with its new key's
    // password: its panic is answered.
    let (boot, seq) = device.alarm("panic", None, Some(80)).await.unwrap();
    loop {
        let f = device.next_feedback(Duration::from_secs(15)).await.unwrap();
        if (f.boot, f.seq) == (boot, seq) {
            assert_eq!(f.st, "received");
            break;
        }
    }
}

/// Waits for a SUBACK and gives its codes.
async fn suback(eventloop: &mut EventLoop) -> Vec<SubscribeReasonCode> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::SubAck(s)) = eventloop.poll().await.unwrap() {
                return s.return_codes;
            }
        }
    })
    .await
    .expect("a SUBACK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_on_another_devices_topics_or_subscribe_to_the_backends() {
    let site = Site::start().await;
    let vakt = site.serve("vakt-1", &[]).await;
    let attacker = site.add(&vakt).await;
    let victim = site.add(&vakt).await;
    site.issue(&vakt, &attacker).await;
    site.issue(&vakt, &victim).await;
    for d in [&attacker, &victim] {
        site.wait_login(&vakt, &d.id, &d.password(), true).await;
    }
    let (client, mut eventloop) = site
        .login(&attacker.id, &attacker.id, &attacker.password())
        .await
        .unwrap();

    // Subscriptions: none of the backend's, none of another device's, its own yes.
    let victims = |leaf: &str| format!("vakt/v1/dev/{}/{leaf}", victim.id);
    for filter in [
        "vakt/v1/dev/+/+".to_owned(),
        "$share/vakt/vakt/v1/dev/+/+".to_owned(),
        "#".to_owned(),
        "$CONTROL/dynamic-security/v1/response".to_owned(),
        victims("ack"),
        victims("alarm"),
    ] {
        client.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            suback(&mut eventloop).await,
            [SubscribeReasonCode::Failure],
            "{filter}"
        );
    }
    client
        .subscribe(format!("vakt/v1/dev/{}/ack", attacker.id), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(
        suback(&mut eventloop).await[..],
        [SubscribeReasonCode::Success(_)]
    ));

    // Publishing on the victim's topics and the downlink reaches nobody: had it reached
    // vakt, it would count as malformed (or as a bad signature).
    let forged = r#"{"boot":1,"kind":"panic","seq":1,"ts":1,"mac":"00"}"#;
    for topic in [victims("alarm"), victims("hb"), victims("cfg")] {
        client
            .publish(topic, QoS::AtLeastOnce, false, forged)
            .await
            .unwrap();
    }
    // The control topic too: no device administers the broker.
    client
        .publish(
            "$CONTROL/dynamic-security/v1",
            QoS::AtLeastOnce,
            false,
            r#"{"commands":[{"command":"deleteClient","username":"vakt-1"}]}"#,
        )
        .await
        .unwrap();
    let drive = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // The victim's own panic still goes through, after all of that.
    panic_is_answered(&site, &victim).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vakt.metric("vakt_malformed_total").await, 0);
    assert_eq!(vakt.metric("vakt_bad_signatures_total").await, 0);
    assert!(site.broker.ctrl(&["listClients"]).contains("vakt-1"));
    drive.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_vakt_was_down_reaches_the_broker_when_it_starts() {
    let site = Site::start().await;
    let vakt = site.serve("vakt-1", &[]).await;
    let d = site.add(&vakt).await;
    site.issue(&vakt, &d).await;
    site.wait_login(&vakt, &d.id, &d.password(), true).await;
    vakt.stop();

    // On the command line, with no vakt running: one device returned, one added.
    site.run(
        &["device", "return", "--id", &d.id, "--reason", "handed in"],
        None,
    );
    let printed = site.run(&["device", "add", "--id", "dev-added-offline"], None);
    let key = printed
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .trim();
    let added = Added {
        id: "dev-added-offline".into(),
        key: key.to_owned(),
    };
    // Nobody has told the broker yet.
    assert!(site.device_logs_in(&d.id, &d.password()).await);
    assert!(!site.device_logs_in(&added.id, &added.password()).await);

    let vakt = site.serve("vakt-1", &[]).await;
    site.wait_login(&vakt, &d.id, &d.password(), false).await;
    site.wait_login(&vakt, &added.id, &added.password(), true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_roles_vakt_did_not_make_are_left_alone() {
    let site = Site::start().await;
    // Another application's client, and a hand-made client under a name vakt will want.
    site.broker
        .ctrl(&["createClient", "other-app", "-p", "other-app-password"]);
    site.broker
        .ctrl(&["createClient", "dev-taken", "-p", "hand-made-password"]);
    let vakt = site.serve("vakt-1", &[]).await;
    let other = site.add(&vakt).await;
    let taken = site
        .call(
            &vakt,
            "/api/devices",
            json!({"id": "dev-taken", "kind": "alarm"}),
        )
        .await;
    let taken = Added {
        id: "dev-taken".into(),
        key: taken["key"].as_str().unwrap().to_owned(),
    };
    site.wait_login(&vakt, &other.id, &other.password(), true)
        .await;
    let deadline = Instant::now() + WAIT;
    while vakt.metric("vakt_broker_admin_conflicts_total").await < 1 {
        assert!(Instant::now() < deadline, "{}", vakt.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each keeps its own password; the device cannot take the hand-made login over.
    assert!(site.device_logs_in("other-app", "other-app-password").await);
    assert!(site.device_logs_in("dev-taken", "hand-made-password").await);
    assert!(!site.device_logs_in("dev-taken", &taken.password()).await);
    // Neither is removed when vakt reconciles everything again (at its next start).
    vakt.stop();
    let _vakt = site.serve("vakt-1", &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let clients = site.broker.ctrl(&["listClients"]);
    assert!(
        clients.contains("other-app") && clients.contains("dev-taken") && clients.contains(ADMIN),
        "{clients}"
    );
    assert!(site.device_logs_in("other-app", "other-app-password").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_broker_keep_each_others_changes() {
    if !postgres_named() {
        eprintln!("two instances share PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    }
    let site = Site::start().await;
    // Both reconcile everything every second, so each check of one instance meets the
    // other's reconciliations.
    let often = [("VAKT_MQTT_ADMIN_RECONCILE_S", "1")];
    let a = site.serve("vakt-1", &often).await;
    let b = site.serve("vakt-2", &often).await;

    let d = site.add(&a).await;
    site.issue(&a, &d).await;
    site.wait_login(&a, &d.id, &d.password(), true).await;
    panic_is_answered(&site, &d).await;

    // Returned through the other instance: refused at once, and it stays so through
    // several reconciliations of both.
    site.take_back(&b, &d, false).await;
    site.wait_login(&b, &d.id, &d.password(), false).await;
    let e = site.add(&b).await;
    site.wait_login(&b, &e.id, &e.password(), true).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!site.device_logs_in(&d.id, &d.password()).await);
        assert!(site.device_logs_in(&e.id, &e.password()).await);
    }
    for vakt in [&a, &b] {
        assert!(
            vakt.metric("vakt_broker_admin_reconciliations_total").await >= 3,
            "{}",
            vakt.name
        );
        assert_eq!(
            vakt.metric("vakt_broker_admin_errors_total").await,
            0,
            "{}",
            vakt.log_text()
        );
    }
    // Each instance made its own backend user, and neither removed the other's.
    let clients = site.broker.ctrl(&["listClients"]);
    assert!(
        clients.contains("vakt-1") && clients.contains("vakt-2"),
        "{clients}"
    );
}

#[test]
fn the_dynsec_configuration_differs_from_the_files_one_only_in_its_logins() {
    let read = |name: &str| {
        let path = format!("{}/deploy/mosquitto/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let logins = [
        "password_file",
        "acl_file",
        "use_username_as_clientid",
        "plugin",
        "plugin_opt_config_file",
    ];
    let without = |lines: Vec<String>| {
        lines
            .into_iter()
            .filter(|l| !logins.contains(&l.split_whitespace().next().unwrap_or("")))
            .collect::<Vec<_>>()
    };
    let files = read("mosquitto.conf");
    let dynsec = read("mosquitto-dynsec.conf");
    assert_eq!(without(files), without(dynsec.clone()));
    assert!(dynsec.iter().any(|l| l.starts_with("plugin ")));
    assert!(!dynsec.iter().any(|l| l.starts_with("password_file")));
}
