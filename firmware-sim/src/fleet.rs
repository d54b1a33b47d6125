//! Many simulated devices at once: connect ramp, heartbeats, random alarms or a burst, ack latency.

use std::collections::HashMap;
use std::future::pending;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::rngs::StdRng;
use rand::RngExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{interval, interval_at, Instant, Interval, MissedTickBehavior};

use crate::device::{SimDevice, SimOptions};
use crate::protocol::{boot_from_clock, Fix};
use crate::repeat::KEEP_UNANSWERED;
use crate::signing::DeviceKey;
use crate::tls::DeviceTls;

pub const FLEET_FW: &str = "firmware-sim-0.1.0";
pub const FLEET_MODEL: &str = "sim";

/// Mostly what holders really press or trip, with every other kind now and then.
const ALARM_MIX: [(&str, u32); 7] = [
    ("panic", 40),
    ("fall", 25),
    ("test", 10),
    ("tamper", 8),
    ("low_battery", 8),
    ("cancel", 6),
    ("power_loss", 3),
];

/// About 50 m in 1e-7 degrees of latitude; enough to look like a real fix.
const JITTER_E7: i64 = 4_500;

/// One device of the fleet.
#[derive(Debug, Clone)]
pub struct FleetDevice {
    pub id: String,
    pub key: DeviceKey,
    /// Where its fixes are jittered around, in degrees; `None`: no positions.
    pub home: Option<(f64, f64)>,
}

impl From<(String, DeviceKey)> for FleetDevice {
    fn from((id, key): (String, DeviceKey)) -> Self {
        FleetDevice {
            id,
            key,
            home: None,
        }
    }
}

/// What a fleet run does and for how long.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub host: String,
    pub port: u16,
    /// Further listener ports of the same broker: the devices take `port` and these in
    /// turn. One source address reaches one port through at most the loopback's ephemeral
    /// range (about 28,000 connections on Linux), so a larger fleet on one machine needs
    /// more ports.
    pub more_ports: Vec<u16>,
    /// `Some`: every device connects over TLS (mqtts), trusting this CA.
    pub tls: Option<DeviceTls>,
    pub devices: Vec<FleetDevice>,
    /// Each device's heartbeat interval, also announced in its `hello`.
    pub heartbeat: Duration,
    /// Mean time between alarms across the whole fleet; `None`: no alarms.
    pub alarm_every: Option<Duration>,
    /// Each device with a `home` reports a position this often.
    pub position_every: Option<Duration>,
    /// `None`: until `stop`.
    pub duration: Option<Duration>,
    /// New connections per second, so a large fleet does not connect at once;
    /// 0: no limit.
    pub connect_rate: u32,
    /// The run ends once this holds `true` or its sender is dropped.
    pub stop: Option<watch::Receiver<bool>>,
    /// Receives what happens, for printing or a live view.
    pub events: Option<mpsc::UnboundedSender<FleetEvent>>,
    /// Instead of living on heartbeats and random alarms, every device sends a
    /// burst and the run ends when all are done.
    pub burst: Option<Burst>,
    /// How many unanswered alarms each device keeps repeating.
    pub keep_unanswered: usize,
}

/// Every device sends `messages` QoS 1 messages as fast as the broker takes
/// them, then waits for the backend to answer every alarm among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Messages per device, after its `hello`.
    pub messages: u32,
    /// Every `alarm_every`-th message is a `panic` alarm, the others heartbeats;
    /// 0: heartbeats only.
    pub alarm_every: u32,
    /// How long a device waits after its last message for every alarm's
    /// `received` (repeating them meanwhile) and every PUBACK.
    pub wait: Duration,
    /// A storm: every device connects and says `hello` first, and all start their bursts
    /// at the same moment, once the last one is connected.
    pub together: bool,
}

