//! Alarm to screen, measured from the outside: opens `--consoles` live streams
//! (`/api/alerts/stream`) on a running `vakt serve`, sends panic alarms from real signed
//! devices (round robin over `--devices`, one every `--every-ms`), and times each alarm's
//! alert event on every stream.
//!
//! For each alarm it takes: from the device's publish to the first and to the last console
//! having the event, and from the alert's `last_at` (the ingest's clock when it took the
//! alarm in, just before the commit; milliseconds) to the last console. Everything runs on
//! one machine, so the clocks are one. With `--pid`, vakt's resident memory with no stream
//! open and with all of them. It also reads vakt's own histograms from `/metrics` before
//! and after and gives their quantiles over the run, side by side. The last line is JSON.
//!
//! ```sh
//! cargo bench --bench live_stream -- --url http://127.0.0.1:8080 --token T \
//!     --mqtt-port 1883 --devices probes.txt --consoles 1000 --alarms 50
//! ```
//! `benches/alarm-latency.sh` and `benches/consoles.sh` set up vakt, the broker and the
//! devices and run it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use firmware_sim::{boot_from_clock, DeviceKey, SimDevice, SimOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// vakt's HTTP address.
    #[arg(long)]
    url: String,
    /// A bearer token of an officer or coordinator who sees every region.
    #[arg(long)]
    token: String,
    #[arg(long, default_value = "127.0.0.1")]
    mqtt_host: String,
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// Lines of `id key` of issued alarm devices that send the alarms.
    #[arg(long)]
    devices: PathBuf,
    /// Live streams to open.
    #[arg(long, default_value_t = 1)]
    consoles: usize,
    /// Alarms to send.
    #[arg(long, default_value_t = 50)]
    alarms: usize,
    /// Milliseconds between two alarms (from the devices in turn).
    #[arg(long, default_value_t = 200)]
    every_ms: u64,
    /// vakt's process id, for its memory with and without the streams.
    #[arg(long)]
    pid: Option<u32>,
    /// `cargo bench` adds it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Microseconds since the epoch: the one clock of the machine.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One event as the streams saw it: by event id.
#[derive(Default)]
struct Seen {
    first_us: i64,
    last_us: i64,
    streams: usize,
    /// From the first stream that had it: the alert's device and its `last_at`.
    device: Option<String>,
    taken_in_us: i64,
}

type Board = Arc<Mutex<HashMap<i64, Seen>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let rss_before = args.pid.map(rss_kib).transpose()?;

    let board: Board = Arc::default();
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    // Opened a few hundred at a time, as consoles coming on duty would.
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..args.consoles {
        let (http, url, token) = (http.clone(), args.url.clone(), args.token.clone());
        let (board, open_tx, gate) = (board.clone(), open_tx.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let resp = http
                .get(format!("{url}/api/alerts/stream"))
                .bearer_auth(token)
                .send()
                .await;
            drop(permit);
            match resp {
                Ok(r) if r.status().is_success() => {
                    let _ = open_tx.send(Ok(())).await;
                    watch(r, board).await;
                }
                Ok(r) => {
                    let _ = open_tx
                        .send(Err(anyhow::anyhow!("stream: {}", r.status())))
                        .await;
                }
                Err(e) => {
                    let _ = open_tx.send(Err(e.into())).await;
                }
            }
        });
    }
    drop(open_tx);
    for _ in 0..args.consoles {
        open_rx.recv().await.context("a stream task ended")??;
    }
    eprintln!("{} streams open", args.consoles);
    // Let the streams' first credential checks settle before the memory is read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_with = args.pid.map(rss_kib).transpose()?;

    let devices = connect_devices(&args).await?;
    let metrics_before = metrics(&http, &args.url).await?;
    let mut published: Vec<(String, i64)> = Vec::with_capacity(args.alarms);
    let mut tick = tokio::time::interval(Duration::from_millis(args.every_ms));
    for i in 0..args.alarms {
        tick.tick().await;
        let device = &devices[i % devices.len()];
        let at = now_us();
        device.alarm("panic", None, None).await?;
        published.push((device.device_id().to_owned(), at));
    }
    // Long enough for the slowest stream, short against any sane latency.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics_after = metrics(&http, &args.url).await?;

    let report = match_events(&board, &published, args.consoles);
    let server: Vec<(&str, [f64; 3])> = [
        "vakt_alarm_to_console_seconds",
        "vakt_live_stream_seconds",
        "vakt_message_commit_seconds",
    ]
    .into_iter()
    .map(|name| {
        let h = histogram_delta(&metrics_before, &metrics_after, name);
        (name, [0.5, 0.99, 1.0].map(|q| quantile(&h, q) * 1e3))
    })
    .collect();

    println!(
        "consoles {}, alarms {} sent, {} on every stream, {} missed by some stream",
        args.consoles, args.alarms, report.complete, report.incomplete
    );
    println!("outside (ms)                        p50      p99      max");
    for (name, v) in [
        ("publish -> first console", &report.to_first),
        ("publish -> last console", &report.to_last),
        ("take-in -> last console", &report.taken_in_to_last),
    ] {
        let [p50, p99, max] = summary(v);
        println!("{name:<32} {p50:>7.2}  {p99:>7.2}  {max:>7.2}");
    }
    println!("vakt's histograms over the run (ms, interpolated in their buckets)");
    for (name, [p50, p99, max]) in &server {
        println!("{name:<32} {p50:>7.2}  {p99:>7.2}  (top bucket {max:.0})");
    }
    let per_console = match (rss_before, rss_with) {
        (Some(b), Some(w)) if args.consoles > 0 => {
            let per = (w as f64 - b as f64) / args.consoles as f64;
            println!("vakt RSS: {b} KiB with no stream, {w} KiB with {} streams: {per:.1} KiB per console", args.consoles);
            Some(per)
        }
        _ => None,
    };
    let q = |v: &Vec<f64>| summary(v).to_vec();
    println!(
        "{}",
        json!({
            "consoles": args.consoles,
            "alarms": args.alarms,
            "complete": report.complete,
            "incomplete": report.incomplete,
            "publish_to_first_ms": q(&report.to_first),
            "publish_to_last_ms": q(&report.to_last),
            "taken_in_to_last_ms": q(&report.taken_in_to_last),
            "server_ms": server.iter().map(|(n, v)| (n.to_string(), json!(v[..2]))).collect::<serde_json::Map<_, _>>(),
            "rss_kib": [rss_before, rss_with],
            "kib_per_console": per_console,
        })
    );
    if report.complete == 0 {
        bail!("no alarm reached every stream");
    }
    Ok(())
}

