//! `firmware-sim` command line: one device's messages, or a fleet for demos and load tests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use firmware_sim::{
    boot_from_clock, count, is_valid_device_id, run_fleet, saturate, Burst, CountConfig, DeviceKey,
    DeviceTls, Fix, FleetConfig, FleetDevice, FleetEvent, FleetReport, SaturateConfig, SimDevice,
    SimOptions, FLEET_FW, FLEET_MODEL, UPLINK_FILTER,
};
use tokio::sync::{mpsc, watch};

/// How long a one-shot command waits for the broker's PUBACK.
const PUBACK_WAIT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "firmware-sim",
    version,
    about = "Simulated vakt alarm devices (protocol v1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a birth message.
    Hello {
        #[command(flatten)]
        device: DeviceArgs,
        #[arg(long, default_value = FLEET_FW)]
        fw: String,
        #[arg(long, default_value = FLEET_MODEL)]
        model: String,
        /// Heartbeat interval announced, seconds.
        #[arg(long = "hb-interval", default_value_t = 60)]
        hb: u32,
    },
    /// Send one heartbeat.
    Hb {
        #[command(flatten)]
        device: DeviceArgs,
        #[arg(long, default_value_t = 87, value_parser = clap::value_parser!(u8).range(0..=100))]
        batt: u8,
        /// 1 when on the charger.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        chg: u8,
        /// dBm.
        #[arg(long, default_value_t = -71, allow_negative_numbers = true)]
        rssi: i16,
    },
    /// Send an alarm and wait for the backend's signed "received" ack.
    Alarm {
        #[command(flatten)]
        device: DeviceArgs,
        #[arg(long, default_value = "panic")]
        kind: String,
        #[arg(long, allow_negative_numbers = true, requires = "lon")]
        lat: Option<f64>,
        #[arg(long, allow_negative_numbers = true, requires = "lat")]
        lon: Option<f64>,
        /// Metres.
        #[arg(long, default_value_t = 10)]
        acc: u32,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        batt: Option<u8>,
        /// Seconds to wait for the ack.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
    },
    /// Send a position report.
    Pos {
        #[command(flatten)]
        device: DeviceArgs,
        #[arg(long, allow_negative_numbers = true)]
        lat: f64,
        #[arg(long, allow_negative_numbers = true)]
        lon: f64,
        /// Metres.
        #[arg(long, default_value_t = 10)]
        acc: u32,
        /// Speed, cm/s.
        #[arg(long)]
        spd: Option<u32>,
    },
    /// Run a fleet, printing every alarm and its ack latency.
    Fleet(FleetArgs),
    /// Run a fleet, then print a JSON summary of counts and latencies.
    Load {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Every device sends --messages QoS 1 messages as fast as the broker takes
    /// them (every --alarm-every-th a panic alarm, the rest heartbeats), then
    /// waits up to --wait seconds for the "received" of every alarm, repeating
    /// them meanwhile; prints the JSON summary with a per-device list. Fails
    /// (after the report) if any alarm is still unanswered.
    Burst(BurstArgs),
    /// Every device signs --messages heartbeats (its own key, seq from 0 under one boot)
    /// before the clock starts, then publishes them at QoS 1 on a connection of its own,
    /// keeping --window unacknowledged: as fast as the broker takes them. Prints a JSON
    /// line every second and a JSON summary (PUBACKs a second) at the end. Plain TCP only.
    Saturate(SaturateArgs),
    /// A plain subscriber: logs in with its own credentials, subscribes at QoS 1 to the
    /// devices' uplink, acknowledges and counts what arrives. Prints `{"subscribed":true}`
    /// once subscribed, then a JSON summary with the rate over the window in which the
    /// messages arrived. Plain TCP only.
    Count(CountArgs),
}

#[derive(Args)]
struct BrokerArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Default: 1883, or 8883 with --tls-ca.
    #[arg(long)]
    port: Option<u16>,
    /// Connect over TLS (mqtts), trusting only the CA certificate(s) in this PEM file; the
    /// broker's certificate must name --host.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