impl FleetConfig {
    /// Heartbeat 30 s, an alarm about every 30 s, 50 connections a second,
    /// no positions, running until stopped.
    pub fn new(host: impl Into<String>, port: u16, devices: Vec<FleetDevice>) -> Self {
        FleetConfig {
            host: host.into(),
            port,
            more_ports: Vec::new(),
            tls: None,
            devices,
            heartbeat: Duration::from_secs(30),
            alarm_every: Some(Duration::from_secs(30)),
            position_every: None,
            duration: None,
            connect_rate: 50,
            stop: None,
            events: None,
            burst: None,
            keep_unanswered: KEEP_UNANSWERED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    Connected {
        device: String,
    },
    ConnectFailed {
        device: String,
        error: String,
    },
    Alarm {
        device: String,
        kind: &'static str,
        boot: u32,
        seq: u32,
    },
    /// The backend's verified `received` ack for an alarm of this run.
    Received {
        device: String,
        boot: u32,
        seq: u32,
        latency: Duration,
    },
    /// An ack that failed verification: forged, or signed with another key.
    BadAck {
        device: String,
        error: String,
    },
}

/// Counts of a finished run.
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    pub devices: usize,
    /// Devices that connected at least once.
    pub connected: u64,
    pub connect_failures: u64,
    pub heartbeats: u64,
    pub alarms: u64,
    pub positions: u64,
    pub publish_failures: u64,
    /// Verified acks of any state, including ones for earlier runs' alarms.
    pub acks: u64,
    /// Verified `received` acks for alarms sent in this run.
    pub received: u64,
    pub bad_acks: u64,
    /// Alarms of this run still without `received` when the run ended.
    pub unanswered: u64,
    /// Alarm sends after the first, by the devices' repetition.
    pub repeats: u64,
    /// Alarms a device gave up because newer unanswered ones took their place.
    pub dropped_alarms: u64,
    /// Heartbeats the broker acknowledged (PUBACK); not proof that the backend has them.
    pub heartbeats_acked: u64,
    pub elapsed: Duration,
    /// An alarm's first send to its `received` ack, ascending.
    pub latencies: Vec<Duration>,
    /// Per device, by id; filled in a burst run only.
    pub per_device: Vec<DeviceReport>,
    /// A burst sent together: from the moment every device started to the last `received`
    /// of this run.
    pub together_span: Option<Duration>,
}

/// What one device of a burst sent and what came back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    pub id: String,
    /// `(boot, seq)` of every alarm sent, in order.
    pub alarms_sent: Vec<(u32, u32)>,
    /// `(boot, seq)` of those answered `received`, in the order the answers came.
    pub alarms_answered: Vec<(u32, u32)>,
    pub heartbeats_sent: u64,
    /// Heartbeats the broker acknowledged (PUBACK).
    pub heartbeats_acked: u64,
    pub repeats: u64,
    pub dropped_alarms: u64,
}

impl DeviceReport {
    pub fn to_json(&self) -> Value {
        let pairs = |alarms: &[(u32, u32)]| {
            alarms
                .iter()
                .map(|(boot, seq)| json!([boot, seq]))
                .collect::<Vec<_>>()
        };
        json!({
            "id": self.id,
            "alarms_sent": pairs(&self.alarms_sent),
            "alarms_answered": pairs(&self.alarms_answered),
            "heartbeats_sent": self.heartbeats_sent,
            "heartbeats_acked": self.heartbeats_acked,
            "repeats": self.repeats,
            "dropped_alarms": self.dropped_alarms,
        })
    }
}

impl FleetReport {
    /// Nearest-rank percentile, `p` in 0..=100.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, n) - 1])
    }

    pub fn median_latency(&self) -> Option<Duration> {
        self.percentile(50.0)
    }

    pub fn p99_latency(&self) -> Option<Duration> {
        self.percentile(99.0)
    }

    /// The summary `firmware-sim load` and `burst` print; latencies in milliseconds.
    pub fn to_json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "devices": self.devices,
            "connected": self.connected,
            "connect_failures": self.connect_failures,
            "heartbeats": self.heartbeats,
            "alarms": self.alarms,
            "positions": self.positions,
            "publish_failures": self.publish_failures,
            "acks": self.acks,
            "received": self.received,
            "bad_acks": self.bad_acks,
            "unanswered": self.unanswered,
            "repeats": self.repeats,
            "dropped_alarms": self.dropped_alarms,
            "heartbeats_acked": self.heartbeats_acked,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "latency_ms": {
                "samples": self.latencies.len(),
                "median": ms(self.median_latency()),
                "p99": ms(self.p99_latency()),
                "max": ms(self.latencies.last().copied()),
            },
            "together_s": self.together_span.map(|d| d.as_secs_f64()),
            "per_device": self.per_device.iter().map(DeviceReport::to_json).collect::<Vec<_>>(),
        })
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    connect_failures: AtomicU64,
    heartbeats: AtomicU64,
    alarms: AtomicU64,
    positions: AtomicU64,
    publish_failures: AtomicU64,
    acks: AtomicU64,
    bad_acks: AtomicU64,
    unanswered: AtomicU64,
    repeats: AtomicU64,
    dropped_alarms: AtomicU64,
    heartbeats_acked: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    per_device: Mutex<Vec<DeviceReport>>,
    /// When the last `received` of this run arrived.
    last_received: Mutex<Option<Instant>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every device task needs from the run.
