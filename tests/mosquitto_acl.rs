//! External broker hardening, tried for real: the real `vakt` binary writes Mosquitto's
//! password file and ACL from a real store, a private `mosquitto` process loads them, and
//! real MQTT clients find out what a device can and cannot do there.
//!
//! Needs `mosquitto` installed (Debian: `apt-get install mosquitto`); `.ci/run` installs it.

mod common;

use common::{find_mosquitto, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use vakt::domain::{now_ms, Case, DeviceKind, DeviceStatus, Person, Risk};
use vakt::store::DeviceRecord;

/// One broker user per vakt instance (each is its client id too); the tests play several.
const BACKENDS: [&str; 4] = ["vakt-1", "vakt-plain", "vakt-shared", "vakt-watch"];
/// The backend secret every backend user's password is derived from.
const BACKEND_SECRET: &str = "backend-secret-for-this-test";
const A: &str = "dev-a";
const B: &str = "dev-b";
/// Issued once, then returned: revoked.
const C: &str = "dev-c";
const WAIT: Duration = Duration::from_secs(10);

fn topic(device: &str, leaf: &str) -> String {
    format!("vakt/v1/dev/{device}/{leaf}")
}

/// A private Mosquitto configured by `vakt broker mosquitto-files`, and the device keys.
struct Broker {
    port: u16,
    keys: std::collections::HashMap<&'static str, String>,
    database_url: String,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    async fn start() -> Broker {
        let mosquitto = find_mosquitto();
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}", dir.path().join("vakt.db").display());
        let keys = seed(dir.path(), &database_url).await;

        let out = dir.path().join("mosquitto");
        std::fs::create_dir(&out).unwrap();
        let stdout = write_files(dir.path(), &database_url, &keys);
        assert!(
            stdout.contains("2 devices") && stdout.contains("1 returned or lost"),
            "unexpected summary: {stdout}"
        );
        let passwd = std::fs::read_to_string(out.join("passwd")).unwrap();
        let users: Vec<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
        assert_eq!(users, [&BACKENDS[..], &[A, B]].concat());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("passwd")).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }

        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous false\n\
                 password_file {}\n\
                 acl_file {}\n\
                 # As in deploy/mosquitto/mosquitto.conf: a client's id is its username.\n\
                 use_username_as_clientid true\n\
                 # Started as root, Mosquitto would switch to its own user, which cannot read\n\
                 # our 0600 files; as anyone else it ignores this.\n\
                 user root\n\
                 persistence false\n\
                 log_dest stderr\n\
                 log_type all\n",
                out.join("passwd").display(),
                out.join("acl").display()
            ),
        )
        .unwrap();
        let child = Command::new(&mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("mosquitto starts");
        let mut broker = Broker {
            port,
            keys,
            database_url,
            child,
            log,
            dir,
        };
        broker.wait_listening().await;
        broker
    }

    async fn wait_listening(&mut self) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mosquitto exited ({status}):\n{}", self.log_text());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto does not listen on {}:\n{}",
                self.port,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Has vakt write the files again and Mosquitto reload them, as an operator would.
    fn rewrite_and_reload(&self) -> String {
        let stdout = write_files(self.dir.path(), &self.database_url, &self.keys);
        let hup = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(hup.success());
        stdout
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn key(&self, device: &str) -> &str {
        &self.keys[device]
    }

    /// The MQTT password the device derives from its key.
    fn password(&self, device: &str) -> String {
        common::device_password(self.key(device))
    }

    async fn device(&self, id: &str) -> Client {
        self.login(id, id, &self.password(id))
            .await
            .unwrap_or_else(|code| panic!("{id} refused ({code:?}):\n{}", self.log_text()))
    }

    /// A vakt instance, logged in as its own backend user.
    async fn backend(&self, user: &str) -> Client {
        assert!(
            BACKENDS.contains(&user),
            "{user} has no line in the password file"
        );
        self.login(
            user,
            user,
            &vakt::mqtt::link::backend_password(BACKEND_SECRET, user),
        )
        .await
        .unwrap_or_else(|code| panic!("the backend refused ({code:?}):\n{}", self.log_text()))
    }

    async fn login(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Client, ConnectReturnCode> {
        Client::connect(self.port, client_id, Some((username, password))).await
    }
}

/// Runs `vakt broker mosquitto-files` on the store and returns what it printed, having
/// checked that it printed no secret.
fn write_files(
    dir: &Path,
    database_url: &str,
    keys: &std::collections::HashMap<&'static str, String>,
) -> String {
    let (uid, gid) = owner_of(dir);
    let run = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["broker", "mosquitto-files", "--out"])
        .arg(dir.join("mosquitto"))
        // Exercises the hand-over to Mosquitto's user; here that is us.
        .args(["--owner", &format!("{uid}:{gid}")])
        .args(BACKENDS.iter().flat_map(|u| ["--backend-user", u]))
        .current_dir(dir)
        .env("VAKT_DATA_DIR", dir)
        .env("VAKT_DATABASE_URL", database_url)
        .env("VAKT_MQTT_PASSWORD", BACKEND_SECRET)
        .env_remove("VAKT_MQTT_USERNAME")
        .env_remove("VAKT_CONFIG")
        .env("VAKT_LOG", "warn")
        .output()
        .expect("vakt runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "vakt failed: {stdout}{stderr}");
    let backend_passwords: Vec<String> = BACKENDS
        .iter()
        .map(|u| vakt::mqtt::link::backend_password(BACKEND_SECRET, u))
        .collect();
    let device_passwords: Vec<String> = keys.values().map(|k| common::device_password(k)).collect();
    for secret in keys
        .values()
        .chain(&device_passwords)
        .chain(&backend_passwords)
        .map(String::as_str)
        .chain([BACKEND_SECRET])
    {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    stdout
}

#[cfg(unix)]
fn owner_of(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[cfg(not(unix))]
fn owner_of(_: &Path) -> (u32, u32) {
    (0, 0)
}

/// Three devices through the store API: A and B issued, C issued and returned.
async fn seed(dir: &Path, database_url: &str) -> std::collections::HashMap<&'static str, String> {
    let store = common::open_store(dir, database_url).await;
    let now = now_ms();
    store
        .insert_person(
            &Person {
                id: "p1".into(),
                name: "Anna".into(),
                phone: None,
                address: None,
                protected_identity: false,
                region: Some("Stockholm".into()),
            },
            now,
            &common::SEEDED,
        )
        .await
        .unwrap();
    store
        .insert_case(
            &Case {
                id: "c1".into(),
                reference: "2026-1".into(),
                person_id: "p1".into(),
                risk: Risk::Medium,
                region: "Stockholm".into(),
                response_plan: None,
                relatives: vec![],
                closed_at: None,
            },
            now,
            &common::SEEDED,
        )
        .await
        .unwrap();
    let mut keys = std::collections::HashMap::new();
    for id in [A, B, C] {
        let key = vakt::protocol::DeviceKey::generate();
        let sealed = common::vault_in(dir).seal(&key, id);
        let key = key.to_hex();
        store
            .insert_device(
                &DeviceRecord::in_stock(id, DeviceKind::Alarm, sealed, now),
                &common::SEEDED,
            )
            .await
            .unwrap();
        store
            .issue_device(id, "c1", "p1", now, &common::SEEDED)
            .await
            .unwrap();
        keys.insert(id, key);
    }
    store
        .return_device(
            C,
            DeviceStatus::Returned,
            "case closed",
            now,
            &common::SEEDED,
        )
        .await
        .unwrap();
    keys
}

/// An MQTT 3.1.1 client whose incoming publishes and SUBACKs arrive on channels.
struct Client {
    mqtt: AsyncClient,
    publishes: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    driver: tokio::task::JoinHandle<()>,
    /// Everything received so far, in order.
    seen: Vec<(String, Vec<u8>)>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Client {
    /// Connects with a clean session; `Err` with the broker's CONNACK code when it refuses.
    async fn connect(
        port: u16,
        client_id: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Client, ConnectReturnCode> {
        Client::connect_with(port, client_id, credentials, true).await
    }

    async fn connect_with(
        port: u16,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        clean_session: bool,
    ) -> Result<Client, ConnectReturnCode> {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(clean_session);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (mqtt, mut eventloop) = AsyncClient::new(options, 64);
        let connack = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                    Ok(_) => {}
                    Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                    Err(e) => panic!("{client_id}: no CONNACK: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{client_id}: no CONNACK within {WAIT:?}"))?;
        assert_eq!(connack, ConnectReturnCode::Success);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = pub_tx.send((p.topic, p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let _ = sub_tx.send(ack.return_codes);
                    }
                    Ok(_) => {}
                    // The test asserts on what arrives; a lost connection shows as nothing.
                    Err(_) => return,
                }
            }
        });
        Ok(Client {
            mqtt,
            publishes,
            subacks,
            driver,
            seen: Vec::new(),
        })
    }

    /// Subscribes at QoS 1 and returns the broker's answer once it has it.
    async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        self.mqtt.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter}"))
            .expect("connection open")
    }

    /// Waits until the broker has closed the connection.
    async fn wait_disconnected(&mut self) {
        let closed = tokio::time::timeout(WAIT, async {
            while let Some(m) = self.publishes.recv().await {
                self.seen.push(m);
            }
        })
        .await;
        assert!(closed.is_ok(), "still connected after {WAIT:?}");
    }

    async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.mqtt
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Waits until `(topic, payload)` arrives and returns everything received up to it.
    ///
    /// Mosquitto hands one client its messages in the order it routed them, so a message
    /// routed before this marker would have arrived before it: what is absent here was not
    /// delivered, and no sleep is needed to know it.
    async fn received_until(&mut self, topic: &str, payload: &str) -> Vec<(String, String)> {
        let marker = (topic.to_owned(), payload.as_bytes().to_vec());
        let found = tokio::time::timeout(WAIT, async {
            while !self.seen.contains(&marker) {
                match self.publishes.recv().await {
                    Some(m) => self.seen.push(m),
                    None => return false,
                }
            }
            true
        })
        .await
        .unwrap_or(false);
        let seen: Vec<(String, String)> = self
            .seen
            .iter()
            .map(|(t, p)| (t.clone(), String::from_utf8_lossy(p).into_owned()))
            .collect();
        assert!(found, "{payload:?} on {topic} never arrived; got {seen:?}");
        seen
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

#[tokio::test]
async fn only_devices_in_stock_or_issued_log_in_and_each_only_with_its_own_password() {
    let broker = Broker::start().await;
    let refused = |r: Result<Client, ConnectReturnCode>| match r {
        Ok(_) => panic!("logged in, but should have been refused"),
        Err(code) => assert!(
            matches!(
                code,
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
            ),
            "refused with {code:?}"
        ),
    };

    drop(broker.device(A).await);
    drop(broker.device(B).await);
    drop(broker.backend("vakt-1").await);

    // A's id with its key itself, with B's password, with a well-formed password of nobody,
    // with the backend's password.
    refused(broker.login(A, A, broker.key(A)).await);
    refused(broker.login(A, A, &broker.password(B)).await);
    let stranger = vakt::protocol::DeviceKey::generate().mqtt_password();
    refused(broker.login(A, A, &stranger).await);
    refused(broker.login(A, A, BACKEND_SECRET).await);
    let backend_password = vakt::mqtt::link::backend_password(BACKEND_SECRET, "vakt-1");
    refused(broker.login(A, A, &backend_password).await);
    // One instance's password is not another's.
    refused(
        broker
            .login("vakt-plain", "vakt-plain", &backend_password)
            .await,
    );
    // The returned device, with the password that worked while it was issued.
    refused(broker.login(C, C, &broker.password(C)).await);
    // A device vakt does not know, the backend with a device's password, and no credentials.
    refused(broker.login("dev-x", "dev-x", &stranger).await);
    refused(broker.login("vakt-1", "vakt-1", &broker.password(A)).await);
    refused(broker.login("vakt-1", "vakt-1", BACKEND_SECRET).await);
    refused(Client::connect(broker.port, "anonymous", None).await);
}

#[tokio::test]
async fn a_device_key_under_a_backend_client_id_neither_cuts_the_backend_off_nor_takes_its_session()
{
    let conf = include_str!("../deploy/mosquitto/mosquitto.conf");
    assert!(
        conf.lines()
            .any(|l| l.trim() == "use_username_as_clientid true"),
        "deploy/mosquitto/mosquitto.conf lost use_username_as_clientid"
    );
    let broker = Broker::start().await;
    // The instance as the ingest runs it: a persistent session on every uplink.
    let mut backend = Client::connect_with(
        broker.port,
        "vakt-1",
        Some((
            "vakt-1",
            &vakt::mqtt::link::backend_password(BACKEND_SECRET, "vakt-1"),
        )),
        false,
    )
    .await
    .expect("the backend logs in");
    backend.subscribe("vakt/v1/dev/+/+").await;
    let b = broker.device(B).await;

    // Device A's key, asking for the backend's client id: with a clean session (which made
    // Mosquitto drop the backend's connection) and without (its persistent session).
    for clean in [true, false] {
        let mut intruder =
            Client::connect_with(broker.port, "vakt-1", Some((A, &broker.password(A))), clean)
                .await
                .expect("A logs in, as itself");
        intruder.subscribe("vakt/v1/dev/+/+").await;
        intruder.subscribe(&topic(A, "ack")).await;

        let alarm = format!("B's alarm, clean session {clean}");
        b.publish(&topic(B, "alarm"), &alarm, false).await;
        // Still connected, still subscribed: it gets B's alarm.
        backend.received_until(&topic(B, "alarm"), &alarm).await;
        // A got its own session under its own id, and nothing of B through it.
        let marker = format!("ack for A {clean}");
        let answer = broker.backend("vakt-plain").await;
        answer.publish(&topic(A, "ack"), &marker, false).await;
        let got = intruder.received_until(&topic(A, "ack"), &marker).await;
        assert!(
            got.iter().all(|(t, _)| t == &topic(A, "ack")),
            "A read through the backend's id: {got:?}"
        );
    }
    let log = broker.log_text();
    assert!(
        !log.contains("vakt-1 already connected"),
        "the backend was cut off:\n{log}"
    );
    // The broker gave the intruder A's own id.
    assert!(log.contains(&format!("as {A} ")), "{log}");
}

#[tokio::test]
async fn a_device_cannot_publish_on_another_devices_topics_or_its_own_downlink() {
    let broker = Broker::start().await;
    // The ingest's filters: plain, and the shared subscription several instances use.
    let mut plain = broker.backend("vakt-plain").await;
    plain.subscribe("vakt/v1/dev/+/+").await;
    let mut shared = broker.backend("vakt-shared").await;
    let granted = shared.subscribe("$share/vakt/vakt/v1/dev/+/+").await;
    assert_eq!(
        granted,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "the shared subscription was refused:\n{}",
        broker.log_text()
    );

    let a = broker.device(A).await;
    a.publish(&topic(B, "alarm"), "forged alarm", false).await;
    a.publish(&topic(B, "state"), "forged will", false).await;
    a.publish(&topic(B, "cfg"), "forged cfg", true).await;
    a.publish(&topic(A, "cfg"), "self-made cfg", true).await;
    a.publish(&topic(A, "ack"), "self-made ack", false).await;
    a.publish(&topic(A, "alarm"), "own alarm", false).await;

    let only_own = pairs(&[(&topic(A, "alarm"), "own alarm")]);
    assert_eq!(
        plain.received_until(&topic(A, "alarm"), "own alarm").await,
        only_own
    );
    assert_eq!(
        shared.received_until(&topic(A, "alarm"), "own alarm").await,
        only_own
    );
}

#[tokio::test]
async fn a_device_reads_its_own_ack_and_cfg_and_nothing_of_another_device() {
    let broker = Broker::start().await;
    let mut backend = broker.backend("vakt-1").await;
    // Retained configurations for both, read back by the backend so they are surely stored
    // before A subscribes.
    backend.publish(&topic(A, "cfg"), "cfg for A", true).await;
    backend.publish(&topic(B, "cfg"), "cfg for B", true).await;
    backend.subscribe("vakt/v1/dev/+/+").await;
    backend.received_until(&topic(B, "cfg"), "cfg for B").await;
    backend.received_until(&topic(A, "cfg"), "cfg for A").await;

    let mut a = broker.device(A).await;
    // Whether Mosquitto refuses these filters at SUBACK or only filters what they deliver,
    // nothing of B may come through them.
    a.subscribe("vakt/v1/dev/#").await;
    a.subscribe(&topic(B, "ack")).await;
    a.subscribe("#").await;

    let b = broker.device(B).await;
    b.publish(&topic(B, "alarm"), "B's alarm", false).await;
    backend
        .received_until(&topic(B, "alarm"), "B's alarm")
        .await;
    backend.publish(&topic(B, "ack"), "ack for B", false).await;
    backend.publish(&topic(A, "ack"), "ack for A", false).await;

    let got = a.received_until(&topic(A, "ack"), "ack for A").await;
    assert!(
        got.iter()
            .all(|(t, _)| t == &topic(A, "cfg") || t == &topic(A, "ack")),
        "A read something not its own: {got:?}"
    );
    assert!(
        got.contains(&(topic(A, "cfg"), "cfg for A".to_owned())),
        "A did not get its retained cfg: {got:?}"
    );
}

#[tokio::test]
async fn a_device_returned_after_it_connected_is_put_out_at_the_next_reload() {
    let broker = Broker::start().await;
    let mut a = broker.device(A).await;
    let mut b = broker.device(B).await;
    b.subscribe(&topic(B, "ack")).await;

    let store = common::open_store(broker.dir.path(), &broker.database_url).await;
    store
        .return_device(
            A,
            DeviceStatus::Lost,
            "reported lost",
            now_ms(),
            &common::SEEDED,
        )
        .await
        .unwrap();
    let summary = broker.rewrite_and_reload();
    assert!(
        summary.contains("1 devices") && summary.contains("2 returned or lost"),
        "unexpected summary: {summary}"
    );

    a.wait_disconnected().await;
    let refused = broker.login(A, A, &broker.password(A)).await;
    assert!(refused.is_err(), "the lost device logged in again");
    // B stays connected through the reload and still gets its answers.
    let backend = broker.backend("vakt-1").await;
    backend.publish(&topic(B, "ack"), "still here", false).await;
    b.received_until(&topic(B, "ack"), "still here").await;
}

#[tokio::test]
async fn a_device_given_a_new_key_logs_in_with_its_old_one_while_the_password_file_has_only_that() {
    let broker = Broker::start().await;
    let old = vakt::protocol::DeviceKey::from_hex(broker.key(A)).unwrap();
    let device = firmware_sim::SimDevice::connect(firmware_sim::SimOptions {
        host: "127.0.0.1".into(),
        port: broker.port,
        device_id: A.into(),
        key: broker.key(A).parse().unwrap(),
        boot: 1,
    })
    .await
    .expect("the device logs in with its key");
    let mut watcher = broker.backend("vakt-watch").await;
    watcher.subscribe("vakt/v1/dev/+/hb").await;

    // The backend hands the device a new key in its signed, retained cfg, as vakt does.
    let new = vakt::protocol::DeviceKey::generate();
    let id = vakt::protocol::DeviceId::parse(A).unwrap();
    let (cfg_topic, cfg) = vakt::protocol::config_body(&id, &old, None, Some(&new), now_ms());
    let backend = broker.backend("vakt-1").await;
    backend.publish(&cfg_topic, &cfg, true).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while device.key().to_hex() != new.to_hex() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device never took up its new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The password file still has the old key's password. Another session under the
    // device's id takes the connection over and goes, so the device must log in again: its
    // new key's password is refused, its old one's lets it in.
    drop(broker.device(A).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = broker.log_text();
        let refused = log.find("not authorised");
        // The device's own sessions log in with clean session off (`c0`).
        if refused.is_some_and(|at| log[at..].contains(&format!("as {A} (p2, c0"))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal of the new key and login with the old one:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (boot, seq) = device.heartbeat(77, false, -60).await.unwrap();
    device
        .flush(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}:\n{}", broker.log_text()));

    // What it sends is signed with the new key.
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let (topic, body) = watcher.publishes.recv().await.expect("connected");
            seen.push(String::from_utf8_lossy(&body).into_owned());
            if String::from_utf8_lossy(&body).contains(&format!("\"seq\":{seq}")) {
                return (topic, body);
            }
        }
    })
    .await;
    let (topic, body) = found.unwrap_or_else(|_| {
        panic!(
            "the heartbeat never reached the backend; it got {seen:?}:\n{}",
            broker.log_text()
        )
    });
    let envelope = vakt::protocol::open(&topic, &body).unwrap();
    let message = vakt::protocol::verify(envelope, &new).expect("signed with the new key");
    assert_eq!((message.boot, message.seq), (boot, Some(seq)));
}