/// Reads one stream until it ends, noting when each `alert` event came.
async fn watch(resp: reqwest::Response, board: Board) {
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        let at = now_us();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
            if field("event:").map(str::trim) != Some("alert") {
                continue;
            }
            let Some(id) = field("id:").and_then(|v| v.trim().parse::<i64>().ok()) else {
                continue;
            };
            let mut board = board.lock().expect("board");
            let seen = board.entry(id).or_default();
            if seen.streams == 0 {
                // Only the first stream reads the JSON: the others cost a lookup.
                let data: Value = field("data:")
                    .and_then(|d| serde_json::from_str(d.trim()).ok())
                    .unwrap_or_default();
                seen.device = data["device_id"].as_str().map(str::to_owned);
                seen.taken_in_us = data["last_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(0, |t| t.timestamp_micros());
                seen.first_us = at;
            }
            seen.streams += 1;
            seen.last_us = seen.last_us.max(at);
        }
    }
}

async fn connect_devices(args: &Args) -> anyhow::Result<Vec<SimDevice>> {
    let text = std::fs::read_to_string(&args.devices)
        .with_context(|| format!("{}", args.devices.display()))?;
    let mut devices = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(id), Some(key)) = (words.next(), words.next()) else {
            bail!("{}: not `id key`: {line}", args.devices.display());
        };
        let device = SimDevice::connect(SimOptions {
            host: args.mqtt_host.clone(),
            port: args.mqtt_port,
            device_id: id.to_owned(),
            key: key.parse::<DeviceKey>().context("device key")?,
            boot: boot_from_clock(),
        })
        .await?;
        device.hello("bench", "bench", 60).await?;
        devices.push(device);
    }
    if devices.is_empty() {
        bail!("{}: no devices", args.devices.display());
    }
    // The hellos are in before the first alarm is timed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(devices)
}

#[derive(Default)]
struct Report {
    to_first: Vec<f64>,
    to_last: Vec<f64>,
    taken_in_to_last: Vec<f64>,
    complete: usize,
    incomplete: usize,
}

/// Each alarm's event is the first one after its publish for its device: a device sends its
/// next alarm only long after this one's event.
fn match_events(board: &Board, published: &[(String, i64)], consoles: usize) -> Report {
    let board = board.lock().expect("board");
    let mut events: Vec<(&i64, &Seen)> = board.iter().collect();
    events.sort_by_key(|(id, _)| **id);
    let mut taken = std::collections::HashSet::new();
    let mut report = Report::default();
    for (device, at) in published {
        let found = events.iter().find(|(id, seen)| {
            seen.device.as_deref() == Some(device) && seen.first_us >= *at && !taken.contains(*id)
        });
        let Some((id, seen)) = found else {
            report.incomplete += 1;
            continue;
        };
        taken.insert(**id);
        if seen.streams < consoles {
            report.incomplete += 1;
            continue;
        }
        report.complete += 1;
        report.to_first.push((seen.first_us - at) as f64 / 1e3);
        report.to_last.push((seen.last_us - at) as f64 / 1e3);
        report
            .taken_in_to_last
            .push((seen.last_us - seen.taken_in_us) as f64 / 1e3);
    }
    report
}

/// p50, p99 and max (nearest rank).
fn summary(values: &[f64]) -> [f64; 3] {
    if values.is_empty() {
        return [f64::NAN; 3];
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    [rank(0.5), rank(0.99), v[v.len() - 1]]
}

async fn metrics(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// A histogram's cumulative buckets `(le, count)` grown between two scrapes.
fn histogram_delta(before: &str, after: &str, name: &str) -> Vec<(f64, f64)> {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| {
                let (le, rest) = l.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, rest.trim().parse().ok()?))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    a.iter()
        .map(|(le, n)| {
            let was = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect()
}

/// The q-quantile, in seconds, interpolated linearly inside its bucket as Prometheus'
/// `histogram_quantile` does; q = 1 gives the upper bound of the highest bucket used.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            if q >= 1.0 {
                return le;
            }
            let within = (rank - lower.1) / (n - lower.1).max(f64::MIN_POSITIVE);
            return lower.0 + (le - lower.0) * within;
        }
        lower = (le, n);
    }
    lower.0
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}
