//! The fault campaign: while devices keep alarming and beating, everything around vakt fails
//! in turn, and afterwards every alarm has been answered `received`, is stored once and is
//! counted in exactly one alert, and no device that kept beating was declared silent.
//!
//! The deployment is real and private to the test: a PostgreSQL cluster of its own (`initdb`
//! and `pg_ctl`, so that it can be restarted and killed without touching the machine's
//! server), a Mosquitto with the durability settings of `deploy/mosquitto/mosquitto.conf`,
//! two `vakt serve` processes on one shared subscription, each reaching the database and
//! the broker through TCP proxies the test can cut (the devices reach the broker directly),
//! and firmware-sim devices that repeat every alarm until its `received` comes.
//!
//! Needs `mosquitto` and PostgreSQL's `initdb`/`pg_ctl` (Debian: `apt-get install mosquitto
//! postgresql`), and runs, like the other suites on PostgreSQL, when `VAKT_TEST_POSTGRES` is
//! set (otherwise it says so and passes). Where `initdb` cannot run, it falls back to that
//! server, without the database restarts, and says so. Its size comes from the environment (defaults: the short CI run):
//! `VAKT_CAMPAIGN_DEVICES` (10), `VAKT_CAMPAIGN_ROUNDS` (1, one round is every fault once),
//! `VAKT_CAMPAIGN_ALARM_EVERY_MS` (3000, per device). `benches/fault-campaign.sh` runs it at
//! full size.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mosquitto::Mosquitto;
use common::postgres::PgCluster;
use common::proxy::Proxy;
use common::*;
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use serde_json::json;
use tokio::sync::watch;
use vakt::domain::Risk;

/// The devices' heartbeat interval, announced in `hello` and vakt's default as well.
const HEARTBEAT_S: u64 = 5;
/// The silence grace: a device is silent after `2 × 5 + 20 = 30 s` unheard. Longer than any
/// fault keeps vakt from hearing a device (10 s cuts, then the backlog), short enough that
/// the campaign sees a real silence declared.
const GRACE_S: u64 = 20;
const SILENCE_WINDOW: Duration = Duration::from_secs(2 * HEARTBEAT_S + GRACE_S);

/// One `vakt serve`, started again after each kill.
struct Instance {
    name: &'static str,
    dir: tempfile::TempDir,
    database_url: String,
    mqtt_url: String,
    http_port: u16,
    client_id: String,
    share_group: String,
    child: Option<Child>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_9();
    }
}

impl Instance {
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
            .env("VAKT_SILENCE_GRACE_S", GRACE_S.to_string())
            .env("VAKT_DEFAULT_HB_S", HEARTBEAT_S.to_string())
            .env("VAKT_LOG", "warn,vakt::supervise=info,vakt::mqtt=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vakt starts");
        self.child = Some(child);
    }

    fn http(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.http_port).into()
    }

    async fn metric(&self, name: &str) -> Option<u64> {
        // A killed instance answers nothing, whatever listens on its port meanwhile.
        self.child.as_ref()?;
        metric_at(self.http(), name).await
    }

    async fn leads(&self) -> bool {
        self.metric("vakt_supervision_leader").await == Some(1)
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix: no shutdown code runs.
            let _ = child.wait();
        }
    }

    /// The end of its log: what a failure needs, not the whole campaign's.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("vakt.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    }
}

/// Both instances, and what the campaign learns from them before it kills them.
struct Backend {
    instances: [Instance; 2],
    sessions_lost: u64,
}

impl Backend {
    /// Kills instance `i`, first reading the sessions it counted as lost.
    async fn kill_9(&mut self, i: usize) {
        self.sessions_lost += self.instances[i]
            .metric("vakt_broker_session_lost_total")
            .await
            .unwrap_or(0);
        self.instances[i].kill_9();
    }

    async fn restart(&mut self, i: usize) {
        self.instances[i].spawn();
        self.wait_ready(i).await;
    }

