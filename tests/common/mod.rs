//! The test harness: a real vakt (real broker, real database, real HTTP) per test.
//!
//! With no environment it runs on the embedded defaults (the embedded broker on a free port, SQLite in a
//! temporary directory). `VAKT_TEST_POSTGRES=postgres://user@host:port` gives every test a
//! fresh PostgreSQL database on that server instead; `VAKT_TEST_MQTT_URL=mqtt://host:port`
//! puts the backend and the devices on that external broker.

#![allow(dead_code)]

pub mod mosquitto;
pub mod postgres;
pub mod proxy;

use std::future::Future;
use std::time::{Duration, Instant};

use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};
use vakt::config::Config;
use vakt::domain::now_ms;
use vakt::store::{Role, User};

/// The audit entry of what a test writes straight into the store.
pub const SEEDED: vakt::store::Audit<'static> = vakt::store::Audit::new(None, "test_seed");

/// How long a test waits for the system to settle (an alert to appear, a counter to move)
/// before it fails.
pub const SETTLE: Duration = Duration::from_secs(20);

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(vakt::keys::os_random::<5>()))
}

/// A fresh database URL: a new PostgreSQL database, or a SQLite file in `dir`.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(server) => {
            let server = server.trim_end_matches('/');
            let name = unique("vakt_test").replace('-', "_");
            let admin = format!("{server}/postgres");
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the PostgreSQL server named by VAKT_TEST_POSTGRES");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            format!("{server}/{name}")
        }
        None => format!("sqlite://{}", dir.join("vakt.db").display()),
    }
}

pub fn test_config(dir: &std::path::Path, database_url: String) -> Config {
    let mut config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        mqtt_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        database_url: Some(vakt::config::Secret(database_url)),
        mqtt_client_id: unique("vakt-test-ingest"),
        ..Config::default()
    };
    if let Some(url) = std::env::var("VAKT_TEST_MQTT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        config.mqtt_url = Some(url);
        // Each test is its own deployment: its own share group, so tests do not split
        // one another's messages.
        config.mqtt_share_group = unique("vakt-test");
    }
    config
}

pub struct TestApp {
    pub running: vakt::Running,
    pub base: String,
    /// Bearer-token clients for a national officer, coordinator and admin.
    pub officer: reqwest::Client,
    pub coordinator: reqwest::Client,
    pub admin: reqwest::Client,
    pub anonymous: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub database_url: String,
}

pub struct IssuedDevice {
    pub id: String,
    pub key: String,
    pub case_id: String,
    pub person_id: String,
}

impl IssuedDevice {
    /// The MQTT password the device logs in with (derived from its key by firmware-sim's
    /// own implementation of the protocol).
    pub fn password(&self) -> String {
        device_password(&self.key)
    }
}

/// The MQTT password of the device with this key (64 hex characters), as a device derives it.
pub fn device_password(key_hex: &str) -> String {
    key_hex
        .parse::<DeviceKey>()
        .expect("a device key")
        .mqtt_password()
}

/// Home of the protected person in the seeded case (Drottninggatan, Stockholm).
pub const HOME: (f64, f64) = (59.3366, 18.0612);