impl BrokerArgs {
    fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls_ca.is_some() { 8883 } else { 1883 })
    }

    fn tls(&self) -> anyhow::Result<Option<DeviceTls>> {
        self.tls_ca
            .as_deref()
            .map(DeviceTls::from_ca_file)
            .transpose()
            .context("--tls-ca")
    }

    fn fleet(self, devices: Vec<FleetDevice>) -> anyhow::Result<FleetConfig> {
        let (port, tls) = (self.port(), self.tls()?);
        let mut cfg = FleetConfig::new(self.host, port, devices);
        cfg.tls = tls;
        Ok(cfg)
    }
}

#[derive(Args)]
struct DeviceArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[arg(long)]
    id: String,
    /// The device key, 64 hex characters.
    #[arg(long)]
    key: DeviceKey,
    /// Boot counter; by default one more than the last command used for this
    /// device (kept under $XDG_STATE_HOME/firmware-sim), and at least Unix seconds.
    #[arg(long)]
    boot: Option<u32>,
}

#[derive(Args)]
struct FleetArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Lines of `id key [lat lon]`; `#` starts a comment.
    #[arg(long)]
    devices: PathBuf,
    /// Heartbeat interval, seconds.
    #[arg(long, default_value_t = 30)]
    hb: u64,
    /// Mean seconds between alarms across the fleet; 0: none.
    #[arg(long, default_value_t = 30.0)]
    alarm_every: f64,
    /// Seconds between position reports of devices with a home; 0: none.
    #[arg(long, default_value_t = 0)]
    pos_every: u64,
    /// Seconds; 0: until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// New connections per second; 0: no limit.
    #[arg(long, default_value_t = 50)]
    connect_rate: u32,
    /// Further listener ports of the same broker, comma-separated: the devices take --port
    /// and these in turn. One address reaches one port over at most the loopback's
    /// ephemeral range (about 28,000 connections on Linux): a larger fleet from one machine
    /// needs more ports.
    #[arg(long, value_delimiter = ',')]
    more_ports: Vec<u16>,
}

#[derive(Args)]
struct BurstArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Lines of `id key [lat lon]`; `#` starts a comment.
    #[arg(long, visible_alias = "devices-file")]
    devices: PathBuf,
    /// Messages per device after its hello.
    #[arg(long, default_value_t = 1000)]
    messages: u32,
    /// Every n-th message is a panic alarm; 0: heartbeats only.
    #[arg(long, default_value_t = 50)]
    alarm_every: u32,
    /// Seconds each device waits, after its last message, for the answers.
    #[arg(long, default_value_t = 120.0)]
    wait: f64,
    /// New connections per second; 0: no limit.
    #[arg(long, default_value_t = 50)]
    connect_rate: u32,
    /// Further listener ports of the same broker, comma-separated: the devices take --port
    /// and these in turn. One address reaches one port over at most the loopback's
    /// ephemeral range (about 28,000 connections on Linux): a larger fleet from one machine
    /// needs more ports.
    #[arg(long, value_delimiter = ',')]
    more_ports: Vec<u16>,
    /// Unanswered alarms each device keeps repeating (the protocol asks for at least 16).
    #[arg(long, default_value_t = 16)]
    keep_unanswered: usize,
    /// A storm: every device connects first, and all send their bursts at the same moment
    /// once the last one is connected (`together_s` in the summary: from that moment to
    /// the last `received`).
    #[arg(long)]
    together: bool,
    /// Write the JSON summary here instead of to standard output.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct SaturateArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Lines of `id key [lat lon]`; `#` starts a comment. One connection per device.
    #[arg(long)]
    devices: PathBuf,
    /// Heartbeats per device, all signed before the start (about 200 bytes each in memory).
    #[arg(long, default_value_t = 1000)]
    messages: u32,
    /// QoS 1 publishes each connection keeps unacknowledged.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Seconds; stop sending after this long even with heartbeats left. 0: send them all.
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Heartbeats a second over all devices, spread evenly; 0: as fast as the broker takes
    /// them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Boot counter signed into every heartbeat; by default Unix seconds, so it is newer
    /// than any earlier run's.
    #[arg(long)]
    boot: Option<u32>,
    /// Write the JSON summary here as well.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct CountArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long)]
    username: String,
    #[arg(long, default_value = "")]
    password: String,
    /// Default: the username.
    #[arg(long)]
    client_id: Option<String>,
    /// E.g. `$share/count/vakt/v1/dev/+/+`, the shared form the backend uses.
    #[arg(long, default_value = UPLINK_FILTER)]
    filter: String,
    /// Stop after this many messages.
    #[arg(long)]
    expect: Option<u64>,
    /// Stop once no message came for this many seconds, after the first.
    #[arg(long, default_value_t = 10.0)]
    idle: f64,
    /// Seconds after subscribing to stop at the latest; 0: no limit.
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Write the JSON summary here as well.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Option<Duration>> {
    (s > 0.0)
        .then(|| Duration::try_from_secs_f64(s))
        .transpose()
        .with_context(|| what.to_owned())
}

