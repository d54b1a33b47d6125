//! The target of the attacks: the real `vakt` binary, started as an operator would start it,
//! in the two ways it is deployed.
//!
//! - **Embedded**: `vakt serve` with its own MQTT broker and SQLite, as `vakt demo` runs.
//! - **Mosquitto and PostgreSQL**: a private Mosquitto configured from
//!   `deploy/mosquitto/mosquitto.conf` with the password file and ACL that
//!   `vakt broker mosquitto-files` writes, and a fresh PostgreSQL database; vakt connects to
//!   both. It needs `VAKT_TEST_POSTGRES` (as `.ci/run` sets it); without it these tests say
//!   so and pass, since the embedded run is the README's test command.
//!
//! Users are made with `vakt user add` and `vakt token create`, devices through the API:
//! nothing is written behind the binary's back.

#![allow(dead_code)] // each attack uses a part of the harness

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{find_mosquitto, free_port, unique};

pub const PASSWORD: &str = "correct horse battery staple";
/// The backend's own login on the broker (Mosquitto topology).
pub const BACKEND_USER: &str = "vakt-backend";
const BACKEND_PASSWORD: &str = "backend-password-for-the-security-suite";
/// Home of the protected person in every seeded case (Drottninggatan, Stockholm).
pub const HOME: (f64, f64) = (59.3366, 18.0612);
const WAIT: Duration = Duration::from_secs(20);

/// Held by an attack while it measures how long an alarm waits (floods, takeovers): the
/// suite's tests run in parallel on two cores, and one flood must not be timed against
/// another's load. `let _alone = ALONE.lock().await;` before starting the target.
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Embedded,
    MosquittoPostgres,
}

/// Who exists on every target: an admin, and per region (`Nord`, `Syd`) a coordinator and
/// an officer, and a national officer. Admins and coordinators have a second factor.
pub const USERS: [(&str, &str, Option<&str>); 6] = [
    ("boss", "admin", None),
    ("coord-nord", "coordinator", Some("Nord")),
    ("coord-syd", "coordinator", Some("Syd")),
    ("officer-nord", "officer", Some("Nord")),
    ("officer-syd", "officer", Some("Syd")),
    ("officer", "officer", None),
];

/// A device issued to a protected person's case.
#[derive(Clone, Debug)]
pub struct Issued {
    pub id: String,
    pub key: String,
    pub case_id: String,
    pub person_id: String,
    pub region: String,
}

impl Issued {
    /// The MQTT password the device logs in with: derived from its key, as a device (here
    /// firmware-sim's own implementation) derives it. A stolen key gives this too.
    pub fn password(&self) -> String {
        crate::common::device_password(&self.key)
    }
}

pub struct Target {
    pub topology: Topology,
    pub base: String,
    pub mqtt_port: u16,
    pub database_url: String,
    /// Bearer-token clients by username.
    clients: HashMap<String, reqwest::Client>,
    totp_secrets: HashMap<String, String>,
    pub anonymous: reqwest::Client,
    env: Vec<(String, String)>,
    vakt: Child,
    vakt_log: PathBuf,
    mosquitto: Option<Mosquitto>,
    dir: tempfile::TempDir,
}