/// A second instance of a test's deployment: the same database and master key, a data
/// directory of its own (PostgreSQL only: SQLite is one process per file).
pub struct OtherInstance {
    pub running: vakt::Running,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test configuration changed by `change`.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(dir.path()).await;
        Self::start_in(dir, url, change).await
    }

    /// Starts a second instance beside this one (see `OtherInstance`).
    pub async fn other_instance(&self) -> OtherInstance {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            self.dir.path().join("master.key"),
            dir.path().join("master.key"),
        )
        .unwrap();
        let running = vakt::start(
            test_config(dir.path(), self.database_url.clone()),
            vakt::StartOptions::default(),
        )
        .await
        .expect("the other instance starts");
        OtherInstance { running, _dir: dir }
    }

    /// On SQLite in its data directory, whatever `VAKT_TEST_POSTGRES` says: for tests that
    /// need the embedded database as such.
    pub async fn start_on_sqlite() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vakt.db").display());
        Self::start_in(dir, url, |_| {}).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        url: String,
        change: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(dir.path(), url.clone());
        change(&mut config);
        let running = vakt::start(config, vakt::StartOptions::default())
            .await
            .expect("vakt starts");
        let base = format!("http://{}", running.http_addr);
        let mut app = TestApp {
            base,
            officer: reqwest::Client::new(),
            coordinator: reqwest::Client::new(),
            admin: reqwest::Client::new(),
            anonymous: reqwest::Client::new(),
            running,
            dir,
            database_url: url,
        };
        app.officer = app.client_for("officer", Role::Officer, None).await;
        app.coordinator = app.client_for("coordinator", Role::Coordinator, None).await;
        app.admin = app.client_for("admin", Role::Admin, None).await;
        app.wait_until_ready().await;
        app
    }

    /// Whether the devices talk to the embedded broker (which checks topic rights itself)
    /// rather than an external one.
    pub fn embedded_broker(&self) -> bool {
        self.running.state.config.mqtt_url.is_none()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A user with a password (`{username}-password-1`) and a client holding a bearer token.
    pub async fn client_for(
        &self,
        username: &str,
        role: Role,
        region: Option<&str>,
    ) -> reqwest::Client {
        let store = &self.running.state.store;
        store
            .insert_user(
                &User {
                    username: username.into(),
                    role,
                    region: region.map(Into::into),
                    password_hash: vakt::credentials::hash_password(&format!(
                        "{username}-password-1"
                    ))
                    .await,
                    totp_secret: None,
                },
                now_ms(),
                &SEEDED,
            )
            .await
            .unwrap();
        let (token, hash) = vakt::credentials::new_token();
        store
            .insert_api_token(&hash, username, now_ms(), &SEEDED)
            .await
            .unwrap();
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

    /// A console session of the national officer: a cookie-holding client, logged in with
    /// the password as a browser would.
    pub async fn officer_session(&self) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let resp = client
            .post(self.url("/api/login"))
            .json(&json!({"username": "officer", "password": "officer-password-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the officer logs in");
        client
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let url = self.url("/readyz");
        wait_for("the service to be ready", Duration::from_secs(20), || {
            let req = client.get(&url).send();
            async move { req.await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await;
    }

    /// A person, a high-risk case in `region`, an order with a home zone, and an issued alarm
    /// device.
    pub async fn issued_device(&self, region: &str) -> IssuedDevice {
        let person: Value = self
            .post(&self.coordinator, "/api/persons", json!({
                "name": "Anna Lindqvist", "phone": "+46 70 123 45 67",
                "address": {"text": "Drottninggatan 71, Stockholm", "lat": HOME.0, "lon": HOME.1},
                "protected_identity": true, "region": region
            }))
            .await;
        let case: Value = self
            .post(
                &self.coordinator,
                "/api/cases",
                json!({
                    "reference": unique("2026"), "person_id": person["id"], "risk": "high",
                    "region": region, "response_plan": "Send a patrol at once."
                }),
            )
            .await;
        let _order: Value = self
            .post(&self.coordinator, &format!("/api/cases/{}/orders", case["id"].as_str().unwrap()), json!({
                "kind": "contact_ban",
                "restrained": {"name": "Mikael Berg", "description": "185 cm, grey hooded jacket"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
                "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0]}, "radius_m": 300}]
            }))
            .await;
        let device: Value = self
            .post(
                &self.coordinator,
                "/api/devices",
                json!({"id": unique("dev"), "kind": "alarm", "model": "T1"}),
            )
            .await;
        let id = device["id"].as_str().unwrap().to_owned();
        let _issued: Value = self
            .post(
                &self.coordinator,
                &format!("/api/devices/{id}/issue"),
                json!({
                    "case_id": case["id"], "holder_person_id": person["id"]
                }),
            )
            .await;
        IssuedDevice {
            id,
            key: device["key"].as_str().unwrap().to_owned(),
            case_id: case["id"].as_str().unwrap().to_owned(),
            person_id: person["id"].as_str().unwrap().to_owned(),
        }
    }

    /// The device, connected to the broker the backend listens on.
    pub async fn connect(&self, d: &IssuedDevice) -> SimDevice {
        SimDevice::connect(SimOptions {
            host: self.running.mqtt_host.clone(),
            port: self.running.mqtt_port,
            device_id: d.id.clone(),
            key: d.key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .expect("the device connects")
    }

    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> T {
        let resp = client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "POST {path} gave {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str) -> Value {
        let resp = client.get(self.url(path)).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "GET {path} gave {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn open_alerts(&self) -> Vec<Value> {
        self.get(&self.officer, "/api/alerts?state=open,acknowledged")
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until an alert of `device` satisfies `pred`, and returns it.
    pub async fn wait_for_alert(&self, device: &str, pred: impl Fn(&Value) -> bool) -> Value {
        // An upper bound for a loaded two-core CI machine running a dozen instances at once,
        // not a latency claim (the benchmarks measure those).
        let deadline = Instant::now() + SETTLE;
        loop {
            let alerts = self
                .get(
                    &self.officer,
                    "/api/alerts?state=open,acknowledged,resolved",
                )
                .await;
            if let Some(a) = alerts
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["device_id"] == device && pred(a))
            {
                return a.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no matching alert for {device}: {alerts}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .anonymous
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    pub async fn wait_for_metric(&self, name: &str, at_least: u64) {
        let deadline = Instant::now() + SETTLE;
        while self.metric(name).await < at_least {
            assert!(Instant::now() < deadline, "{name} never reached {at_least}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs SQL on the test's database behind the backend's back (to play the attacker).
pub async fn tamper(database_url: &str, sql: &str) {
    use sqlx::Connection;
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

/// Makes the database refuse every new audit entry, as a full disk or a broken chain would.
#[allow(dead_code)] // not every suite tampers with the audit trail
pub async fn refuse_audit_entries(database_url: &str) {
    if database_url.starts_with("postgres") {
        tamper(
            database_url,
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit entries refused'; END $$",
        )
        .await;
        tamper(
            database_url,
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        )
        .await;
    } else {
        tamper(
            database_url,
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit entries refused'); END",
        )
        .await;
    }
}

/// Lets the database take audit entries again.
#[allow(dead_code)]
pub async fn accept_audit_entries(database_url: &str) {
    let on = if database_url.starts_with("postgres") {
        " ON audit_log"
    } else {
        ""
    };
    tamper(database_url, &format!("DROP TRIGGER refuse_audit{on}")).await;
}

pub fn fix_near_home() -> firmware_sim::Fix {
    firmware_sim::Fix::from_degrees(HOME.0 + 0.0004, HOME.1, 12).unwrap()
}

/// The master key of the vakt whose data directory is `dir` (made there on first use, as
/// vakt makes it), for tests that write into its store before it starts.
pub fn vault_in(dir: &std::path::Path) -> vakt::keys::KeyVault {
    vakt::keys::KeyVault::load(None, dir).expect("the master key in the data directory")
}

/// The store of the vakt whose data directory is `dir`, opened as that vakt opens it: its
/// audit entries linked under that vakt's master key.
pub async fn open_store(dir: &std::path::Path, database_url: &str) -> vakt::store::SharedStore {
    vakt::store::open(database_url, &vault_in(dir))
        .await
        .expect("the store opens")
}

/// Written straight into the store of the vakt whose data directory is `dir`, for tests
/// that run the binary: an officer, the person `p1` with the case `c1` at `risk`, and `n`
/// alarm devices issued to it, their keys sealed as vakt seals them; with the keys in the
/// clear, for the devices.
pub async fn seed_issued_devices(
    store: &vakt::store::SharedStore,
    dir: &std::path::Path,
    risk: vakt::domain::Risk,
    n: usize,
) -> Vec<(String, String)> {
    use vakt::domain::{Case, DeviceKind, Person};
    use vakt::store::DeviceRecord;
    let now = now_ms();
    store
        .insert_user(
            &User {
                username: "officer".into(),
                role: Role::Officer,
                region: None,
                password_hash: "x".into(),
                totp_secret: None,
            },
            now,
            &SEEDED,
        )
        .await
        .unwrap();
    let person = Person {
        id: "p1".into(),
        name: "Anna".into(),
        phone: None,
        address: None,
        protected_identity: false,
        region: Some("Stockholm".into()),
    };
    store.insert_person(&person, now, &SEEDED).await.unwrap();
    let case = Case {
        id: "c1".into(),
        reference: unique("ref"),
        person_id: "p1".into(),
        risk,
        region: "Stockholm".into(),
        response_plan: None,
        relatives: vec![],
        closed_at: None,
    };
    store.insert_case(&case, now, &SEEDED).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..n {
        let id = unique("dev");
        let key = vakt::protocol::DeviceKey::generate();
        let sealed = vault_in(dir).seal(&key, &id);
        store
            .insert_device(
                &DeviceRecord::in_stock(&id, DeviceKind::Alarm, sealed, now),
                &SEEDED,
            )
            .await
            .unwrap();
        store
            .issue_device(&id, "c1", "p1", now, &SEEDED)
            .await
            .unwrap();
        devices.push((id, key.to_hex()));
    }
    devices
}

/// A port nothing listens on right now, for a process the test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Mosquitto binary, for tests that run private brokers of their own.
pub fn find_mosquitto() -> std::path::PathBuf {
    // Debian puts the broker in /usr/sbin, which an ordinary user's PATH may lack.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto is not installed, and this test needs a real Mosquitto: \
                 install it (Debian/Ubuntu: apt-get install mosquitto) or put it on PATH"
            )
        })
}

/// A shipped Mosquitto configuration (`deploy/mosquitto/<shipped>`) as a test's private
/// broker runs it: `listeners` (this test's own ports and certificates) instead of the
/// deployment's, each file-naming line (`password_file`, `plugin`, …) replaced as `files`
/// says, nothing kept on disk, logs to standard error, and root kept: started as root,
/// Mosquitto would switch to its own user, which cannot read the test's 0600 files.
#[allow(dead_code)] // not every suite runs a private broker
pub fn mosquitto_conf(shipped: &str, listeners: &str, files: &[(&str, String)]) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/mosquitto")
            .join(shipped),
    )
    .unwrap_or_else(|e| panic!("deploy/mosquitto/{shipped}: {e}"));
    let mut conf = listeners.to_owned();
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        if let Some((_, value)) = files.iter().find(|(k, _)| *k == key) {
            conf.push_str(&format!("{key} {value}\n"));
            continue;
        }
        match key {
            "listener"
            | "cafile"
            | "certfile"
            | "keyfile"
            | "tls_version"
            | "persistence"
            | "persistence_location"
            | "log_dest"
            | "user" => {}
            _ => {
                conf.push_str(line);
                conf.push('\n');
            }
        }
    }
    conf.push_str("user root\npersistence false\nlog_dest stderr\n");
    conf
}

/// Mosquitto's dynamic-security plugin where this machine has it.
#[allow(dead_code)]
pub fn dynsec_plugin() -> std::path::PathBuf {
    let mut candidates = vec![std::path::PathBuf::from(
        "/usr/lib/mosquitto_dynamic_security.so",
    )];
    for dir in ["/usr/lib", "/usr/local/lib", "/usr/lib64"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            candidates.extend(
                entries
                    .flatten()
                    .map(|e| e.path().join("mosquitto_dynamic_security.so")),
            );
        }
        candidates.push(std::path::Path::new(dir).join("mosquitto_dynamic_security.so"));
    }
    candidates.into_iter().find(|p| p.is_file()).expect(
        "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is installed \
         (Debian: mosquitto)",
    )
}

/// One counter of the vakt listening on `http`, or `None` while it does not answer.
pub async fn metric_at(http: std::net::SocketAddr, name: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}