fn print_summary(json: &serde_json::Value, report: Option<&Path>) -> anyhow::Result<()> {
    let line = serde_json::to_string(json)?;
    println!("{line}");
    if let Some(path) = report {
        std::fs::write(path, line + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn run_saturate(args: SaturateArgs) -> anyhow::Result<()> {
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut before = 0;
        while let Some((at, acked)) = progress.recv().await {
            let at: Duration = at;
            println!(
                "{}",
                serde_json::json!({"elapsed_s": at.as_secs(), "acked": acked, "per_s": acked - before})
            );
            before = acked;
        }
    });
    let cfg = SaturateConfig {
        host: args.host,
        port: args.port,
        devices: read_devices(&args.devices)?,
        messages: args.messages,
        window: args.window,
        duration: seconds(args.duration, "--duration")?,
        rate: Some(args.rate),
        boot: args.boot.unwrap_or_else(boot_from_clock),
        progress: Some(progress_tx),
    };
    let report = saturate(cfg).await?;
    printer.await?;
    print_summary(&report.to_json(), args.report.as_deref())?;
    eprintln!(
        "{} of {} devices connected, window {}: {} heartbeats acknowledged in {:.2} s, {:.0} a second",
        report.connected,
        report.devices,
        report.window,
        report.acked,
        report.elapsed.as_secs_f64(),
        report.acked_per_s()
    );
    anyhow::ensure!(
        report.errors.is_empty(),
        "{} connections failed: {}",
        report.errors.len(),
        report.errors.join("; ")
    );
    Ok(())
}

async fn run_count(args: CountArgs) -> anyhow::Result<()> {
    let cfg = CountConfig {
        host: args.host,
        port: args.port,
        client_id: args.client_id.unwrap_or_else(|| args.username.clone()),
        username: args.username,
        password: args.password,
        filter: args.filter,
        expect: args.expect,
        idle: seconds(args.idle, "--idle")?.unwrap_or(Duration::from_secs(10)),
        duration: seconds(args.duration, "--duration")?,
    };
    let report = count(cfg, || {
        println!("{}", serde_json::json!({"subscribed": true}))
    })
    .await?;
    print_summary(&report.to_json(), args.report.as_deref())?;
    eprintln!(
        "{} messages in {:.2} s, {:.0} a second",
        report.received,
        report.window.as_secs_f64(),
        report.per_s()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firmware-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Hello {
            device,
            fw,
            model,
            hb,
        } => {
            let sim = device.connect().await?;
            let sent = sim.hello(&fw, &model, hb).await;
            confirm(sim, "hello", sent).await
        }
        Command::Hb {
            device,
            batt,
            chg,
            rssi,
        } => {
            let sim = device.connect().await?;
            let sent = sim.heartbeat(batt, chg == 1, rssi).await;
            confirm(sim, "hb", sent).await
        }
        Command::Pos {
            device,
            lat,
            lon,
            acc,
            spd,
        } => {
            let fix = Fix::from_degrees(lat, lon, acc)?;
            let sim = device.connect().await?;
            let sent = sim.position(fix, spd).await;
            confirm(sim, "pos", sent).await
        }
        Command::Alarm {
            device,
            kind,
            lat,
            lon,
            acc,
            batt,
            wait,
        } => {
            let fix = match (lat, lon) {
                (Some(lat), Some(lon)) => Some(Fix::from_degrees(lat, lon, acc)?),
                _ => None,
            };
            let wait = Duration::try_from_secs_f64(wait).context("--wait")?;
            let sim = device.connect().await?;
            let outcome = alarm_and_wait(&sim, &kind, fix, batt, wait).await;
            sim.disconnect().await?;
            outcome
        }
        Command::Fleet(args) => {
            let report = fleet(args, true).await?;
            eprintln!("{}", summary_line(&report));
            Ok(())
        }
        Command::Load { fleet: args } => {
            let report = fleet(args, false).await?;
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            Ok(())
        }
        Command::Burst(args) => {
            let out = args.report.clone();
            let report = burst(args).await?;
            let json = serde_json::to_string_pretty(&report.to_json())?;
            match out {
                Some(path) => std::fs::write(&path, json + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{json}"),
            }
            eprintln!("{}", summary_line(&report));
            anyhow::ensure!(
                report.unanswered == 0,
                "{} of {} alarms still unanswered",
                report.unanswered,
                report.alarms
            );
            Ok(())
        }
        Command::Saturate(args) => run_saturate(args).await,
        Command::Count(args) => run_count(args).await,
    }
}

impl DeviceArgs {
    async fn connect(self) -> anyhow::Result<SimDevice> {
        anyhow::ensure!(
            is_valid_device_id(&self.id),
            "invalid device id {:?}",
            self.id
        );
        let boot = match self.boot {
            Some(boot) => boot,
            None => next_boot(&self.id),
        };
        let (port, tls) = (self.broker.port(), self.broker.tls()?);
        let opts = SimOptions {
            host: self.broker.host,
            port,
            device_id: self.id,
            key: self.key,
            boot,
        };
        SimDevice::connect_over(opts, tls.as_ref()).await
    }
}

/// Every command is a device start, and the backend drops a repeated
/// `(boot, seq)`; so, like a device's flash, a file per device keeps the
/// counter rising even for two commands within the same second.
fn next_boot(id: &str) -> u32 {
    let dir = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("firmware-sim");
    let path = dir.join(format!("{id}.boot"));
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    let boot = last
        .map_or(0, |last| last.saturating_add(1))
        .max(boot_from_clock());
    let kept = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, boot.to_string()));
    if let Err(e) = kept {
        eprintln!("warning: boot counter not kept in {}: {e}", path.display());
    }
    boot
}