    async fn wait_ready(&self, i: usize) {
        let url = format!("http://127.0.0.1:{}/readyz", self.instances[i].http_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(&url)
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            assert!(
                Instant::now() < deadline,
                "vakt {} not ready after 60 s:\n{}",
                self.instances[i].name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The instance that leads supervision, once exactly one does.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.instances[0].leads().await;
            let b = self.instances[1].leads().await;
            match (a, b) {
                (true, false) => return 0,
                (false, true) => return 1,
                _ => {}
            }
            assert!(Instant::now() < deadline, "no single supervision leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sessions_lost_now(&self) -> u64 {
        let mut n = self.sessions_lost;
        for i in &self.instances {
            n += i
                .metric("vakt_broker_session_lost_total")
                .await
                .unwrap_or(0);
        }
        n
    }

    fn logs(&self) -> String {
        self.instances
            .iter()
            .map(|i| format!("--- vakt {} ---\n{}", i.name, i.log()))
            .collect()
    }
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

/// When a device stops doing what.
struct DeviceControl {
    /// Set: no new alarms (the repeats of unanswered ones go on).
    no_more_alarms: watch::Receiver<bool>,
    /// Set: no more heartbeats either, as a device that died.
    quiet: watch::Receiver<bool>,
    /// Set: the device is done.
    stop: watch::Receiver<bool>,
}

/// Somewhere in `0..span`, so that a thousand devices do not send in step.
fn random_within(span: Duration) -> Duration {
    span.mul_f64(f64::from(u32::from_le_bytes(vakt::keys::os_random())) / f64::from(u32::MAX))
}

/// A device that says `hello` (its heartbeat interval), then sends an alarm every `every`
/// and a heartbeat every `HEARTBEAT_S` as `control` says; firmware-sim itself repeats each
/// alarm byte for byte until its `received` comes, and says `hello` again after every
/// reconnect.
async fn run_device(
    dev: SimDevice,
    every: Duration,
    mut control: DeviceControl,
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
    let heartbeat = Duration::from_secs(HEARTBEAT_S);
    dev.hello("1.0", "T1", HEARTBEAT_S as u32).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut next_alarm = start + random_within(every);
    let mut next_beat = start + random_within(heartbeat);
    let (mut alarming, mut beating) = (true, true);
    loop {
        let wake = match (alarming, beating) {
            (true, true) => next_alarm.min(next_beat),
            (true, false) => next_alarm,
            (false, true) => next_beat,
            (false, false) => start + Duration::from_secs(24 * 3600),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = control.stop.changed() => break,
            _ = control.no_more_alarms.changed(), if alarming => {
                alarming = !*control.no_more_alarms.borrow();
                continue;
            }
            _ = control.quiet.changed(), if beating => {
                beating = !*control.quiet.borrow();
                continue;
            }
        }
        let now = tokio::time::Instant::now();
        if alarming && now >= next_alarm {
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
                        first_sent: now.into_std(),
                        received_after: None,
                    },
                );
            let sent = dev.alarm("panic", None, None).await.unwrap();
            assert_eq!(sent, origin);
        }
        if beating && now >= next_beat {
            next_beat = now + heartbeat;
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

/// Before the next fault: waits until vakt has caught up, every alarm sent more than 1 s
/// ago answered (a thousand devices always have a few alarms on their way), looking from
/// 1 s after the fault's action on (so that what was sent during it is looked at too) and
/// for at most 120 s; notes how long after the fault's start that was, then lets 6 s of
/// ordinary traffic pass. Each fault then finds vakt caught up, and its figures are its own: back to
/// back, a fault's backlog would still be queued at the next (and, alarms served first, the
/// heartbeats behind them would look like silence).
async fn between_faults(
    ledger: &Ledger,
    faults: &[(String, Instant)],
    recovered: &mut Vec<Option<Duration>>,
) {
    if let Some((_, start)) = faults.last() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let caught_up = || {
            ledger
                .lock()
                .unwrap()
                .values()
                .flat_map(|m| m.values())
                .all(|a| {
                    a.received_after.is_some() || a.first_sent.elapsed() < Duration::from_secs(1)
                })
        };
        let mut done = caught_up();
        while !done && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            done = caught_up();
        }
        recovered.push(done.then(|| start.elapsed()));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
}

/// The database server: a private cluster the campaign may restart, or the shared one.
enum Database {
    Private(PgCluster),
    Shared(String),
}

impl Database {
    fn server_url(&self) -> String {
        match self {
            Database::Private(c) => c.server_url(),
            Database::Shared(url) => url.trim_end_matches('/').to_owned(),
        }
    }
}

/// A new, empty database on `server` (`postgres://user@host:port`), its name.
async fn create_database(server: &str) -> String {
    use sqlx::Connection;
    let name = unique("vakt_campaign").replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to the campaign's PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    name
}

/// What the store holds at the end.
struct Stored {
    /// `(device, boot, seq)` of every panic alarm taken in, in order.
    alarms: Vec<(String, i64, i64)>,
    /// Stored panic alarms linked to no alert.
    unlinked: Vec<(String, i64, i64)>,
    /// Per panic alert: `(id, device, count, alarms linked to it)`.
    alerts: Vec<(i64, String, i64, i64)>,
    /// Devices with a silence alert.
    silent: Vec<String>,
    /// `rate_limited` security events: `(device, detail)`.
    rate_limited: Vec<(Option<String>, String)>,
}

async fn stored(url: &str) -> Stored {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let alarms = sqlx::query_as(
        "SELECT device_id, boot, seq FROM device_messages WHERE kind = 'panic' ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let unlinked = sqlx::query_as(
        "SELECT device_id, boot, seq FROM device_messages \
         WHERE kind = 'panic' AND alert_id IS NULL ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let alerts = sqlx::query_as(
        "SELECT a.id, a.device_id, a.count, \
         (SELECT COUNT(*) FROM device_messages m WHERE m.alert_id = a.id AND m.kind = 'panic') \
         FROM alerts a WHERE a.kind = 'panic' ORDER BY a.id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let silent = sqlx::query_scalar(
        "SELECT device_id FROM alerts WHERE kind = 'silent' ORDER BY device_id, id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let rate_limited = sqlx::query_as(
        "SELECT device_id, detail FROM security_events WHERE kind = 'rate_limited' ORDER BY id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    Stored {
        alarms,
        unlinked,
        alerts,
        silent,
        rate_limited,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alarm_is_answered_stored_once_and_counted_once_and_no_beating_device_is_declared_silent_through_every_fault(
) {
    // Like every suite on PostgreSQL, it runs when VAKT_TEST_POSTGRES is set (as in
    // `.ci/run`), and not in the plain `cargo test`; that server is the fallback only.
    let Some(shared) = std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("the fault campaign needs PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    };
    let database = match PgCluster::start() {
        Ok(cluster) => Database::Private(cluster),
        Err(why) => {
            eprintln!(
                "no private PostgreSQL cluster ({why}): the campaign runs on \
                 VAKT_TEST_POSTGRES, without restarting the database"
            );
            Database::Shared(shared)
        }
    };
    let n_devices = env_or("VAKT_CAMPAIGN_DEVICES", 10).max(2) as usize;
    let rounds = env_or("VAKT_CAMPAIGN_ROUNDS", 1);
    let every = Duration::from_millis(env_or("VAKT_CAMPAIGN_ALARM_EVERY_MS", 3000));
    let started = Instant::now();

    // Arrange: the database and the broker, each behind a proxy for vakt; two instances
    // sharing one master key; the devices.
    let server = database.server_url();
    let name = create_database(&server).await;
    let direct_url = format!("{server}/{name}");
    let pg = url_parts::parse(&server);
    let db_proxy = Proxy::start(pg.addr).await;
    let mut broker = Mosquitto::start(true).await;
    let mqtt_proxy = Proxy::start(([127, 0, 0, 1], broker.port).into()).await;
    let share_group = unique("campaign");
    let instance = |name: &'static str| Instance {
        name,
        dir: tempfile::tempdir().unwrap(),
        database_url: pg.with_addr(db_proxy.port, &name_of(&direct_url)),
        mqtt_url: format!("mqtt://127.0.0.1:{}", mqtt_proxy.port),
        http_port: free_port(),
        client_id: unique(&format!("vakt-campaign-{name}")),
        share_group: share_group.clone(),
        child: None,
    };
    let mut backend = Backend {
        instances: [instance("a"), instance("b")],
        sessions_lost: 0,
    };
    let devices = {
        let a = backend.instances[0].dir.path();
        let store = open_store(a, &direct_url).await;
        let devices = seed_issued_devices(&store, a, Risk::High, n_devices).await;
        std::fs::copy(
            a.join("master.key"),
            backend.instances[1].dir.path().join("master.key"),
        )
        .unwrap();
        devices
    };
    for i in 0..2 {
        backend.restart(i).await;
    }

    let ledger: Ledger = Arc::default();
    let (no_more_alarms_tx, no_more_alarms) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    // Every device but the first beats to the end; the first falls silent once all is
    // answered, so that the campaign also sees a real silence declared.
    let (quiet_first_tx, quiet_first) = watch::channel(false);
    let (_never_quiet_tx, never_quiet) = watch::channel(false);
    let silenced_device = devices[0].0.clone();
    let mut tasks = Vec::new();
    for (i, (id, key)) in devices.iter().enumerate() {
        let dev = SimDevice::connect(SimOptions {
            host: "127.0.0.1".into(),
            port: broker.port,
            device_id: id.clone(),
            key: key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .unwrap();
        let control = DeviceControl {
            no_more_alarms: no_more_alarms.clone(),
            quiet: if i == 0 {
                quiet_first.clone()
            } else {
                never_quiet.clone()
            },
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(run_device(
            dev,
            every,
            control,
            ledger.clone(),
        )));
    }

    // Act: every fault, `rounds` times, 6 s apart, while the devices keep sending.
    // Act: every fault, `rounds` times, while the devices keep sending; each one once vakt
    // has caught up with the last.
    let mut faults: Vec<(String, Instant)> = Vec::new();
    let mut takeovers = Vec::new();
    // Per fault: from its start until every alarm sent so far was answered.
    let mut recovered: Vec<Option<Duration>> = Vec::new();
    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    for _ in 0..rounds {
        between_faults(&ledger, &faults, &mut recovered).await;
        let leader = backend.leader().await;
        let other = 1 - leader;
        faults.push((
            "kill -9 of the instance that does not lead".into(),
            Instant::now(),
        ));
        backend.kill_9(other).await;
        pause(3).await;
        backend.restart(other).await;

        between_faults(&ledger, &faults, &mut recovered).await;
        faults.push((
            "kill -9 of Mosquitto, started again 2 s later".into(),
            Instant::now(),
        ));
        broker.kill_9();
        pause(2).await;
        broker.run().await;

        between_faults(&ledger, &faults, &mut recovered).await;
        faults.push(("database link cut for 10 s".into(), Instant::now()));
        db_proxy.set_cut(true);
        pause(10).await;
        db_proxy.set_cut(false);

        between_faults(&ledger, &faults, &mut recovered).await;
        faults.push(("broker link cut for 10 s".into(), Instant::now()));
        mqtt_proxy.set_cut(true);
        pause(10).await;
        mqtt_proxy.set_cut(false);

        if let Database::Private(cluster) = &database {
            between_faults(&ledger, &faults, &mut recovered).await;
            faults.push((
                "PostgreSQL restart (pg_ctl restart -m fast)".into(),
                Instant::now(),
            ));
            cluster.restart_fast();
        }

        between_faults(&ledger, &faults, &mut recovered).await;
        let leader = backend.leader().await;
        faults.push(("kill -9 of the supervision leader".into(), Instant::now()));
        backend.kill_9(leader).await;
        let killed = Instant::now();
        let other = &backend.instances[1 - leader];
        wait_for(
            "the other instance to take the lead",
            Duration::from_secs(30),
            || other.leads(),
        )
        .await;
        takeovers.push(killed.elapsed());
        pause(3).await;
        backend.restart(leader).await;

        if let Database::Private(cluster) = &database {
            between_faults(&ledger, &faults, &mut recovered).await;
            faults.push((
                "kill -9 of the PostgreSQL postmaster, started again".into(),
                Instant::now(),
            ));
            cluster.kill_9();
            pause(1).await;
            cluster.start_again();
        }

        between_faults(&ledger, &faults, &mut recovered).await;
        faults.push((
            "kill -9 of both instances, started again 3 s later".into(),
            Instant::now(),
        ));
        backend.kill_9(0).await;
        backend.kill_9(1).await;
        pause(3).await;
        backend.instances[0].spawn();
        backend.instances[1].spawn();
        backend.wait_ready(0).await;
        backend.wait_ready(1).await;

        between_faults(&ledger, &faults, &mut recovered).await;
        faults.push(("clean Mosquitto restart".into(), Instant::now()));
        broker.stop();
        broker.run().await;
    }
    between_faults(&ledger, &faults, &mut recovered).await;
    no_more_alarms_tx.send_replace(true);
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
    let deadline = Instant::now() + Duration::from_secs(180);
    while !all_received() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_after_sending = sending_ended.elapsed();

    // A real silence: the first device stops beating and must be declared silent within
    // its window (and the leader's sweep), while all the others keep beating.
    quiet_first_tx.send_replace(true);
    let quiet_since = Instant::now();
    let mut silence_declared_after = None;
    let deadline = quiet_since + SILENCE_WINDOW + Duration::from_secs(30);
    while Instant::now() < deadline {
        if stored(&direct_url).await.silent.contains(&silenced_device) {
            silence_declared_after = Some(quiet_since.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_tx.send_replace(true);
    let mut ends = Vec::new();
    for t in tasks {
        ends.push(t.await.unwrap());
    }

    // Assert: each alarm answered, stored once, counted in exactly one alert; one silence.
    let store = stored(&direct_url).await;
    let sessions_lost = backend.sessions_lost_now().await;
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
    let counted: i64 = store.alerts.iter().map(|a| a.2).sum();
    let miscounted: Vec<_> = store.alerts.iter().filter(|a| a.2 != a.3).collect();
    let false_silences: Vec<&String> = store
        .silent
        .iter()
        .filter(|d| **d != silenced_device)
        .collect();
    // What each fault did to the wait for `received`: the alarms on their way at some time
    // from its start until vakt had caught up again (sent before and answered after that
    // start, or sent meanwhile). The quiet seconds before the next fault belong to none.
    let per_fault: Vec<serde_json::Value> = faults
        .iter()
        .enumerate()
        .map(|(i, (what, start))| {
            let caught_up = match recovered.get(i).copied().flatten() {
                Some(after) => *start + after,
                None => faults.get(i + 1).map_or(sending_ended, |f| f.1),
            };
            let waits: Vec<Option<Duration>> = alarms
                .iter()
                .filter(|a| {
                    a.first_sent <= caught_up
                        && a.received_after.is_none_or(|w| a.first_sent + w >= *start)
                })
                .map(|a| a.received_after)
                .collect();
            json!({
                "fault": what,
                "all_answered_again_after_ms": recovered.get(i).copied().flatten().map(|d| d.as_millis() as u64),
                "alarms_on_their_way": waits.len(),
                "answered_after_5s": waits.iter().filter(|w| w.is_none_or(|d| d > Duration::from_secs(5))).count(),
                "longest_wait_ms": waits.iter().flatten().max().map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    let report = json!({
        "devices": n_devices,
        "alarm_every_ms": every.as_millis() as u64,
        "heartbeat_s": HEARTBEAT_S,
        "silence_window_s": SILENCE_WINDOW.as_secs(),
        "rounds": rounds,
        "database": match database { Database::Private(_) => "private cluster", Database::Shared(_) => "shared server (no restarts)" },
        "faults": faults.len(),
        "per_fault": per_fault,
        "leader_takeover_ms": takeovers.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        "alarms_sent": sent.len(),
        "alarms_answered": answered,
        "alarms_stored": store.alarms.len(),
        "alarms_counted_in_alerts": counted,
        "alarms_lost": sent.iter().filter(|s| store.alarms.binary_search(s).is_err()).count(),
        "alarms_counted_twice_or_not_at_all": miscounted.len() + store.unlinked.len(),
        "alarm_repeats": repeats,
        "alarms_answered_after_5s": slow,
        "alarms_given_up_by_devices": dropped,
        "max_time_to_received_ms": max_received.map(|d| d.as_millis() as u64),
        "all_answered_after_sending_stopped_ms": settled_after_sending.as_millis() as u64,
        "false_silence_alerts": false_silences.len(),
        "rate_limited_events": store.rate_limited.iter().map(|(d, detail)| format!("{}: {detail}", d.as_deref().unwrap_or("-"))).collect::<Vec<_>>(),
        "real_silence_declared_after_ms": silence_declared_after.map(|d| d.as_millis() as u64),
        "broker_sessions_lost": sessions_lost,
        "campaign_s": started.elapsed().as_secs(),
    });
    eprintln!("fault campaign: {report:#}\n\n{}", figures(&report));
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
        backend.logs()
    );
    assert!(
        ends.iter().all(|e| e.unanswered.is_empty()) && dropped == 0,
        "devices still hold unanswered alarms or gave some up"
    );
    assert_eq!(
        store.alarms, sent,
        "the store does not hold each alarm exactly once"
    );
    assert!(
        store.unlinked.is_empty(),
        "stored alarms in no alert: {:?}",
        store.unlinked
    );
    assert!(
        miscounted.is_empty(),
        "alerts whose count is not the alarms linked to them (id, device, count, linked): {miscounted:?}"
    );
    assert_eq!(
        counted,
        sent.len() as i64,
        "the alerts' counts add up to the alarms sent"
    );
    assert!(
        false_silences.is_empty(),
        "devices that kept beating were declared silent: {false_silences:?}\n{}",
        backend.logs()
    );
    assert!(
        silence_declared_after.is_some(),
        "the device that stopped beating was never declared silent\n{}",
        backend.logs()
    );
    assert_eq!(
        store.silent,
        vec![silenced_device],
        "one silence alert, for the device that fell silent"
    );
    assert!(sent.len() >= n_devices, "too few alarms to mean anything");
}

/// The campaign's figures as tables, for the eye and for `docs/benchmarks.md`.
fn figures(r: &serde_json::Value) -> String {
    let secs = |v: &serde_json::Value| match v.as_u64() {
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "never".into(),
    };
    let mut out = String::from("| measure | value |\n|---|---|\n");
    let rows = [
        ("devices", r["devices"].to_string()),
        ("faults", r["faults"].to_string()),
        ("alarms sent", r["alarms_sent"].to_string()),
        (
            "alarms answered `received`",
            r["alarms_answered"].to_string(),
        ),
        ("alarms stored (each once)", r["alarms_stored"].to_string()),
        (
            "alarms counted in alerts",
            r["alarms_counted_in_alerts"].to_string(),
        ),
        ("alarms lost", r["alarms_lost"].to_string()),
        (
            "alarms counted twice or in no alert",
            r["alarms_counted_twice_or_not_at_all"].to_string(),
        ),
        ("repeats sent by devices", r["alarm_repeats"].to_string()),
        (
            "alarms answered only after 5 s",
            r["alarms_answered_after_5s"].to_string(),
        ),
        (
            "alarms given up by devices",
            r["alarms_given_up_by_devices"].to_string(),
        ),
        (
            "longest wait for `received`",
            secs(&r["max_time_to_received_ms"]),
        ),
        (
            "all answered, after the last new alarm",
            secs(&r["all_answered_after_sending_stopped_ms"]),
        ),
        (
            "false silence alerts",
            r["false_silence_alerts"].to_string(),
        ),
        (
            "a device that stopped beating declared silent after",
            secs(&r["real_silence_declared_after_ms"]),
        ),
        (
            "supervision taken over after the leader's kill -9",
            r["leader_takeover_ms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(secs)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "lost broker sessions counted by vakt",
            r["broker_sessions_lost"].to_string(),
        ),
        (
            "`rate_limited` security events",
            r["rate_limited_events"]
                .as_array()
                .map_or(0, Vec::len)
                .to_string(),
        ),
        ("duration", format!("{} s", r["campaign_s"])),
    ];
    for (measure, value) in rows {
        out.push_str(&format!("| {measure} | {value} |\n"));
    }
    out.push_str(
        "\n| fault | alarms on their way from the fault until all were answered again \
         | of them answered only after 5 s | longest wait | all answered again after |\n\
         |---|---|---|---|---|\n",
    );
    for f in r["per_fault"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            f["fault"].as_str().unwrap_or(""),
            f["alarms_on_their_way"],
            f["answered_after_5s"],
            secs(&f["longest_wait_ms"]),
            secs(&f["all_answered_again_after_ms"]),
        ));
    }
    out
}

/// The database name at the end of a URL.
fn name_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
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