struct Run {
    host: String,
    /// The broker's listener ports the devices are spread over; never empty.
    ports: Vec<u16>,
    tls: Option<DeviceTls>,
    heartbeat: Duration,
    position_every: Option<Duration>,
    burst: Option<Burst>,
    keep_unanswered: usize,
    counters: Counters,
    events: Option<mpsc::UnboundedSender<FleetEvent>>,
    /// Alarm triggers of the devices that are connected, for the scheduler.
    ready: Mutex<Vec<mpsc::Sender<&'static str>>>,
    /// A burst sent together: devices not yet ready to start, and the start (when).
    not_ready: AtomicU64,
    start: watch::Sender<Option<Instant>>,
}

impl Run {
    fn emit(&self, event: FleetEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

/// Runs the fleet until `duration` has passed or `stop` says so, then
/// disconnects every device and reports.
pub async fn run_fleet(cfg: FleetConfig) -> anyhow::Result<FleetReport> {
    let started = Instant::now();
    let devices = cfg.devices.len();
    let run = Arc::new(Run {
        host: cfg.host,
        ports: std::iter::once(cfg.port).chain(cfg.more_ports).collect(),
        tls: cfg.tls,
        heartbeat: cfg.heartbeat.max(Duration::from_secs(1)),
        position_every: cfg.position_every,
        burst: cfg.burst,
        keep_unanswered: cfg.keep_unanswered,
        counters: Counters::default(),
        events: cfg.events,
        ready: Mutex::new(Vec::new()),
        not_ready: AtomicU64::new(devices as u64),
        start: watch::channel(None).0,
    });
    let (stop_tx, stop) = watch::channel(false);
    let stopper = async {
        tokio::select! {
            _ = stopped(cfg.stop) => {}
            _ = sleep_or_forever(cfg.duration) => {}
            _ = stopped(Some(stop.clone())) => {}
        }
        stop_tx.send_replace(true);
    };
    let fleet = async {
        let mut tasks = JoinSet::new();
        if let (Some(mean), None) = (cfg.alarm_every, cfg.burst) {
            tasks.spawn(schedule_alarms(mean, Arc::clone(&run), stop.clone()));
        }
        ramp_up(cfg.devices, cfg.connect_rate, &run, &stop, &mut tasks).await;
        let mut panicked = None;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                // The other devices would otherwise run on until someone stops them.
                stop_tx.send_replace(true);
                panicked.get_or_insert(e);
            }
        }
        // A burst ends by itself once every device is done.
        stop_tx.send_replace(true);
        panicked.map_or(Ok(()), Err)
    };
    let ((), outcome) = tokio::join!(stopper, fleet);
    outcome.context("a fleet task panicked")?;

    let c = &run.counters;
    let last_received = *c.last_received.lock().expect("received lock");
    let started_together = *run.start.borrow();
    let mut latencies = std::mem::take(&mut *c.latencies.lock().expect("latency lock"));
    latencies.sort();
    let mut per_device = std::mem::take(&mut *c.per_device.lock().expect("report lock"));
    per_device.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(FleetReport {
        devices,
        connected: c.connected.load(Ordering::Relaxed),
        connect_failures: c.connect_failures.load(Ordering::Relaxed),
        heartbeats: c.heartbeats.load(Ordering::Relaxed),
        alarms: c.alarms.load(Ordering::Relaxed),
        positions: c.positions.load(Ordering::Relaxed),
        publish_failures: c.publish_failures.load(Ordering::Relaxed),
        acks: c.acks.load(Ordering::Relaxed),
        received: latencies.len() as u64,
        bad_acks: c.bad_acks.load(Ordering::Relaxed),
        unanswered: c.unanswered.load(Ordering::Relaxed),
        repeats: c.repeats.load(Ordering::Relaxed),
        dropped_alarms: c.dropped_alarms.load(Ordering::Relaxed),
        heartbeats_acked: c.heartbeats_acked.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
        per_device,
        together_span: started_together
            .zip(last_received)
            .map(|(start, last)| last.saturating_duration_since(start)),
    })
}