/// Waits for the PUBACK of what was sent, then disconnects cleanly.
async fn confirm(
    sim: SimDevice,
    suffix: &str,
    sent: anyhow::Result<(u32, u32)>,
) -> anyhow::Result<()> {
    let id = sim.device_id().to_owned();
    let acked = match &sent {
        Ok(_) => sim.flush(PUBACK_WAIT).await,
        Err(_) => Ok(()),
    };
    sim.disconnect().await?;
    let (boot, seq) = sent?;
    acked?;
    println!("{suffix} sent by {id}: boot={boot} seq={seq}");
    Ok(())
}

async fn alarm_and_wait(
    sim: &SimDevice,
    kind: &str,
    fix: Option<Fix>,
    batt: Option<u8>,
    wait: Duration,
) -> anyhow::Result<()> {
    let (boot, seq) = sim.alarm(kind, fix, batt).await?;
    println!(
        "alarm {kind} sent by {}: boot={boot} seq={seq}",
        sim.device_id()
    );
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, sim.feedback()).await {
            Err(_) => bail!("no \"received\" ack for boot={boot} seq={seq} within {wait:?}"),
            Ok(Ok(ack)) if (ack.boot, ack.seq) == (boot, seq) && ack.st == "received" => {
                println!("ack {} for boot={boot} seq={seq} at ts={}", ack.st, ack.ts);
                return Ok(());
            }
            // Acks for older alarms wait in the persistent session; not ours.
            Ok(Ok(_)) => {}
            // A forged ack must not count; the real one may still come.
            Ok(Err(e)) => eprintln!("ignored: {e:#}"),
        }
    }
}

async fn burst(args: BurstArgs) -> anyhow::Result<FleetReport> {
    let devices = read_devices(&args.devices)?;
    let mut cfg = args.broker.fleet(devices)?;
    cfg.burst = Some(Burst {
        messages: args.messages,
        alarm_every: args.alarm_every,
        wait: Duration::try_from_secs_f64(args.wait).context("--wait")?,
        together: args.together,
    });
    cfg.alarm_every = None;
    cfg.connect_rate = args.connect_rate;
    cfg.more_ports = args.more_ports;
    cfg.keep_unanswered = args.keep_unanswered;
    cfg.stop = Some(stop_on_ctrl_c());
    run_printing(cfg, false).await
}