struct Mosquitto {
    child: Child,
    log: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.vakt.kill();
        let _ = self.vakt.wait();
        if let Some(m) = &mut self.mosquitto {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

/// Runs `attack` against both topologies (the second only where PostgreSQL is named).
#[macro_export]
macro_rules! on_both {
    ($embedded:ident, $mosquitto:ident, $attack:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            let target = $crate::target::Target::start($crate::target::Topology::Embedded).await;
            $attack(&target).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mosquitto() {
            let Some(target) = $crate::target::Target::start_if_possible(
                $crate::target::Topology::MosquittoPostgres,
            )
            .await
            else {
                return;
            };
            $attack(&target).await;
        }
    };
}

impl Target {
    /// Starts the target, or says why it cannot (no PostgreSQL named) and gives `None`.
    pub async fn start_if_possible(topology: Topology) -> Option<Target> {
        if topology == Topology::MosquittoPostgres && postgres_server().is_none() {
            eprintln!("skipped on Mosquitto and PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
            return None;
        }
        Some(Target::start(topology).await)
    }

    pub async fn start(topology: Topology) -> Target {
        Target::start_with(topology, &[]).await
    }

    /// Starts the target with extra `VAKT_*` variables (or `RUST_LOG`-like ones).
    pub async fn start_with(topology: Topology, extra_env: &[(&str, &str)]) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let database_url = match topology {
            Topology::Embedded => format!("sqlite://{}", dir.path().join("vakt.db").display()),
            Topology::MosquittoPostgres => fresh_postgres_database().await,
        };
        let mut env: Vec<(String, String)> = vec![
            (
                "VAKT_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("VAKT_HTTP_ADDR".into(), format!("127.0.0.1:{http_port}")),
            ("VAKT_DATABASE_URL".into(), database_url.clone()),
            ("VAKT_LOG".into(), "info,rumqttc=warn,sqlx=warn".into()),
        ];
        std::fs::create_dir(dir.path().join("data")).unwrap();

        // Users first: they also create the schema.
        let mut totp_secrets = HashMap::new();
        let mut clients = HashMap::new();
        for (username, role, region) in USERS {
            let mut args = vec!["user", "add", "--username", username, "--role", role];
            if let Some(r) = region {
                args.extend(["--region", r]);
            }
            let out = run_vakt(dir.path(), &env, &args, Some(&format!("{PASSWORD}\n")));
            if let Some(secret) = out
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("secret="))
                .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
            {
                totp_secrets.insert(username.to_owned(), secret);
            }
            let token = run_vakt(
                dir.path(),
                &env,
                &["token", "create", "--username", username],
                None,
            );
            let token = token.lines().last().unwrap().trim().to_owned();
            clients.insert(username.to_owned(), bearer_client(&token));
        }

        let (mqtt_port, mosquitto) = match topology {
            Topology::Embedded => {
                let port = free_port();
                env.push(("VAKT_MQTT_LISTEN".into(), format!("127.0.0.1:{port}")));
                (port, None)
            }
            Topology::MosquittoPostgres => {
                env.push(("VAKT_MQTT_USERNAME".into(), BACKEND_USER.into()));
                env.push(("VAKT_MQTT_PASSWORD".into(), BACKEND_PASSWORD.into()));
                env.push(("VAKT_MQTT_CLIENT_ID".into(), BACKEND_USER.into()));
                let (port, m) = start_mosquitto(dir.path(), &env).await;
                env.push(("VAKT_MQTT_URL".into(), format!("mqtt://127.0.0.1:{port}")));
                (port, Some(m))
            }
        };
        for (k, v) in extra_env {
            env.push(((*k).into(), (*v).into()));
        }

        let vakt_log = dir.path().join("vakt.log");
        let vakt = spawn_vakt(dir.path(), &env, &vakt_log);
        let target = Target {
            topology,
            base: format!("http://127.0.0.1:{http_port}"),
            mqtt_port,
            database_url,
            clients,
            totp_secrets,
            anonymous: reqwest::Client::new(),
            env,
            vakt,
            vakt_log,
            mosquitto,
            dir,
        };
        target.wait_until_ready().await;
        target
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = self
                .anonymous
                .get(self.url("/readyz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vakt is not ready after {WAIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The bearer-token client of one of [`USERS`].
    pub fn client(&self, username: &str) -> &reqwest::Client {
        self.clients
            .get(username)
            .unwrap_or_else(|| panic!("no user {username} on the target"))
    }

    /// A fresh one-time code for a user with a second factor, for a password login.
    pub fn totp(&self, username: &str) -> Option<String> {
        let secret = self.totp_secrets.get(username)?;
        let step = vakt::domain::now_ms() / 30_000;
        vakt::credentials::totp::code_at(secret, step)
    }

    /// The one-time-code secret `vakt user add` printed for a user with a second factor.
    pub fn totp_secret(&self, username: &str) -> String {
        self.totp_secrets
            .get(username)
            .unwrap_or_else(|| panic!("{username} has no second factor"))
            .clone()
    }

    /// What vakt and (where it runs) Mosquitto have logged so far.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.vakt_log).unwrap_or_default();
        if let Some(m) = &self.mosquitto {
            text.push_str("\n--- mosquitto ---\n");
            text.push_str(&std::fs::read_to_string(&m.log).unwrap_or_default());
        }
        text
    }

    /// Any request as `user` (`None`: no credentials); the status and the body as JSON
    /// (`Value::Null` for an empty or non-JSON body).
    pub async fn call(
        &self,
        user: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let client = user.map_or(&self.anonymous, |u| self.client(u));
        let mut req = client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request that must succeed.
    pub async fn ok(&self, user: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(Some(user), method.clone(), path, body).await;
        assert!(
            status.is_success(),
            "{method} {path} as {user} gave {status}: {value}"
        );
        value
    }

    pub async fn get(&self, user: &str, path: &str) -> Value {
        self.ok(user, Method::GET, path, None).await
    }

    /// A protected person in `region` with a high-risk case, a contact ban with a home zone,
    /// and an alarm device issued to them; on Mosquitto the broker's files are written again
    /// and reloaded so the device can log in, as the operator's procedure says.
    pub async fn issue_device(&self, region: &str) -> Issued {
        let coordinator = match region {
            "Nord" => "coord-nord",
            "Syd" => "coord-syd",
            other => panic!("no coordinator for region {other}"),
        };
        let post = |path: String, body: Value| async move {
            self.ok(coordinator, Method::POST, &path, Some(body)).await
        };
        let person = post(
            "/api/persons".into(),
            json!({
                "name": "Anna Lindqvist", "phone": "+46 70 123 45 67",
                "address": {"text": "Drottninggatan 71, Stockholm", "lat": HOME.0, "lon": HOME.1},
                "protected_identity": true, "region": region
            }),
        )
        .await;
        let case = post(
            "/api/cases".into(),
            json!({
                "reference": unique("2026"), "person_id": person["id"], "risk": "high",
                "region": region,
                "response_plan": "Call Anna on +46 70 123 45 67, then send a patrol.",
                "relatives": [{"name": "Erik Lindqvist", "relation": "son", "phone": "+46 70 765 43 21"}]
            }),
        )
        .await;
        let case_id = case["id"].as_str().unwrap().to_owned();
        post(
            format!("/api/cases/{case_id}/orders"),
            json!({
                "kind": "contact_ban",
                "restrained": {"name": "Mikael Berg", "description": "185 cm, grey hooded jacket"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
                "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0]}, "radius_m": 300}]
            }),
        )
        .await;
        let device = post(
            "/api/devices".into(),
            json!({"id": unique("dev"), "kind": "alarm", "model": "T1"}),
        )
        .await;
        let id = device["id"].as_str().unwrap().to_owned();
        post(
            format!("/api/devices/{id}/issue"),
            json!({"case_id": case_id, "holder_person_id": person["id"]}),
        )
        .await;
        let issued = Issued {
            id,
            key: device["key"].as_str().unwrap().to_owned(),
            case_id,
            person_id: person["id"].as_str().unwrap().to_owned(),
            region: region.to_owned(),
        };
        self.reload_broker_files().await;
        issued
    }

    /// On Mosquitto: `vakt broker mosquitto-files`, then SIGHUP, then a moment for the
    /// reload. On the embedded broker the register is read live and this does nothing.
    pub async fn reload_broker_files(&self) {
        let Some(m) = &self.mosquitto else { return };
        write_mosquitto_files(self.dir.path(), &self.env);
        let hup = Command::new("kill")
            .args(["-HUP", &m.child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        // Mosquitto reloads on its next loop; a login right after the signal may still meet
        // the old password file.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// An honest device of the protocol (firmware-sim), logged in and subscribed.
    pub async fn device(&self, d: &Issued) -> SimDevice {
        self.device_booted(d, 1).await
    }

    pub async fn device_booted(&self, d: &Issued, boot: u32) -> SimDevice {
        let deadline = Instant::now() + WAIT;
        loop {
            match SimDevice::connect(SimOptions {
                host: "127.0.0.1".into(),
                port: self.mqtt_port,
                device_id: d.id.clone(),
                key: d.key.parse::<DeviceKey>().unwrap(),
                boot,
            })
            .await
            {
                Ok(dev) => return dev,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{} cannot connect: {e}\n{}",
                    d.id,
                    self.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A raw MQTT client for the attacker, with whatever identity they choose.
    pub fn mqtt_options(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.mqtt_port);
        o.set_credentials(username, password);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(64 * 1024, 64 * 1024);
        o
    }

    /// Alerts in every state, as the national officer sees them.
    pub async fn alerts(&self) -> Vec<Value> {
        self.get("officer", "/api/alerts?state=open,acknowledged,resolved")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until an alert of `device` satisfies `pred`, and returns it.
    pub async fn wait_for_alert(&self, device: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = self
                .alerts()
                .await
                .into_iter()
                .find(|a| a["device_id"] == device && pred(a))
            {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no matching alert for {device}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One counter (a line `name value` of /metrics), 0 when it is absent.
    pub async fn metric(&self, name: &str) -> u64 {
        let http = self.base.trim_start_matches("http://").parse().unwrap();
        crate::common::metric_at(http, name).await.unwrap_or(0)
    }

    /// Security events as the admin sees them.
    pub async fn security_events(&self) -> Vec<Value> {
        let v = self.get("boss", "/api/security-events").await;
        v.as_array()
            .cloned()
            .or_else(|| v["events"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Whether the backend still answers `/readyz`.
    pub async fn ready(&self) -> bool {
        self.anonymous
            .get(self.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }
}

fn postgres_server() -> Option<String> {
    std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
}

async fn fresh_postgres_database() -> String {
    let server = postgres_server().expect("VAKT_TEST_POSTGRES names the PostgreSQL server");
    let server = server.trim_end_matches('/');
    let name = unique("vakt_security").replace('-', "_");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to the PostgreSQL server named by VAKT_TEST_POSTGRES");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    format!("{server}/{name}")
}

fn vakt_command(dir: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
    cmd.current_dir(dir).env_remove("VAKT_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a `vakt` command to its end and gives what it printed; it must succeed.
fn run_vakt(dir: &Path, env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> String {
    let mut child = vakt_command(dir, env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vakt runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "vakt {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn spawn_vakt(dir: &Path, env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    vakt_command(dir, env)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("vakt serve starts")
}

fn write_mosquitto_files(dir: &Path, env: &[(String, String)]) {
    let out = dir.join("mosquitto");
    std::fs::create_dir_all(&out).unwrap();
    run_vakt(
        dir,
        env,
        &["broker", "mosquitto-files", "--out", out.to_str().unwrap()],
        None,
    );
}

/// A private Mosquitto with the deployment's configuration: `deploy/mosquitto/mosquitto.conf`
/// with its listeners, certificates and paths replaced by this test's own.
async fn start_mosquitto(dir: &Path, env: &[(String, String)]) -> (u16, Mosquitto) {
    write_mosquitto_files(dir, env);
    let port = free_port();
    let auth = dir.join("mosquitto");
    let conf = crate::common::mosquitto_conf(
        "mosquitto.conf",
        &format!("listener {port} 127.0.0.1\n"),
        &[
            ("password_file", auth.join("passwd").display().to_string()),
            ("acl_file", auth.join("acl").display().to_string()),
        ],
    );
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.join("mosquitto.log");
    let child = Command::new(find_mosquitto())
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("mosquitto starts");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "mosquitto does not listen:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (port, Mosquitto { child, log })
}

fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