async fn stopped(stop: Option<watch::Receiver<bool>>) {
    match stop {
        // An error means the sender is gone: nobody can ask any more, so stop.
        Some(mut stop) => drop(stop.wait_for(|stop| *stop).await),
        None => pending().await,
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => pending().await,
    }
}

async fn ramp_up(
    devices: Vec<FleetDevice>,
    per_second: u32,
    run: &Arc<Run>,
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    let mut ramp = (per_second > 0).then(|| {
        let mut ramp = interval(Duration::from_secs(1) / per_second);
        ramp.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ramp
    });
    for (index, device) in devices.into_iter().enumerate() {
        if let Some(ramp) = &mut ramp {
            tokio::select! {
                _ = stopped(Some(stop.clone())) => return,
                _ = ramp.tick() => {}
            }
        } else if *stop.borrow() {
            return;
        }
        let port = spread_port(&run.ports, index);
        tasks.spawn(run_device(device, port, Arc::clone(run), stop.clone()));
    }
}

/// The listener port of the `index`-th device: the ports in turn, so that each carries an
/// equal share of the fleet.
fn spread_port(ports: &[u16], index: usize) -> u16 {
    ports[index % ports.len()]
}

/// A Poisson process over the connected devices: exponential gaps with the given mean.
async fn schedule_alarms(mean: Duration, run: Arc<Run>, stop: watch::Receiver<bool>) {
    let mut rng = rand::make_rng::<StdRng>();
    let mix = WeightedIndex::new(ALARM_MIX.iter().map(|(_, weight)| weight))
        .expect("the alarm mix has positive weights");
    loop {
        let gap = mean.mul_f64(-(1.0f64 - rng.random::<f64>()).ln());
        tokio::select! {
            _ = stopped(Some(stop.clone())) => return,
            _ = tokio::time::sleep(gap) => {}
        }
        let kind = ALARM_MIX[mix.sample(&mut rng)].0;
        let ready = run.ready.lock().expect("ready lock");
        if !ready.is_empty() {
            // A device too busy to take it just skips this alarm.
            let _ = ready[rng.random_range(0..ready.len())].try_send(kind);
        }
    }
}

async fn run_device(spec: FleetDevice, port: u16, run: Arc<Run>, stop: watch::Receiver<bool>) {
    let connecting = connect_until_stopped(&spec, port, &run);
    let device = tokio::select! {
        _ = stopped(Some(stop.clone())) => return,
        device = connecting => device,
    };
    device.set_keep_unanswered(run.keep_unanswered);
    let (alarm_tx, alarms) = mpsc::channel(4);
    run.ready.lock().expect("ready lock").push(alarm_tx);
    let mut sim = DeviceSim::new(device, spec.home, &run, alarms);
    if sim
        .device
        .hello(FLEET_FW, FLEET_MODEL, run.heartbeat.as_secs() as u32)
        .await
        .is_err()
    {
        bump(&run.counters.publish_failures);
    }
    tokio::select! {
        _ = stopped(Some(stop)) => {}
        _ = sim.act() => {}
    }
    sim.finish();
    let _ = sim.device.disconnect().await;
}

