//! Every link encrypted, tried for real: devices on the embedded broker's TLS listener,
//! vakt's ingest on a private Mosquitto over TLS, the console over HTTPS, PostgreSQL with
//! `sslmode=verify-ca`. The certificates are made here, at test time, in a temporary
//! directory (never kept in the repository).
//!
//! Needs `mosquitto` installed for the broker tests; the PostgreSQL test needs
//! `VAKT_TEST_POSTGRES` (as in `.ci/run`) on a server with `ssl = on`, and without it says so
//! and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use firmware_sim::{DeviceKey, DeviceTls, SimDevice, SimOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vakt::config::Config;
use vakt::domain::now_ms;
use vakt::store::{Role, User};

/// A certificate authority made for one test, and the files it signs into its directory.
struct TestCa {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate and its key, as PEM files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let ca = TestCa {
            dir: tempfile::tempdir().unwrap(),
            cert,
            key,
        };
        std::fs::write(ca.ca_file(), ca.cert.pem()).unwrap();
        ca
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` (host names or IP addresses), signed by this CA.
    fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    fn device_tls(&self) -> DeviceTls {
        DeviceTls::from_ca_file(&self.ca_file()).unwrap()
    }
}

/// vakt's own configuration for a test, on the embedded broker whatever the environment says.
async fn embedded_config(dir: &Path) -> Config {
    let mut config = test_config(dir, fresh_database(dir).await);
    config.mqtt_url = None;
    config
}

fn device_options(host: &str, port: u16, d: &IssuedDevice) -> SimOptions {
    SimOptions {
        host: host.to_owned(),
        port,
        device_id: d.id.clone(),
        key: d.key.parse::<DeviceKey>().unwrap(),
        boot: 1,
    }
}

/// Raises a panic from `device` and returns once it has heard `received` for it.
async fn panic_is_answered_received(device: &SimDevice) {
    let (boot, seq) = device
        .alarm("panic", Some(fix_near_home()), Some(80))
        .await
        .unwrap();
    let feedback = device
        .next_feedback(Duration::from_secs(5))
        .await
        .expect("a signed `received`");
    assert_eq!(
        (feedback.boot, feedback.seq, feedback.st.as_str()),
        (boot, seq, "received")
    );
}

#[tokio::test]
async fn a_device_on_the_embedded_brokers_tls_listener_has_its_panic_stored_and_answered_received()
{
    let ca = TestCa::new("vakt test CA");
    let server = ca.issue("broker", &["localhost", "127.0.0.1"]);
    let app = TestApp::start_with(|c| {
        c.mqtt_url = None;
        c.mqtt_tls_cert = Some(server.cert.clone());
        c.mqtt_tls_key = Some(server.key.clone());
        c.mqtt_tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let tls_port = app
        .running
        .mqtt_tls_port
        .expect("the embedded broker listens for TLS");
    assert_ne!(tls_port, app.running.mqtt_port);
    let d = app.issued_device("Stockholm").await;

    let device =
        SimDevice::connect_tls(device_options("127.0.0.1", tls_port, &d), &ca.device_tls())
            .await
            .expect("the device connects over TLS");
    panic_is_answered_received(&device).await;

    let alert = app.wait_for_alert(&d.id, |_| true).await;
    assert_eq!(alert["kind"], "panic");
    assert_eq!(alert["priority"], 1);
    assert_eq!(alert["feedback"], "received");
    device.disconnect().await.unwrap();

    // A device provisioned with another CA does not take the broker for genuine.
    let stranger = TestCa::new("another CA");
    let refused = SimDevice::connect_tls(
        device_options("127.0.0.1", tls_port, &d),
        &stranger.device_tls(),
    )
    .await;
    assert!(refused.is_err(), "a broker the device's CA did not sign");
    // The failed handshake stopped nothing: the device's own CA still gets through.
    let again = SimDevice::connect_tls(device_options("127.0.0.1", tls_port, &d), &ca.device_tls())
        .await
        .expect("the device connects again");
    again.disconnect().await.unwrap();
}

/// A private Mosquitto with a TLS listener only.
struct TlsMosquitto {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsMosquitto {
    async fn start(ca: &TestCa, server: &Issued) -> TlsMosquitto {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 cafile {}\n\
                 certfile {}\n\
                 keyfile {}\n\
                 allow_anonymous true\n\
                 persistence false\n\
                 # Started as root, Mosquitto would switch to a user that cannot read the\n\
                 # temporary directory; as anyone else it ignores this.\n\
                 user root\n\
                 log_dest stderr\n\
                 log_type all\n",
                ca.ca_file().display(),
                server.cert.display(),
                server.key.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let mut child = Command::new(find_mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mosquitto exited ({status}):\n{}",
                    std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mosquitto does not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        TlsMosquitto { port, dir, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

/// vakt on `broker` over `mqtts://` with `ca` as the CA file.
async fn vakt_over_tls(dir: &Path, broker: &TlsMosquitto, host: &str, ca: &Path) -> vakt::Running {
    let mut config = test_config(dir, fresh_database(dir).await);
    config.mqtt_url = Some(format!("mqtts://{host}:{}", broker.port));
    config.mqtt_ca = Some(ca.to_owned());
    config.mqtt_share_group = unique("tls");
    vakt::start(config, vakt::StartOptions::default())
        .await
        .expect("vakt starts")
}

async fn broker_connected(running: &vakt::Running) -> bool {
    metric_at(running.http_addr, "vakt_broker_connected").await == Some(1)
}

#[tokio::test]
async fn the_ingest_reaches_a_mosquitto_over_tls_with_a_ca_file_and_a_device_there_is_answered() {
    let ca = TestCa::new("vakt test CA");
    let server = ca.issue("mosquitto", &["localhost", "127.0.0.1"]);
    let broker = TlsMosquitto::start(&ca, &server).await;
    let dir = tempfile::tempdir().unwrap();
    let running = vakt_over_tls(dir.path(), &broker, "127.0.0.1", &ca.ca_file()).await;
    wait_for(
        "the ingest to be connected over TLS",
        Duration::from_secs(15),
        || broker_connected(&running),
    )
    .await;

    let devices = seed_issued_devices(
        &running.state.store,
        dir.path(),
        vakt::domain::Risk::High,
        1,
    )
    .await;
    running.state.refresh_directory().await;
    let (id, key) = &devices[0];
    let device = SimDevice::connect_tls(
        SimOptions {
            host: "127.0.0.1".into(),
            port: broker.port,
            device_id: id.clone(),
            key: key.parse().unwrap(),
            boot: 1,
        },
        &ca.device_tls(),
    )
    .await
    .expect("the device connects to Mosquitto over TLS");
    panic_is_answered_received(&device).await;
    device.disconnect().await.unwrap();
    running.stop().await;
}

#[tokio::test]
async fn a_broker_whose_certificate_another_ca_signed_is_refused() {
    let ca = TestCa::new("vakt test CA");
    let server = ca.issue("mosquitto", &["localhost", "127.0.0.1"]);
    let broker = TlsMosquitto::start(&ca, &server).await;
    let other = TestCa::new("not the broker's CA");
    let dir = tempfile::tempdir().unwrap();
    let running = vakt_over_tls(dir.path(), &broker, "127.0.0.1", &other.ca_file()).await;

    // The handshake is tried, and vakt ends it: it never logs in.
    wait_for(
        "Mosquitto to see vakt end a TLS handshake",
        Duration::from_secs(10),
        || async { broker.log().contains("unknown ca") },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!broker_connected(&running).await);
    assert!(
        !broker.log().contains("New client connected"),
        "{}",
        broker.log()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_broker_whose_certificate_names_another_host_is_refused() {
    let ca = TestCa::new("vakt test CA");
    let server = ca.issue("mosquitto", &["broker.example"]);
    let broker = TlsMosquitto::start(&ca, &server).await;
    let dir = tempfile::tempdir().unwrap();
    let running = vakt_over_tls(dir.path(), &broker, "127.0.0.1", &ca.ca_file()).await;

    wait_for(
        "Mosquitto to see vakt end a TLS handshake",
        Duration::from_secs(10),
        || async { broker.log().contains("bad certificate") },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!broker_connected(&running).await);
    assert!(
        !broker.log().contains("New client connected"),
        "{}",
        broker.log()
    );
    running.stop().await;
}

#[tokio::test]
async fn the_console_over_https_answers_healthz_and_a_login_sets_a_host_prefixed_secure_cookie() {
    let ca = TestCa::new("vakt test CA");
    let server = ca.issue("console", &["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(dir.path()).await;
    config.tls_cert = Some(server.cert.clone());
    config.tls_key = Some(server.key.clone());
    let running = vakt::start(config, vakt::StartOptions::default())
        .await
        .expect("vakt starts with HTTPS");
    running
        .state
        .store
        .insert_user(
            &User {
                username: "officer".into(),
                role: Role::Officer,
                region: None,
                password_hash: vakt::credentials::hash_password("officer-password-1").await,
                totp_secret: None,
            },
            now_ms(),
            &SEEDED,
        )
        .await
        .unwrap();
    let base = format!("https://127.0.0.1:{}", running.http_addr.port());
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.ca_file()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .build()
        .unwrap();

    // A client that speaks plain HTTP to the HTTPS port fails its handshake, and the
    // server goes on serving.
    let mut plain = tokio::net::TcpStream::connect(running.http_addr)
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no plain HTTP on the HTTPS port"
    );

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);

    let login = client
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "officer", "password": "officer-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-vakt_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let token = session.split_once('=').unwrap().1.to_owned();

    let me = |cookie: String| {
        client
            .get(format!("{base}/api/me"))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(me(session).await.unwrap().status(), 200);
    // The same token under the plain name is not the session: it may have been planted.
    assert_eq!(
        me(format!("vakt_session={token}")).await.unwrap().status(),
        401
    );
    running.stop().await;
}

#[tokio::test]
async fn a_tls_setting_that_names_a_missing_file_stops_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(dir.path()).await;
    config.tls_cert = Some(dir.path().join("no-such.crt"));
    config.tls_key = Some(dir.path().join("no-such.key"));
    let err = vakt::start(config, vakt::StartOptions::default())
        .await
        .err()
        .expect("no start without the certificate");
    assert!(err.to_string().contains("VAKT_TLS_CERT"), "{err}");
    assert!(err.to_string().contains("no-such.crt"), "{err}");
}

/// The PostgreSQL server's certificate, when it speaks TLS and the file is readable here.
async fn postgres_certificate(server: &str) -> Option<PathBuf> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to the PostgreSQL server named by VAKT_TEST_POSTGRES");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if ssl != "on" {
        return None;
    }
    let file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let file = PathBuf::from(file);
    file.is_file().then_some(file)
}

#[tokio::test]
async fn postgresql_with_sslmode_verify_ca_connects_and_refuses_a_server_another_ca_signed() {
    let Some(server) = std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("this test needs PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    };
    let server = server.trim_end_matches('/');
    let Some(root) = postgres_certificate(server).await else {
        eprintln!("PostgreSQL at {server} has ssl off, or its certificate is not readable here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database(dir.path()).await;
    let with = |query: String| {
        let mut config = test_config(dir.path(), format!("{database}?{query}"));
        config.mqtt_url = None;
        config
    };

    // verify-ca with the server's (self-signed) certificate as the root.
    let running = vakt::start(
        with(format!("sslmode=verify-ca&sslrootcert={}", root.display())),
        vakt::StartOptions::default(),
    )
    .await
    .expect("vakt starts on PostgreSQL over verified TLS");
    let http = running.http_addr;
    let ready = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    running.stop().await;

    // A root that did not sign the server's certificate: no connection. sqlx adds the
    // system's roots to `sslrootcert`, and a test machine's store may hold the server's own
    // certificate (Debian links its snakeoil there), so the refusal is tried in a process
    // whose system roots are the stranger's CA alone (SSL_CERT_FILE), with the server's own
    // root as the control.
    let stranger = TestCa::new("not the database's CA");
    let migrate = |sslrootcert: &Path| {
        Command::new(env!("CARGO_BIN_EXE_vakt"))
            .arg("migrate")
            .env(
                "VAKT_DATABASE_URL",
                format!(
                    "{database}?sslmode=verify-ca&sslrootcert={}",
                    sslrootcert.display()
                ),
            )
            .env("VAKT_DATA_DIR", dir.path())
            .env("SSL_CERT_FILE", stranger.ca_file())
            .env_remove("SSL_CERT_DIR")
            .output()
            .expect("vakt runs")
    };
    let refused = migrate(&stranger.ca_file());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "connected to an unverified server"
    );
    assert!(said.contains("certificate"), "{said}");
    let control = migrate(&root);
    assert!(
        control.status.success(),
        "{}",
        String::from_utf8_lossy(&control.stderr)
    );
}
