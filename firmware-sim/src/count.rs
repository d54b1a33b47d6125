//! A plain subscriber: an ordinary MQTT client on the devices' uplink that only counts and
//! acknowledges, the yardstick for how fast the broker alone hands a stream out.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::now_ms;
use crate::wire::{self, Incoming};

/// The uplink of every device, as the backend subscribes to it.
pub const UPLINK_FILTER: &str = "vakt/v1/dev/+/+";

const KEEP_ALIVE_S: u16 = 300;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct CountConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// Subscribed at QoS 1.
    pub filter: String,
    /// Stops after this many messages.
    pub expect: Option<u64>,
    /// Stops once no message came for this long, after the first.
    pub idle: Duration,
    /// Stops this long after subscribing, at the latest.
    pub duration: Option<Duration>,
}

/// What the subscriber received.
#[derive(Debug, Clone, Default)]
pub struct CountReport {
    pub received: u64,
    /// Of those, marked by the broker as redeliveries.
    pub redelivered: u64,
    pub subscribed_ms: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// From the first message to the last.
    pub window: Duration,
}

impl CountReport {
    /// Messages a second over the window in which they arrived.
    pub fn per_s(&self) -> f64 {
        self.received as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "received": self.received,
            "redelivered": self.redelivered,
            "subscribed_unix_ms": self.subscribed_ms,
            "first_unix_ms": self.first_ms,
            "last_unix_ms": self.last_ms,
            "window_s": (self.window.as_secs_f64() * 1000.0).round() / 1000.0,
            "per_s": self.per_s().round(),
        })
    }
}

/// Connects and subscribes; `subscribed` is called once the broker granted the subscription,
/// then messages are counted until one of the config's ends.
pub async fn count(cfg: CountConfig, subscribed: impl FnOnce()) -> anyhow::Result<CountReport> {
    let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, login(&cfg))
        .await
        .context("no CONNACK/SUBACK in time")??;
    let mut report = CountReport {
        subscribed_ms: now_ms(),
        ..CountReport::default()
    };
    subscribed();
    let opened = Instant::now();
    let end = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 128 * 1024];
    let mut acks = Vec::with_capacity(16 * 1024);
    while cfg.expect.is_none_or(|n| report.received < n) {
        let quiet_until = tokio::time::Instant::from_std(last.unwrap_or(opened)) + cfg.idle;
        let stop_at = match (end, first) {
            (Some(end), Some(_)) => end.min(quiet_until),
            (Some(end), None) => end,
            (None, Some(_)) => quiet_until,
            (None, None) => tokio::time::Instant::now() + Duration::from_secs(86_400),
        };
        let n = tokio::select! {
            n = socket.read(&mut chunk) => n?,
            () = tokio::time::sleep_until(stop_at) => break,
        };
        if n == 0 {
            bail!(
                "the broker closed the connection after {} messages",
                report.received
            );
        }
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some((packet, len)) =
            wire::next_packet(&buf[used..]).map_err(anyhow::Error::msg)?
        {
            used += len;
            if let Incoming::Publish { qos, pkid, dup } = packet {
                report.received += 1;
                report.redelivered += u64::from(dup);
                if let (1, Some(pkid)) = (qos, pkid) {
                    wire::puback(&mut acks, pkid);
                }
                first.get_or_insert(now);
                last = Some(now);
            }
        }
        buf.drain(..used);
        if !acks.is_empty() {
            socket.write_all(&acks).await?;
            acks.clear();
        }
    }
    let _ = socket.write_all(&wire::disconnect()).await;
    let since_subscribed = |at: Option<Instant>| {
        at.map(|at| report.subscribed_ms + at.duration_since(opened).as_millis() as i64)
    };
    report.first_ms = since_subscribed(first);
    report.last_ms = since_subscribed(last);
    report.window = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    };
    Ok(report)
}

async fn login(cfg: &CountConfig) -> anyhow::Result<TcpStream> {
    let mut socket = TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
    socket.set_nodelay(true)?;
    socket
        .write_all(&wire::connect(
            &cfg.client_id,
            &cfg.username,
            &cfg.password,
            true,
            KEEP_ALIVE_S,
        ))
        .await?;
    socket
        .write_all(&wire::subscribe_qos1(1, &cfg.filter))
        .await?;
    let mut buf = Vec::new();
    loop {
        let mut used = 0;
        while let Some((packet, len)) =
            wire::next_packet(&buf[used..]).map_err(anyhow::Error::msg)?
        {
            used += len;
            match packet {
                Incoming::ConnAck(0) => {}
                Incoming::ConnAck(code) => bail!("broker refused the login: code {code}"),
                Incoming::SubAck(codes) if codes.iter().any(|&c| c & 0x80 != 0) => {
                    bail!("broker refused the subscription to {}", cfg.filter)
                }
                Incoming::SubAck(_) => return Ok(socket),
                other => bail!("expected CONNACK and SUBACK, got {other:?}"),
            }
        }
        buf.drain(..used);
        let mut chunk = [0u8; 256];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            bail!("broker closed the connection during login");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