async fn connect_until_stopped(spec: &FleetDevice, port: u16, run: &Run) -> SimDevice {
    let mut backoff = Duration::from_secs(1);
    loop {
        let opts = SimOptions {
            host: run.host.clone(),
            port,
            device_id: spec.id.clone(),
            key: spec.key.clone(),
            boot: boot_from_clock(),
        };
        match SimDevice::connect_over(opts, run.tls.as_ref()).await {
            Ok(device) => {
                bump(&run.counters.connected);
                run.emit(FleetEvent::Connected {
                    device: spec.id.clone(),
                });
                return device;
            }
            Err(e) => {
                bump(&run.counters.connect_failures);
                run.emit(FleetEvent::ConnectFailed {
                    device: spec.id.clone(),
                    error: format!("{e:#}"),
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One connected device's behaviour: a battery that drains and charges, a
/// wandering signal, and fixes around home.
struct DeviceSim<'r> {
    device: SimDevice,
    run: &'r Run,
    rng: StdRng,
    home: Option<Fix>,
    batt: u8,
    charging: bool,
    alarms: mpsc::Receiver<&'static str>,
    /// Alarms of this run still waiting for `received`, by `(boot, seq)`.
    awaiting: HashMap<(u32, u32), Instant>,
    report: DeviceReport,
}

impl<'r> DeviceSim<'r> {
    fn new(
        device: SimDevice,
        home: Option<(f64, f64)>,
        run: &'r Run,
        alarms: mpsc::Receiver<&'static str>,
    ) -> Self {
        let mut rng = rand::make_rng::<StdRng>();
        DeviceSim {
            run,
            home: home.and_then(|(lat, lon)| Fix::from_degrees(lat, lon, 10).ok()),
            batt: rng.random_range(40..=100),
            charging: false,
            rng,
            awaiting: HashMap::new(),
            report: DeviceReport {
                id: device.device_id().to_owned(),
                ..DeviceReport::default()
            },
            device,
            alarms,
        }
    }

    async fn act(&mut self) {
        match self.run.burst {
            Some(burst) => self.burst(burst).await,
            None => self.live().await,
        }
    }

    async fn live(&mut self) {
        // Random phases spread a fleet's heartbeats over the whole interval.
        let mut heartbeat = self.spread_interval(self.run.heartbeat);
        let mut positions = self
            .run
            .position_every
            .filter(|_| self.home.is_some())
            .map(|every| self.spread_interval(every));
        loop {
            tokio::select! {
                _ = heartbeat.tick() => self.heartbeat().await,
                Some(kind) = self.alarms.recv() => self.alarm(kind).await,
                _ = tick_or_never(&mut positions) => self.position().await,
                feedback = self.device.feedback() => self.on_feedback(feedback),
            }
        }
    }

    /// Sends the burst as fast as the broker takes it, taking in acks as they
    /// come, then waits for the rest.
    async fn burst(&mut self, burst: Burst) {
        if burst.together {
            self.start_together().await;
        }
        let mut sent = 0;
        while sent < burst.messages {
            tokio::select! {
                biased;
                feedback = self.device.feedback() => self.on_feedback(feedback),
                () = std::future::ready(()) => {
                    sent += 1;
                    if burst.alarm_every > 0 && sent % burst.alarm_every == 0 {
                        self.alarm("panic").await;
                    } else {
                        self.heartbeat().await;
                    }
                }
            }
        }
        let deadline = Instant::now() + burst.wait;
        while !self.awaiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.device.feedback()).await {
                Ok(feedback) => self.on_feedback(feedback),
                Err(_) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self.device.flush(left).await;
    }

    /// Waits until every device of the run is connected and has said `hello`; the last one
    /// to get there starts them all.
    async fn start_together(&mut self) {
        if self.run.not_ready.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.run.start.send_replace(Some(Instant::now()));
        }
        let mut start = self.run.start.subscribe();
        loop {
            tokio::select! {
                started = start.wait_for(Option::is_some) => {
                    drop(started);
                    return;
                }
                feedback = self.device.feedback() => self.on_feedback(feedback),
            }
        }
    }

    /// Adds this device's end state to the run's counts.
    fn finish(&mut self) {
        let counters = &self.run.counters;
        let hb_acked = self.device.broker_acked("hb");
        counters
            .unanswered
            .fetch_add(self.awaiting.len() as u64, Ordering::Relaxed);
        counters
            .repeats
            .fetch_add(self.device.repeats_sent(), Ordering::Relaxed);
        counters
            .dropped_alarms
            .fetch_add(self.device.dropped_alarms(), Ordering::Relaxed);
        counters
            .heartbeats_acked
            .fetch_add(hb_acked, Ordering::Relaxed);
        if self.run.burst.is_some() {
            let mut report = std::mem::take(&mut self.report);
            report.heartbeats_acked = hb_acked;
            report.repeats = self.device.repeats_sent();
            report.dropped_alarms = self.device.dropped_alarms();
            counters
                .per_device
                .lock()
                .expect("report lock")
                .push(report);
        }
    }

    fn spread_interval(&mut self, every: Duration) -> Interval {
        let phase = every.mul_f64(self.rng.random::<f64>());
        let mut ticks = interval_at(Instant::now() + phase, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    }

    async fn heartbeat(&mut self) {
        if self.charging {
            self.batt = (self.batt + 5).min(100);
            self.charging = self.batt < 100;
        } else if self.rng.random_bool(0.1) {
            self.batt = self.batt.saturating_sub(1);
            self.charging = self.batt <= 15;
        }
        let rssi = self.rng.random_range(-95..=-55);
        let sent = self.device.heartbeat(self.batt, self.charging, rssi).await;
        self.report.heartbeats_sent += u64::from(sent.is_ok());
        self.count(sent.is_ok(), &self.run.counters.heartbeats);
    }

    async fn alarm(&mut self, kind: &'static str) {
        let fix = self.fix();
        let sent_at = Instant::now();
        match self.device.alarm(kind, fix, Some(self.batt)).await {
            Ok((boot, seq)) => {
                self.awaiting.insert((boot, seq), sent_at);
                self.report.alarms_sent.push((boot, seq));
                bump(&self.run.counters.alarms);
                self.run.emit(FleetEvent::Alarm {
                    device: self.device.device_id().to_owned(),
                    kind,
                    boot,
                    seq,
                });
            }
            Err(_) => bump(&self.run.counters.publish_failures),
        }
    }

    async fn position(&mut self) {
        let Some(fix) = self.fix() else { return };
        let spd = self.rng.random_range(0..=150);
        let sent = self.device.position(fix, Some(spd)).await;
        self.count(sent.is_ok(), &self.run.counters.positions);
    }

    fn on_feedback(&mut self, feedback: anyhow::Result<crate::device::Feedback>) {
        let device = self.device.device_id().to_owned();
        let counters = &self.run.counters;
        match feedback {
            Ok(ack) => {
                bump(&counters.acks);
                if ack.st != "received" {
                    return;
                }
                if let Some(sent_at) = self.awaiting.remove(&(ack.boot, ack.seq)) {
                    let latency = sent_at.elapsed();
                    *counters.last_received.lock().expect("received lock") = Some(Instant::now());
                    self.report.alarms_answered.push((ack.boot, ack.seq));
                    counters
                        .latencies
                        .lock()
                        .expect("latency lock")
                        .push(latency);
                    self.run.emit(FleetEvent::Received {
                        device,
                        boot: ack.boot,
                        seq: ack.seq,
                        latency,
                    });
                }
            }
            Err(e) => {
                bump(&counters.bad_acks);
                self.run.emit(FleetEvent::BadAck {
                    device,
                    error: format!("{e:#}"),
                });
            }
        }
    }

    fn fix(&mut self) -> Option<Fix> {
        let home = self.home?;
        Some(Fix {
            lat_e7: home.lat_e7 + self.rng.random_range(-JITTER_E7..=JITTER_E7),
            lon_e7: home.lon_e7 + self.rng.random_range(-JITTER_E7..=JITTER_E7),
            acc_m: self.rng.random_range(5..=30),
        })
    }

    fn count(&self, sent: bool, counter: &AtomicU64) {
        bump(if sent {
            counter
        } else {
            &self.run.counters.publish_failures
        });
    }
}

async fn tick_or_never(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(ms: impl IntoIterator<Item = u64>) -> FleetReport {
        FleetReport {
            latencies: ms.into_iter().map(Duration::from_millis).collect(),
            ..FleetReport::default()
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let report = report_with(1..=100);
        assert_eq!(report.median_latency(), Some(Duration::from_millis(50)));
        assert_eq!(report.p99_latency(), Some(Duration::from_millis(99)));
        assert_eq!(report.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(report.percentile(0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let report = report_with([7]);
        assert_eq!(report.median_latency(), Some(Duration::from_millis(7)));
        assert_eq!(report.p99_latency(), Some(Duration::from_millis(7)));
    }

    #[test]
    fn no_samples_means_no_latency_in_the_summary() {
        let report = report_with([]);
        assert_eq!(report.median_latency(), None);
        assert_eq!(report.to_json()["latency_ms"]["median"], Value::Null);
    }

    #[test]
    fn devices_take_the_listener_ports_in_turn() {
        let ports = [1884, 1885, 1886];
        let taken: Vec<u16> = (0..7).map(|i| spread_port(&ports, i)).collect();
        assert_eq!(taken, [1884, 1885, 1886, 1884, 1885, 1886, 1884]);
        assert_eq!(spread_port(&[1883], 50_000), 1883);
    }

    #[test]
    fn a_pair_of_id_and_key_is_a_device_without_home() {
        let device = FleetDevice::from(("dev-1".to_owned(), DeviceKey::generate()));
        assert_eq!(device.home, None);
    }
}
