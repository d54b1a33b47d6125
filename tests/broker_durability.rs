//! The broker's side of durability, tried for real: private Mosquitto processes with the
//! durability settings of `deploy/mosquitto/mosquitto.conf`, the real `vakt`, and devices
//! that repeat every alarm until the backend answers `received`.
//!
//! Needs `mosquitto` installed (Debian: `apt-get install mosquitto`). The fault campaign
//! also needs PostgreSQL (`VAKT_TEST_POSTGRES`, as in `.ci/run`); without it it says so
//! and passes. Its size comes from the environment (defaults: the short CI run):
//! `VAKT_CAMPAIGN_DEVICES` (10), `VAKT_CAMPAIGN_ROUNDS` (1, one round is every fault once),
//! `VAKT_CAMPAIGN_ALARM_EVERY_MS` (3000, per device).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use serde_json::json;
use tokio::sync::watch;
use vakt::domain::Risk;
use vakt::store::SharedStore;

/// The durability settings vakt ships, as `deploy/mosquitto/mosquitto.conf` has them, with
/// the database in `data`.
fn shipped_durability_settings(data: &Path) -> String {
    const KEYS: [&str; 9] = [
        "persistence",
        "persistence_location",
        "autosave_interval",
        "autosave_on_changes",
        "max_queued_messages",
        "max_queued_bytes",
        "max_inflight_messages",
        "persistent_client_expiration",
        "queue_qos0_messages",
    ];
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mosquitto/mosquitto.conf"
    ))
    .unwrap();
    let mut out = String::new();
    for key in KEYS {
        let line = shipped
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("deploy/mosquitto/mosquitto.conf does not set {key}"));
        if key == "persistence_location" {
            out.push_str(&format!("persistence_location {}/\n", data.display()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains("persistence true\n"), "{out}");
    out
}

/// A private Mosquitto on a free port, started and stopped as the test says.
struct Mosquitto {
    port: u16,
    dir: tempfile::TempDir,
    /// With the shipped durability settings; otherwise `persistence false`.
    persistent: bool,
    /// Lines after the durability settings, which override them.
    extra: String,
    child: Option<Child>,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill_9();
    }
}

impl Mosquitto {
    async fn start(persistent: bool) -> Mosquitto {
        let mut broker = Mosquitto {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            persistent,
            extra: String::new(),
            child: None,
        };
        broker.run().await;
        broker
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Starts the broker process (again) on the same port and waits until it listens.
    async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let durability = if self.persistent {
            shipped_durability_settings(&data)
        } else {
            "persistence false\n".to_owned()
        } + &self.extra;
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n\
                 allow_anonymous true\n\
                 # Started as root, Mosquitto would switch to a user that cannot write the\n\
                 # temporary directory; as anyone else it ignores this.\n\
                 user root\n\
                 {durability}\
                 log_dest stderr\n\
                 log_type error\n\
                 log_type warning\n\
                 log_type notice\n\
                 log_type information\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = Command::new(find_mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mosquitto exited ({status}):\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mosquitto does not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// SIGKILL: Mosquitto saves nothing.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: Mosquitto saves its database and exits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            child.wait().unwrap();
        }
    }
}

/// vakt in this process on `broker`, with the test's database in `dir`.
async fn vakt_on(
    broker: &Mosquitto,
    dir: &Path,
    database_url: &str,
    client_id: &str,
) -> vakt::Running {
    let mut config = test_config(dir, database_url.to_owned());
    config.mqtt_url = Some(broker.url());
    config.mqtt_client_id = client_id.to_owned();
    config.mqtt_share_group = unique("durability");
    vakt::start(config, vakt::StartOptions::default())
        .await
        .expect("vakt starts")
}

async fn wait_connected(running: &vakt::Running) {
    let http = running.http_addr;
    wait_for(
        "the ingest to be connected and subscribed",
        Duration::from_secs(15),
        || async move { metric_at(http, "vakt_broker_connected").await == Some(1) },
    )
    .await;
}

const SESSION_LOST: &str = "vakt_broker_session_lost_total";

