//! The production topology of `docker-compose.yml`, started without containers: Mosquitto
//! with TLS only and the dynamic-security plugin, PostgreSQL over TLS, and two `vakt serve`
//! processes (the production build's way of running) that share one master key file,
//! each with HTTPS on its console and a plain metrics port for its health check.
//!
//! Everything is made the way the compose file makes it: the certificates by
//! `deploy/certs/make-certs.sh`, the plugin's file by `mosquitto_ctrl dynsec init`, the
//! administrator narrowed by the same `removeRoleACL` commands, secrets handed over as
//! `VAKT_*_FILE`, readiness asked with `vakt health`. A device added through the API must
//! log in over TLS with its derived password within 5 s, its panic must reach the live
//! streams of both instances, and once returned the broker must refuse it within 5 s.
//!
//! Needs `VAKT_TEST_POSTGRES` (as `.ci/run` sets it) and a PostgreSQL with TLS on (Debian's
//! default: `ssl = on` with the snakeoil certificate); without the variable it says so and
//! passes. Also `mosquitto`, `mosquitto_ctrl` and the plugin, and `openssl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{find_mosquitto, free_port, unique};
use firmware_sim::{DeviceKey, DeviceTls, SimDevice, SimOptions};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

const ADMIN: &str = "vakt-admin";
/// How soon the broker must follow the register.
const PROMPTLY: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
const HOME: (f64, f64) = (59.3366, 18.0612);
/// PostgreSQL's own certificate on a Debian machine, self-signed: the root to check it by.
const POSTGRES_ROOT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a program to its end; what it printed. It must succeed.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// Mosquitto as compose runs it: `deploy/mosquitto/mosquitto-dynsec.conf` with one TLS
/// listener of this test's, the plugin where this machine has it, nothing kept on disk.
struct Broker {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    async fn start(dir: &Path, certs: &Path, admin_password: &Path) -> Broker {
        let file = dir.join("dynamic-security.json");
        let password = std::fs::read_to_string(admin_password).unwrap();
        // As compose's `mosquitto-init`.
        run(
            Command::new("mosquitto_ctrl")
                .args(["dynsec", "init"])
                .arg(&file)
                .args([ADMIN, password.trim()]),
            "mosquitto_ctrl dynsec init",
        );
        let port = free_port();
        let conf = common::mosquitto_conf(
            "mosquitto-dynsec.conf",
            &format!(
                "listener {port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\ntls_version tlsv1.2\n",
                ca = certs.join("ca.crt").display(),
                crt = certs.join("server.crt").display(),
                key = certs.join("server.key").display(),
            ),
            &[
                ("plugin", common::dynsec_plugin().display().to_string()),
                ("plugin_opt_config_file", file.display().to_string()),
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
        let broker = Broker { port, child, log };
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
        // As compose's `mosquitto-narrow`: the administrator keeps only the plugin's topics.
        // Mosquitto 2.0 ends the administrator's own connection when its role changes, so
        // each `mosquitto_ctrl` waits out its answer (about 10 s): all five at once.
        let ca = certs.join("ca.crt");
        let port_text = port.to_string();
        std::thread::scope(|scope| {
            for (i, rule) in [
                ["publishClientReceive", "#"],
                ["subscribePattern", "#"],
                ["unsubscribePattern", "#"],
                ["publishClientReceive", "$SYS/#"],
                ["subscribePattern", "$SYS/#"],
            ]
            .into_iter()
            .enumerate()
            {
                let (ca, port_text, password) = (&ca, &port_text, password.trim());
                scope.spawn(move || {
                    run(
                        Command::new("mosquitto_ctrl")
                            .args(["-h", "localhost", "-p", port_text])
                            .arg("--cafile")
                            .arg(ca)
                            .args(["-u", ADMIN, "-P", password, "-i", &format!("narrow-{i}")])
                            .args(["dynsec", "removeRoleACL", "admin"])
                            .args(rule),
                        "mosquitto_ctrl dynsec removeRoleACL",
                    )
                });
            }
        });
        broker
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One `vakt serve`.
struct Vakt {
    name: &'static str,
    http: u16,
    metrics: u16,
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
        format!("https://localhost:{}{path}", self.http)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The deployment: its files, its broker and its database.
struct Site {
    dir: tempfile::TempDir,
    certs: PathBuf,
    env: Vec<(String, String)>,
    broker: Broker,
    database_url: String,
    /// Trusts the deployment's private CA only.
    https: reqwest::Client,
}

impl Site {
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
        cmd.current_dir(self.dir.path()).env_remove("VAKT_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn vakt(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = self
            .command()
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
        assert!(
            out.status.success(),
            "vakt {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A client acting with a bearer token of a user made on the command line.
    fn user(&self, name: &str, role: &str) -> reqwest::Client {
        self.vakt(
            &["user", "add", "--username", name, "--role", role],
            Some("correct horse battery staple\n"),
        );
        let token = self.vakt(&["token", "create", "--username", name], None);
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", token.lines().last().unwrap().trim()))
                .unwrap(),
        );
        self.https_builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    fn https_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.certs.join("ca.crt")).unwrap())
            .unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
    }

    /// `vakt serve` as the broker user `name`, once `vakt health` says it is ready.
    async fn serve(&self, name: &'static str) -> Vakt {
        let (http, metrics) = (free_port(), free_port());
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command()
            .env("VAKT_MQTT_USERNAME", name)
            .env("VAKT_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("VAKT_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("vakt serve starts");
        let vakt = Vakt {
            name,
            http,
            metrics,
            child,
            log,
        };
        // The image's health check: `vakt health` with the instance's own settings.
        let deadline = Instant::now() + WAIT;
        loop {
            let health = self
                .command()
                .env("VAKT_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
                .arg("health")
                .output()
                .unwrap();
            if health.status.success() {
                return vakt;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not healthy: {}\n{}\n--- mosquitto ---\n{}",
                String::from_utf8_lossy(&health.stdout),
                vakt.log_text(),
                self.broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(&self, client: &reqwest::Client, vakt: &Vakt, path: &str, body: Value) -> Value {
        let resp = client
            .post(vakt.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(
            status.is_success(),
            "POST {path} on {}: {status} {text}",
            vakt.name
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn device_tls(&self) -> DeviceTls {
        DeviceTls::from_ca_file(&self.certs.join("ca.crt")).unwrap()
    }

    /// The device logging in over TLS as itself, with the password firmware-sim derives.
    async fn connect(&self, id: &str, key: &str, boot: u32) -> anyhow::Result<SimDevice> {
        SimDevice::connect_tls(
            SimOptions {
                host: "localhost".into(),
                port: self.broker.port,
                device_id: id.to_owned(),
                key: key.parse::<DeviceKey>().unwrap(),
                boot,
            },
            &self.device_tls(),
        )
        .await
    }
}

/// Reads a console's live stream until an event names `needle`.
async fn stream_shows(
    client: reqwest::Client,
    url: String,
    needle: String,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<Duration, String> {
    let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    let _ = ready.send(());
    let started = Instant::now();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(WAIT, body.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk.map_err(|e| e.to_string())?));
        if seen.contains(&needle) {
            return Ok(started.elapsed());
        }
    }
    Err(format!("{url} never showed {needle}: {seen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_topology_takes_a_device_from_its_issue_over_tls_to_its_return() {
    if std::env::var("VAKT_TEST_POSTGRES").is_ok_and(|v| v.is_empty())
        || std::env::var("VAKT_TEST_POSTGRES").is_err()
    {
        eprintln!("VAKT_TEST_POSTGRES is not set: the production topology needs PostgreSQL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();

    // Certificates, as compose's `certs` service makes them.
    let certs = dir.path().join("certs");
    run(
        Command::new("sh")
            .arg(repo("deploy/certs/make-certs.sh"))
            .arg(&certs)
            .args(["server:localhost,127.0.0.1", "vakt:localhost,127.0.0.1"]),
        "deploy/certs/make-certs.sh",
    );

    // Secrets, one file each, as compose hands them over; one master key for both.
    eprintln!("{:?}: certificates made", t0.elapsed());
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let database = common::fresh_database(dir.path()).await;
    let database_url = format!("{database}?sslmode=verify-ca&sslrootcert={POSTGRES_ROOT}");
    let files = [
        (
            "VAKT_MASTER_KEY_FILE",
            write_secret(
                &secrets,
                "master-key",
                &hex::encode(vakt::keys::os_random::<32>()),
            ),
        ),
        (
            "VAKT_MQTT_PASSWORD_FILE",
            write_secret(&secrets, "mqtt-password", &unique("backend")),
        ),
        (
            "VAKT_MQTT_ADMIN_PASSWORD_FILE",
            write_secret(&secrets, "mqtt-admin-password", &unique("admin")),
        ),
        (
            "VAKT_DATABASE_URL_FILE",
            write_secret(&secrets, "database-url", &database_url),
        ),
    ];
    eprintln!("{:?}: database made", t0.elapsed());
    let broker = Broker::start(dir.path(), &certs, &files[2].1).await;

    let mut env: Vec<(String, String)> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
    for (k, v) in [
        (
            "VAKT_MQTT_URL",
            format!("mqtts://localhost:{}", broker.port),
        ),
        ("VAKT_MQTT_CA", certs.join("ca.crt").display().to_string()),
        ("VAKT_MQTT_BROKER_ADMIN", "dynsec".into()),
        ("VAKT_MQTT_ADMIN_USERNAME", ADMIN.into()),
        (
            "VAKT_TLS_CERT",
            certs.join("vakt.crt").display().to_string(),
        ),
        ("VAKT_TLS_KEY", certs.join("vakt.key").display().to_string()),
        ("VAKT_LOG_FORMAT", "json".into()),
        ("VAKT_LOG", "info,rumqttc=warn,sqlx=warn".into()),
        (
            "VAKT_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
    ] {
        env.push((k.to_owned(), v));
    }
    // This test and the compose file set the same settings: the two stay one topology.
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    for (k, _) in env.iter().filter(|(k, _)| k != "VAKT_DATA_DIR") {
        assert!(
            compose.contains(&format!("{k}:")),
            "docker-compose.yml does not set {k}, which the production topology needs"
        );
    }

    let site = Site {
        dir,
        certs,
        env,
        broker,
        database_url: database.clone(),
        https: reqwest::Client::new(),
    };
    let site = Site {
        https: site.https_builder().build().unwrap(),
        ..site
    };
    eprintln!("{:?}: broker up", t0.elapsed());
    let officer = site.user("officer", "officer");
    let coordinator = site.user("coord", "coordinator");

    eprintln!("{:?}: users made", t0.elapsed());
    let vakt1 = site.serve("vakt-1").await;
    let vakt2 = site.serve("vakt-2").await;
    eprintln!("{:?}: both instances healthy", t0.elapsed());

    // The consoles answer over HTTPS only, with a certificate of the deployment's CA.
    for v in [&vakt1, &vakt2] {
        let health = site.https.get(v.url("/healthz")).send().await.unwrap();
        assert!(
            health.status().is_success(),
            "{}: {}",
            v.name,
            health.status()
        );
        assert!(
            reqwest::get(format!("http://127.0.0.1:{}/healthz", v.http))
                .await
                .is_err(),
            "{} answers plain HTTP on its console port",
            v.name
        );
    }

    // A device added and issued through the API of the first instance.
    let added = site
        .post(
            &coordinator,
            &vakt1,
            "/api/devices",
            json!({"id": unique("dev"), "kind": "alarm", "model": "VA-200"}),
        )
        .await;
    let added_at = Instant::now();
    let id = added["id"].as_str().unwrap().to_owned();
    let key = added["key"].as_str().unwrap().to_owned();
    let person = site
        .post(
            &coordinator,
            &vakt1,
            "/api/persons",
            json!({
                "name": "Anna Lindqvist", "phone": "+46 70 123 45 67",
                "address": {"text": "Drottninggatan 71, Stockholm", "lat": HOME.0, "lon": HOME.1},
                "protected_identity": true, "region": "Nord"
            }),
        )
        .await;
    let case = site
        .post(
            &coordinator,
            &vakt1,
            "/api/cases",
            json!({
                "reference": unique("2026"), "person_id": person["id"], "risk": "high",
                "region": "Nord", "response_plan": "Send a patrol at once."
            }),
        )
        .await;
    site.post(
        &coordinator,
        &vakt1,
        &format!("/api/devices/{id}/issue"),
        json!({"case_id": case["id"], "holder_person_id": person["id"]}),
    )
    .await;

    // It logs in over TLS with its derived password within 5 s of being added.
    let device = loop {
        match site.connect(&id, &key, 1).await {
            Ok(device) => break device,
            Err(e) => {
                assert!(
                    added_at.elapsed() < PROMPTLY,
                    "{id} cannot log in {PROMPTLY:?} after it was added: {e:#}\n{}\n--- mosquitto ---\n{}",
                    vakt1.log_text(),
                    site.broker.log_text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    eprintln!("{id} logged in {:?} after it was added", added_at.elapsed());

    // Both consoles watch; the panic reaches both live streams.
    let mut watchers = Vec::new();
    for v in [&vakt1, &vakt2] {
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        watchers.push((
            v.name,
            tokio::spawn(stream_shows(
                officer.clone(),
                v.url("/api/alerts/stream"),
                id.clone(),
                ready,
            )),
        ));
        is_ready.await.expect("the live stream opens");
    }
    let (boot, seq) = device
        .alarm("panic", Some(common::fix_near_home()), Some(80))
        .await
        .unwrap();
    loop {
        let f = device
            .next_feedback(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("no `received` for the panic: {e}\n{}", vakt1.log_text()));
        if (f.boot, f.seq) == (boot, seq) {
            assert_eq!(f.st, "received");
            break;
        }
    }
    for (name, watcher) in watchers {
        let took = watcher
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}'s console: {e}"));
        eprintln!("{name}'s console showed the panic {took:?} after its stream opened");
    }

    // Metrics on the operations port of their own, not on the console's.
    for v in [&vakt1, &vakt2] {
        let addr = format!("127.0.0.1:{}", v.metrics).parse().unwrap();
        assert_eq!(
            common::metric_at(addr, "vakt_ready").await,
            Some(1),
            "{}'s metrics port",
            v.name
        );
        let console = site.https.get(v.url("/metrics")).send().await.unwrap();
        assert_eq!(
            console.status(),
            reqwest::StatusCode::NOT_FOUND,
            "{}",
            v.name
        );
    }

    // Returned through the other instance: within 5 s the broker refuses its login.
    site.post(
        &coordinator,
        &vakt2,
        &format!("/api/devices/{id}/return"),
        json!({"reason": "the holder moved abroad", "lost": false}),
    )
    .await;
    let returned_at = Instant::now();
    // Dropped, not disconnected: the broker may have cut it already, and a DISCONNECT on a
    // cut link waits out its timeout.
    drop(device);
    loop {
        match site.connect(&id, &key, 2).await {
            // Refused by the broker, not merely unanswered.
            Err(e) if format!("{e:#}").contains("NotAuthorized") => {
                assert!(
                    returned_at.elapsed() < PROMPTLY,
                    "{id} refused only {:?} after its return",
                    returned_at.elapsed()
                );
                eprintln!("{id}'s login after its return: {e:#}");
                break;
            }
            // Let in and then cut as the broker removed it: the next try is answered.
            Err(e) => {
                assert!(
                    returned_at.elapsed() < PROMPTLY,
                    "{id} not refused {PROMPTLY:?} after its return: {e:#}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(still) => {
                drop(still);
                assert!(
                    returned_at.elapsed() < PROMPTLY,
                    "{id} still logs in {PROMPTLY:?} after its return:\n{}\n--- mosquitto ---\n{}",
                    vakt2.log_text(),
                    site.broker.log_text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("{id} refused {:?} after its return", returned_at.elapsed());

    eprintln!("{:?}: returned", t0.elapsed());
    // Every connection vakt holds to its database is encrypted.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&site.database_url)
        .await
        .unwrap();
    let name = site.database_url.rsplit('/').next().unwrap().to_owned();
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        encrypted >= 2,
        "vakt's database connections over TLS: {encrypted}"
    );
    assert_eq!(plain, 0, "vakt holds database connections without TLS");

    // The secrets came from files: none of them is in a log line or an argument.
    for v in [&vakt1, &vakt2] {
        let log = v.log_text();
        for (_, file) in &files {
            let secret = std::fs::read_to_string(file).unwrap();
            let secret = secret.trim();
            let shown = if secret.contains("://") {
                // The database URL's password is what must not show.
                "postgres:postgres@".to_owned()
            } else {
                secret.to_owned()
            };
            assert!(!log.contains(&shown), "{}'s log shows a secret", v.name);
        }
        // JSON lines, as an operations team's log pipeline reads them.
        let first = log.lines().next().unwrap_or_default();
        assert!(
            serde_json::from_str::<Value>(first).is_ok(),
            "{}'s log is not JSON: {first}",
            v.name
        );
    }
}
