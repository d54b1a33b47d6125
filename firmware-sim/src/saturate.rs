//! Heartbeats as fast as a broker takes them: every device signs its whole stream before the
//! clock starts, then keeps a window of QoS 1 publishes in flight on its own connection.
//!
//! Every message is one the backend takes in (the device's own key, its own topic, `seq`
//! rising from 0 under one `boot`), so the rate measured is the broker's and the
//! backend's, not the generator's signing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::fleet::FleetDevice;
use crate::protocol::{now_ms, topic};
use crate::signing::signed_body;
use crate::wire::{self, Incoming};

/// A keep-alive the run never comes near: a connection sends all the time once it starts.
const KEEP_ALIVE_S: u16 = 300;
/// How long a device waits for its CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long, after the last publish went out, the acknowledgements may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Publishes written to the socket at once, at most.
const WRITE_BATCH: usize = 64;

/// A saturation run.
#[derive(Debug, Clone)]
pub struct SaturateConfig {
    pub host: String,
    pub port: u16,
    pub devices: Vec<FleetDevice>,
    /// Heartbeats signed per device; the run ends when all are acknowledged.
    pub messages: u32,
    /// QoS 1 publishes each connection keeps unacknowledged, at most (below 65,535).
    pub window: usize,
    /// Stops sending after this long, even with heartbeats left.
    pub duration: Option<Duration>,
    /// Heartbeats a second over all connections, spread evenly; `None`: as fast as the
    /// broker takes them.
    pub rate: Option<f64>,
    /// The boot counter every device signs with; must be newer than the backend has seen.
    pub boot: u32,
    /// Receives (time since the start, heartbeats acknowledged so far) every second.
    pub progress: Option<mpsc::UnboundedSender<(Duration, u64)>>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct SaturateReport {
    pub devices: usize,
    pub connected: usize,
    pub window: usize,
    pub signed: u64,
    pub sent: u64,
    /// Heartbeats the broker acknowledged (PUBACK).
    pub acked: u64,
    pub signing: Duration,
    /// From the first publish to the last PUBACK.
    pub elapsed: Duration,
    /// Unix milliseconds of the first publish and the last PUBACK.
    pub started_ms: i64,
    pub last_ack_ms: i64,
    pub errors: Vec<String>,
}

impl SaturateReport {
    /// PUBACKs a second, over `elapsed`.
    pub fn acked_per_s(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "devices": self.devices,
            "connected": self.connected,
            "window": self.window,
            "signed": self.signed,
            "sent": self.sent,
            "acked": self.acked,
            "signing_s": round3(self.signing.as_secs_f64()),
            "elapsed_s": round3(self.elapsed.as_secs_f64()),
            "acked_per_s": self.acked_per_s().round(),
            "started_unix_ms": self.started_ms,
            "last_ack_unix_ms": self.last_ack_ms,
            "errors": self.errors,
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One device's stream, encoded: every PUBLISH packet back to back, and where each ends.
struct Stream {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// Signs and encodes `messages` heartbeats of `device` under `boot`, seq 0 upwards.
fn encode_stream(device: &FleetDevice, boot: u32, messages: u32) -> anyhow::Result<Stream> {
    let hb_topic = topic(&device.id, "hb");
    let mut bytes = Vec::with_capacity(messages as usize * 200);
    let mut ends = Vec::with_capacity(messages as usize);
    for seq in 0..messages {
        let members = [
            ("batt", json!(80 - (seq % 40) as u8)),
            ("boot", json!(boot)),
            ("chg", json!(0)),
            ("rssi", json!(-70 - (seq % 20) as i16)),
            ("seq", json!(seq)),
            ("ts", json!(now_ms())),
        ];
        let body = signed_body(&device.key, &hb_topic, &members)?;
        // Packet ids cycle 1..=65535; the window keeps a reused one acknowledged.
        let pkid = (seq % 65_535) as u16 + 1;
        bytes.extend_from_slice(&wire::publish_qos1(&hb_topic, pkid, body.as_bytes()));
        ends.push(bytes.len());
    }
    Ok(Stream { bytes, ends })
}

/// What the connections share while running.
struct Tally {
    start: Instant,
    acked: AtomicU64,
    sent: AtomicU64,
    /// Nanoseconds from `start` to the newest PUBACK.
    last_ack_ns: AtomicU64,
    stop: AtomicBool,
}

/// Runs the generator: signs, connects every device, then sends.
pub async fn saturate(cfg: SaturateConfig) -> anyhow::Result<SaturateReport> {
    anyhow::ensure!(
        (1..65_535).contains(&cfg.window),
        "the window must be 1 to 65,534 publishes"
    );
    let signing_started = Instant::now();
    let mut signing = JoinSet::new();
    for (index, device) in cfg.devices.iter().cloned().enumerate() {
        let (boot, messages) = (cfg.boot, cfg.messages);
        signing.spawn_blocking(move || (index, encode_stream(&device, boot, messages)));
    }
    let mut streams: Vec<Option<Stream>> = (0..cfg.devices.len()).map(|_| None).collect();
    while let Some(done) = signing.join_next().await {
        let (index, stream) = done?;
        streams[index] = Some(stream?);
    }
    let signing = signing_started.elapsed();

    let mut connecting = JoinSet::new();
    for (device, stream) in cfg.devices.iter().zip(streams) {
        let (host, port, device) = (cfg.host.clone(), cfg.port, device.clone());
        let stream = stream.expect("every device signed");
        connecting.spawn(async move {
            let socket = connect(&host, port, &device).await;
            (device.id, socket, stream)
        });
    }
    let mut ready = Vec::new();
    let mut errors = Vec::new();
    while let Some(done) = connecting.join_next().await {
        let (id, socket, stream) = done?;
        match socket {
            Ok(socket) => ready.push((socket, stream)),
            Err(e) => errors.push(format!("{id}: {e:#}")),
        }
    }
    let connected = ready.len();

    let tally = Arc::new(Tally {
        start: Instant::now(),
        acked: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        last_ack_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let started_ms = now_ms();
    let mut running = JoinSet::new();
    let pace = cfg
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(connected as f64 / r));
    for (socket, stream) in ready {
        running.spawn(run_connection(
            socket,
            stream,
            cfg.window,
            pace,
            tally.clone(),
        ));
    }
    let ticker = cfg.progress.map(|progress| {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let acked = tally.acked.load(Ordering::Relaxed);
                if progress.send((tally.start.elapsed(), acked)).is_err() {
                    return;
                }
            }
        })
    });
    let stopper = cfg.duration.map(|duration| {
        let tally = tally.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            tally.stop.store(true, Ordering::Relaxed);
        })
    });
    while let Some(done) = running.join_next().await {
        if let Err(e) = done? {
            errors.push(format!("{e:#}"));
        }
    }
    for task in ticker.into_iter().chain(stopper) {
        task.abort();
    }
    let elapsed = Duration::from_nanos(tally.last_ack_ns.load(Ordering::Relaxed));
    Ok(SaturateReport {
        devices: cfg.devices.len(),
        connected,
        window: cfg.window,
        signed: u64::from(cfg.messages) * cfg.devices.len() as u64,
        sent: tally.sent.load(Ordering::Relaxed),
        acked: tally.acked.load(Ordering::Relaxed),
        signing,
        elapsed,
        started_ms,
        last_ack_ms: started_ms + elapsed.as_millis() as i64,
        errors,
    })
}