#[tokio::test]
async fn a_broker_restarted_without_persistence_is_counted_as_a_lost_session() {
    let mut broker = Mosquitto::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let vakt = vakt_on(&broker, dir.path(), &url, &unique("vakt-ingest")).await;
    wait_connected(&vakt).await;
    // The first connection of a new client id has no session to lose.
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));

    broker.kill_9();
    broker.run().await;

    let http = vakt.http_addr;
    wait_for(
        "the lost session to be counted",
        Duration::from_secs(15),
        || async move { metric_at(http, SESSION_LOST).await == Some(1) },
    )
    .await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(1));
    vakt.stop().await;
}

#[tokio::test]
async fn a_persistent_broker_keeps_the_session_and_a_restart_of_vakt_notices_when_it_did_not() {
    let mut broker = Mosquitto::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let client_id = unique("vakt-ingest");
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    let store = open_store(dir.path(), &url).await;
    wait_for("the session to be noted", Duration::from_secs(10), || {
        let store = store.clone();
        let id = client_id.clone();
        async move { store.broker_session_noted(&id).await.unwrap() }
    })
    .await;

    // A clean restart of a persistent broker keeps the session.
    broker.stop();
    broker.run().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));
    vakt.stop().await;

    // So does vakt's own restart.
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));
    vakt.stop().await;

    // While vakt is down, the broker comes back without its database: the next run of vakt
    // finds no session although the store says it had one.
    broker.kill_9();
    broker.persistent = false;
    broker.run().await;
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(1));
    vakt.stop().await;
}

/// `(device, boot, seq)` of every panic alarm the store took in, in order.
async fn stored_alarms(url: &str) -> Vec<(String, i64, i64)> {
    use sqlx::Connection;
    const SQL: &str =
        "SELECT device_id, boot, seq FROM device_messages WHERE kind = 'panic' ORDER BY 1, 2, 3";
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    }
}