/// Ctrl-C asks the run to stop; until then it runs on.
fn stop_on_ctrl_c() -> watch::Receiver<bool> {
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
        // Holding the sender until then keeps the fleet from stopping on its own.
        drop(stop_tx);
    });
    stop
}

async fn fleet(args: FleetArgs, print_alarms: bool) -> anyhow::Result<FleetReport> {
    let devices = read_devices(&args.devices)?;
    let stop = stop_on_ctrl_c();
    let mut cfg = args.broker.fleet(devices)?;
    cfg.heartbeat = Duration::from_secs(args.hb);
    cfg.alarm_every = (args.alarm_every > 0.0)
        .then(|| Duration::try_from_secs_f64(args.alarm_every))
        .transpose()
        .context("--alarm-every")?;
    cfg.position_every = (args.pos_every > 0).then(|| Duration::from_secs(args.pos_every));
    cfg.duration = (args.duration > 0).then(|| Duration::from_secs(args.duration));
    cfg.connect_rate = args.connect_rate;
    cfg.more_ports = args.more_ports;
    cfg.stop = Some(stop);
    run_printing(cfg, print_alarms).await
}

/// Runs the fleet, printing connect failures and bad acks (and with `print_alarms` every
/// alarm and its answer) as they happen.
async fn run_printing(mut cfg: FleetConfig, print_alarms: bool) -> anyhow::Result<FleetReport> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    cfg.events = Some(events_tx);
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                FleetEvent::Alarm {
                    device,
                    kind,
                    boot,
                    seq,
                } if print_alarms => println!("alarm {device} {kind} boot={boot} seq={seq}"),
                FleetEvent::Received {
                    device,
                    boot,
                    seq,
                    latency,
                } if print_alarms => println!(
                    "received {device} boot={boot} seq={seq} after {:.1} ms",
                    latency.as_secs_f64() * 1000.0
                ),
                FleetEvent::ConnectFailed { device, error } => {
                    eprintln!("connect failed {device}: {error}")
                }
                FleetEvent::BadAck { device, error } => eprintln!("bad ack {device}: {error}"),
                _ => {}
            }
        }
    });
    let report = run_fleet(cfg).await?;
    // The config's event sender is gone with the run, so the printer drains and ends.
    printer.await?;
    Ok(report)
}

fn read_devices(path: &Path) -> anyhow::Result<Vec<FleetDevice>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut devices = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let device =
            parse_device_line(line).with_context(|| format!("{}:{}", path.display(), index + 1))?;
        devices.push(device);
    }
    anyhow::ensure!(!devices.is_empty(), "{} lists no devices", path.display());
    Ok(devices)
}

fn parse_device_line(line: &str) -> anyhow::Result<FleetDevice> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let home = match fields.len() {
        2 => None,
        4 => Some((
            fields[2].parse().context("latitude")?,
            fields[3].parse().context("longitude")?,
        )),
        n => bail!("expected `id key [lat lon]`, got {n} fields"),
    };
    Ok(FleetDevice {
        id: fields[0].to_owned(),
        key: fields[1].parse()?,
        home,
    })
}

fn summary_line(report: &FleetReport) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        )
    };
    format!(
        "{} devices, {} connected, {} heartbeats, {} alarms, {} received, {} unanswered, {} repeats; latency median {} p99 {}",
        report.devices,
        report.connected,
        report.heartbeats,
        report.alarms,
        report.received,
        report.unanswered,
        report.repeats,
        ms(report.median_latency()),
        ms(report.p99_latency()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_line_is_id_key_and_an_optional_home() {
        let key = "ab".repeat(32);
        let plain = parse_device_line(&format!("dev-1 {key}")).unwrap();
        assert_eq!((plain.id.as_str(), plain.home), ("dev-1", None));
        let placed = parse_device_line(&format!("dev-2 {key} 59.3293 -18.0686")).unwrap();
        assert_eq!(placed.home, Some((59.3293, -18.0686)));
        assert!(parse_device_line(&format!("dev-3 {key} 59.3")).is_err());
        assert!(parse_device_line("dev-4 nothex").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