/// Logs in as the device (client id and username the device id, the password derived
/// from its key) on a clean session.
async fn connect(host: &str, port: u16, device: &FleetDevice) -> anyhow::Result<TcpStream> {
    let login = async {
        let mut socket = TcpStream::connect((host, port)).await?;
        socket.set_nodelay(true)?;
        let password = device.key.mqtt_password();
        socket
            .write_all(&wire::connect(
                &device.id,
                &device.id,
                &password,
                true,
                KEEP_ALIVE_S,
            ))
            .await?;
        let mut buf = Vec::new();
        loop {
            if let Some((packet, _)) = wire::next_packet(&buf).map_err(anyhow::Error::msg)? {
                match packet {
                    Incoming::ConnAck(0) => return Ok(socket),
                    Incoming::ConnAck(code) => bail!("broker refused the login: code {code}"),
                    other => bail!("expected CONNACK, got {other:?}"),
                }
            }
            let mut chunk = [0u8; 64];
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                bail!("broker closed the connection before CONNACK");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, login)
        .await
        .context("no CONNACK in time")?
}

/// Sends the stream with at most `window` unacknowledged, and counts the PUBACKs.
async fn run_connection(
    socket: TcpStream,
    stream: Stream,
    window: usize,
    pace: Option<Duration>,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let (reader, writer) = socket.into_split();
    let room = Arc::new(Semaphore::new(window));
    // How many were sent in all, once the writer is done.
    let (final_tx, final_rx) = watch::channel(None);
    let writing = tokio::spawn(write_stream(
        writer,
        stream,
        room.clone(),
        pace,
        tally.clone(),
        final_tx,
    ));
    if let Err(e) = read_acks(reader, room, tally, final_rx).await {
        // The writer may be waiting for room that never comes.
        writing.abort();
        return Err(e);
    }
    writing.await?
}

async fn write_stream(
    mut writer: OwnedWriteHalf,
    stream: Stream,
    room: Arc<Semaphore>,
    pace: Option<Duration>,
    tally: Arc<Tally>,
    sent_in_all: watch::Sender<Option<u64>>,
) -> anyhow::Result<()> {
    let total = stream.ends.len();
    let mut next = 0;
    let outcome = async {
        while next < total && !tally.stop.load(Ordering::Relaxed) {
            if let Some(pace) = pace {
                // Paced: each heartbeat at its own moment, one at a time.
                tokio::time::sleep_until((tally.start + pace * next as u32).into()).await;
            }
            room.acquire().await?.forget();
            let mut n = 1;
            let batch = if pace.is_some() { 1 } else { WRITE_BATCH };
            let more = (total - next - 1).min(batch - 1);
            while n <= more && room.try_acquire().map(|p| p.forget()).is_ok() {
                n += 1;
            }
            let from = if next == 0 { 0 } else { stream.ends[next - 1] };
            let to = stream.ends[next + n - 1];
            writer.write_all(&stream.bytes[from..to]).await?;
            next += n;
            tally.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        anyhow::Ok(())
    }
    .await;
    sent_in_all.send_replace(Some(next as u64));
    outcome?;
    // Held open until the reader has every PUBACK; DISCONNECT then ends it cleanly.
    sent_in_all.closed().await;
    let _ = writer.write_all(&wire::disconnect()).await;
    Ok(())
}

async fn read_acks(
    mut reader: OwnedReadHalf,
    room: Arc<Semaphore>,
    tally: Arc<Tally>,
    mut sent_in_all: watch::Receiver<Option<u64>>,
) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut acked = 0u64;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let total = *sent_in_all.borrow();
        if total.is_some_and(|total| acked >= total) {
            return Ok(());
        }
        if total.is_some() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
        }
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read?,
            changed = sent_in_all.changed(), if total.is_none() => {
                changed?;
                continue;
            }
            () = sleep_until(deadline) => {
                bail!("{} publishes unacknowledged after {DRAIN_TIMEOUT:?}", total.unwrap_or(0) - acked)
            }
        };
        if read == 0 {
            bail!("the broker closed the connection with {acked} acknowledged");
        }
        buf.extend_from_slice(&chunk[..read]);
        let mut used = 0;
        let mut now_acked = 0;
        while let Some((packet, len)) =
            wire::next_packet(&buf[used..]).map_err(anyhow::Error::msg)?
        {
            used += len;
            if let Incoming::PubAck(_) = packet {
                now_acked += 1;
            }
        }
        buf.drain(..used);
        if now_acked > 0 {
            acked += now_acked;
            room.add_permits(now_acked as usize);
            tally.acked.fetch_add(now_acked, Ordering::Relaxed);
            let at = tally.start.elapsed().as_nanos() as u64;
            tally.last_ack_ns.fetch_max(at, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{verify, DeviceKey};

    #[test]
    fn every_heartbeat_is_signed_with_its_own_seq_under_one_boot() {
        let device = FleetDevice::from(("dev-001".to_owned(), DeviceKey::generate()));
        let stream = encode_stream(&device, 7, 3).unwrap();
        let mut from = 0;
        for (seq, &end) in stream.ends.iter().enumerate() {
            let packet = &stream.bytes[from..end];
            let (parsed, len) = wire::next_packet(packet).unwrap().unwrap();
            assert_eq!(len, packet.len());
            let Incoming::Publish { pkid, .. } = parsed else {
                panic!("not a publish: {parsed:?}")
            };
            assert_eq!(pkid, Some(seq as u16 + 1));
            let body = &packet[packet.iter().position(|&b| b == b'{').unwrap()..];
            let members = verify(&device.key, "vakt/v1/dev/dev-001/hb", body).unwrap();
            assert_eq!(
                (members["boot"].as_u64(), members["seq"].as_u64()),
                (Some(7), Some(seq as u64))
            );
            from = end;
        }
    }
}