#[tokio::test]
async fn an_alarm_dropped_at_a_full_broker_queue_comes_in_with_a_repeat_once_vakt_is_back() {
    let mut broker = Mosquitto::start(true).await;
    // A queue of 20 stands for the shipped 1,000,000 outlasted by a long outage.
    broker.extra = "max_queued_messages 20\n".into();
    broker.stop();
    broker.run().await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    let devices = seed(&store, dir.path(), 1).await;
    let (id, key) = &devices[0];
    let client_id = unique("vakt-ingest");
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    let dev = Arc::new(
        SimDevice::connect(SimOptions {
            host: "127.0.0.1".into(),
            port: broker.port,
            device_id: id.clone(),
            key: key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .unwrap(),
    );
    // Four heartbeats a second (a device tracking its position sends as many): by the
    // time a dropped alarm's repeat gets through, its seq is far below the newest one.
    let beats = {
        let dev = dev.clone();
        tokio::spawn(async move {
            loop {
                dev.heartbeat(80, false, -70).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // vakt is down while the device sends far more than the broker queues for it.
    vakt.stop().await;
    let mut alarms = Vec::new();
    for _ in 0..12 {
        alarms.push(dev.alarm("panic", None, None).await.unwrap());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;

    // The repeats bring in what the broker dropped, though the device kept beating.
    wait_for(
        "every alarm to be answered",
        Duration::from_secs(120),
        || {
            let dev = dev.clone();
            async move { dev.unanswered_alarms().is_empty() }
        },
    )
    .await;
    beats.abort();
    assert_eq!(dev.dropped_alarms(), 0);
    let stored = stored_alarms(&url).await;
    let sent: Vec<(String, i64, i64)> = alarms
        .iter()
        .map(|(b, s)| (id.clone(), i64::from(*b), i64::from(*s)))
        .collect();
    assert_eq!(stored, sent);
    vakt.stop().await;
    let log = std::fs::read_to_string(broker.log()).unwrap();
    assert!(
        log.contains("dropped"),
        "the broker's queue never overflowed:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// The fault campaign.

/// A TCP proxy in front of PostgreSQL that can cut the link: it then closes every open
/// connection and refuses new ones until it is restored.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// The real `vakt serve`, started again after each kill.
struct Service {
    dir: tempfile::TempDir,
    database_url: String,
    mqtt_url: String,
    http_port: u16,
    client_id: String,
    share_group: String,
    child: Option<Child>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_9();
    }
}

impl Service {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("vakt.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vakt"))
            .arg("serve")
            .current_dir(self.dir.path())
            .env("VAKT_HTTP_ADDR", format!("127.0.0.1:{}", self.http_port))
            .env("VAKT_DATA_DIR", self.dir.path())
            .env("VAKT_DATABASE_URL", &self.database_url)
            .env("VAKT_MQTT_URL", &self.mqtt_url)
            .env("VAKT_MQTT_CLIENT_ID", &self.client_id)
            .env("VAKT_MQTT_SHARE_GROUP", &self.share_group)
            .env("VAKT_LOG", "warn,vakt::ingest=info,vakt::mqtt=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vakt starts");
        self.child = Some(child);
    }

    /// `vakt_broker_session_lost_total` of the running process.
    async fn sessions_lost(&self) -> u64 {
        let http = format!("127.0.0.1:{}", self.http_port).parse().unwrap();
        metric_at(http, SESSION_LOST).await.unwrap_or(0)
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix: no shutdown code runs.
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        wait_for("vakt to be ready", Duration::from_secs(60), || {
            let req = reqwest::get(url.clone());
            async move { req.await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vakt.log")).unwrap_or_default()
    }
}

/// An officer, a case, and `n` issued alarm devices with their keys.
async fn seed(store: &SharedStore, dir: &std::path::Path, n: usize) -> Vec<(String, String)> {
    seed_issued_devices(store, dir, Risk::High, n).await
}

/// One alarm as the campaign saw it go out and come back.
struct Alarm {
    first_sent: Instant,
    received_after: Option<Duration>,
}

/// Per device: `(boot, seq)` of every alarm it sent, and when its `received` came.
type Ledger = Arc<Mutex<HashMap<String, BTreeMap<(u32, u32), Alarm>>>>;

/// What a device did, once it stopped.
struct DeviceEnd {
    repeats: u64,
    unanswered: Vec<(u32, u32)>,
    dropped: u64,
}

/// A device that sends an alarm every `every` until `stop_sending`, and a heartbeat every
/// 2 s; firmware-sim itself repeats each alarm byte for byte until its `received` comes.
async fn run_device(
    dev: SimDevice,
    every: Duration,
    mut stop_sending: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    ledger: Ledger,
) -> DeviceEnd {
    let dev = Arc::new(dev);
    let id = dev.device_id().to_owned();
    let reader = {
        let (dev, ledger, id) = (dev.clone(), ledger.clone(), id.clone());
        tokio::spawn(async move {
            loop {
                match dev.feedback().await {
                    Ok(f) if f.st == "received" => {
                        let mut ledger = ledger.lock().unwrap();
                        if let Some(a) = ledger
                            .get_mut(&id)
                            .and_then(|m| m.get_mut(&(f.boot, f.seq)))
                        {
                            a.received_after.get_or_insert(a.first_sent.elapsed());
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("event loop ended") => return,
                    // Counted as not answered, if it was the only `received` for an alarm.
                    Err(e) => eprintln!("a forged or malformed ack: {e}"),
                }
            }
        })
    };
    let mut next_alarm = Instant::now()
        + every
            .mul_f64(f64::from(u32::from_le_bytes(vakt::keys::os_random())) / f64::from(u32::MAX));
    let mut next_beat = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop_sending.borrow_and_update() {
            continue;
        }
        let now = Instant::now();
        if now >= next_alarm {
            next_alarm = now + every;
            // Into the ledger first: the `received` may come before `alarm` returns.
            let origin = (dev.boot(), dev.next_seq());
            ledger
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .insert(
                    origin,
                    Alarm {
                        first_sent: now,
                        received_after: None,
                    },
                );
            let sent = dev.alarm("panic", None, None).await.unwrap();
            assert_eq!(sent, origin);
        }
        if now >= next_beat {
            next_beat = now + Duration::from_secs(2);
            dev.heartbeat(80, false, -70).await.unwrap();
        }
    }
    reader.abort();
    DeviceEnd {
        repeats: dev.repeats_sent(),
        unanswered: dev.unanswered_alarms(),
        dropped: dev.dropped_alarms(),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alarm_is_stored_exactly_once_and_answered_through_crashes_restarts_and_a_cut_database(
) {
    let Some(server) = std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("the fault campaign needs PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    };
    let n_devices = env_or("VAKT_CAMPAIGN_DEVICES", 10) as usize;
    let rounds = env_or("VAKT_CAMPAIGN_ROUNDS", 1);
    let every = Duration::from_millis(env_or("VAKT_CAMPAIGN_ALARM_EVERY_MS", 3000));
    let started = Instant::now();

    // Arrange: a persistent Mosquitto, a fresh database behind the proxy, vakt, the devices.
    let mut broker = Mosquitto::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let direct_url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &direct_url).await;
    let devices = seed(&store, dir.path(), n_devices).await;
    let pg: url_parts::PgUrl = url_parts::parse(&server);
    let proxy = Proxy::start(pg.addr).await;
    let database = direct_url.rsplit('/').next().unwrap().to_owned();
    let mut vakt = Service {
        dir,
        database_url: pg.with_addr(proxy.port, &database),
        mqtt_url: broker.url(),
        http_port: free_port(),
        client_id: unique("vakt-campaign"),
        share_group: unique("campaign"),
        child: None,
    };
    vakt.spawn();
    vakt.wait_ready().await;

    let ledger: Ledger = Arc::default();
    let (stop_sending_tx, stop_sending) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for (id, key) in &devices {
        let dev = SimDevice::connect(SimOptions {
            host: "127.0.0.1".into(),
            port: broker.port,
            device_id: id.clone(),
            key: key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .unwrap();
        tasks.push(tokio::spawn(run_device(
            dev,
            every,
            stop_sending.clone(),
            stop.clone(),
            ledger.clone(),
        )));
    }

    // Act: every fault, `rounds` times, while the devices keep sending.
    let mut faults = Vec::new();
    let mut sessions_lost = 0;
    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    for _ in 0..rounds {
        pause(6).await;
        sessions_lost += vakt.sessions_lost().await;
        vakt.kill_9();
        faults.push("kill -9 vakt");
        pause(3).await;
        vakt.spawn();
        vakt.wait_ready().await;

        pause(6).await;
        broker.kill_9();
        faults.push("kill -9 mosquitto");
        pause(2).await;
        broker.run().await;

        pause(6).await;
        proxy.set_cut(true);
        faults.push("database link cut for 10 s");
        pause(10).await;
        proxy.set_cut(false);

        pause(6).await;
        sessions_lost += vakt.sessions_lost().await;
        vakt.kill_9();
        faults.push("kill -9 vakt");
        pause(3).await;
        vakt.spawn();
        vakt.wait_ready().await;

        pause(6).await;
        broker.stop();
        faults.push("clean mosquitto restart");
        broker.run().await;
    }
    pause(6).await;
    stop_sending_tx.send_replace(true);
    let sending_ended = Instant::now();

    // Every alarm answered: the repeats (at most 30 s apart) bring in what was lost.
    let all_received = || {
        ledger
            .lock()
            .unwrap()
            .values()
            .flat_map(|m| m.values())
            .all(|a| a.received_after.is_some())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_received() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send_replace(true);
    let settled_after_sending = sending_ended.elapsed();
    let mut ends = Vec::new();
    for t in tasks {
        ends.push(t.await.unwrap());
    }

    // Assert: the store holds each alarm once, and the alert counts count each once.
    let stored = stored_alarms(&direct_url).await;
    let counted: Vec<(String, i64)> = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&direct_url).await.unwrap();
        sqlx::query_as(
            "SELECT device_id, SUM(count)::BIGINT FROM alerts WHERE kind = 'panic' GROUP BY device_id",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    };
    sessions_lost += vakt.sessions_lost().await;
    let ledger = ledger.lock().unwrap();
    let sent: Vec<(String, i64, i64)> = {
        let mut v: Vec<(String, i64, i64)> = ledger
            .iter()
            .flat_map(|(id, m)| {
                m.keys()
                    .map(move |(b, s)| (id.clone(), i64::from(*b), i64::from(*s)))
            })
            .collect();
        v.sort();
        v
    };
    let alarms: Vec<&Alarm> = ledger.values().flat_map(|m| m.values()).collect();
    let answered = alarms.iter().filter(|a| a.received_after.is_some()).count();
    let repeats: u64 = ends.iter().map(|e| e.repeats).sum();
    let dropped: u64 = ends.iter().map(|e| e.dropped).sum();
    let slow = alarms
        .iter()
        .filter(|a| a.received_after.is_none_or(|d| d > Duration::from_secs(5)))
        .count();
    let max_received = alarms.iter().filter_map(|a| a.received_after).max();
    let report = json!({
        "devices": n_devices,
        "alarm_every_ms": every.as_millis() as u64,
        "rounds": rounds,
        "faults": faults,
        "alarms_sent": sent.len(),
        "alarms_answered": answered,
        "alarms_stored": stored.len(),
        "alarms_counted_in_alerts": counted.iter().map(|(_, n)| n).sum::<i64>(),
        "alarm_repeats": repeats,
        "alarms_answered_after_5s": slow,
        "alarms_given_up_by_devices": dropped,
        "max_time_to_received_ms": max_received.map(|d| d.as_millis() as u64),
        "broker_sessions_lost": sessions_lost,
        "all_answered_after_sending_stopped_ms": settled_after_sending.as_millis() as u64,
        "campaign_s": started.elapsed().as_secs(),
    });
    eprintln!("fault campaign: {report:#}");
    let unanswered: Vec<_> = ledger
        .iter()
        .flat_map(|(id, m)| {
            m.iter()
                .filter(|(_, a)| a.received_after.is_none())
                .map(move |(o, _)| (id.clone(), *o))
        })
        .collect();
    assert!(
        unanswered.is_empty(),
        "alarms never answered `received`: {unanswered:?}\n{}",
        vakt.log()
    );
    assert!(
        ends.iter().all(|e| e.unanswered.is_empty()) && dropped == 0,
        "devices still hold unanswered alarms or gave some up"
    );
    assert_eq!(
        stored, sent,
        "the store does not hold each alarm exactly once"
    );
    let per_device: BTreeMap<String, i64> = ledger
        .iter()
        .map(|(id, m)| (id.clone(), m.len() as i64))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        counted.into_iter().collect::<BTreeMap<_, _>>(),
        per_device,
        "the alerts do not count each alarm exactly once"
    );
    assert!(sent.len() >= n_devices, "too few alarms to mean anything");
}

/// Just enough of a PostgreSQL URL to put the proxy in front of the server.
mod url_parts {
    use std::net::{SocketAddr, ToSocketAddrs};

    pub struct PgUrl {
        /// `postgres://user:password@`
        prefix: String,
        pub addr: SocketAddr,
    }

    impl PgUrl {
        pub fn with_addr(&self, port: u16, database: &str) -> String {
            format!("{}127.0.0.1:{port}/{database}", self.prefix)
        }
    }

    /// `postgres://[user[:password]@]host[:port][/]` as `VAKT_TEST_POSTGRES` names a server.
    pub fn parse(server: &str) -> PgUrl {
        let server = server.trim_end_matches('/');
        let (scheme, rest) = server.split_once("://").expect("a postgres:// URL");
        let (auth, host) = match rest.rsplit_once('@') {
            Some((auth, host)) => (format!("{auth}@"), host),
            None => (String::new(), rest),
        };
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        };
        let addr = host
            .to_socket_addrs()
            .expect("the PostgreSQL server's address")
            .next()
            .unwrap();
        PgUrl {
            prefix: format!("{scheme}://{auth}"),
            addr,
        }
    }
}
