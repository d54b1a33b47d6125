//! `vakt health`: asks a running vakt whether it is ready (`/readyz`) or alive (`/healthz`),
//! for container health checks in an image that has no curl. One plain HTTP/1.1 request
//! over a TCP socket: nothing to link for it.
//!
//! It asks `metrics_addr` when that is set, else `http_addr`, as the configuration (the
//! same file and environment as `serve`) names them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// What to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/readyz`: the database answers and the ingest is connected to the broker.
    Ready,
    /// `/healthz`: the process serves HTTP.
    Live,
}

impl Probe {
    fn path(self) -> &'static str {
        match self {
            Probe::Ready => "/readyz",
            Probe::Live => "/healthz",
        }
    }
}

/// Why the answer was not "yes"; each says it in one line.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("nothing answers at {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("no answer from {addr} within {} s", .after.as_secs())]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("{addr} does not answer in plain HTTP{}", if *.tls { " but in TLS: the health check speaks plain HTTP, so give it a port of its own with VAKT_METRICS_ADDR" } else { "" })]
    NotHttp { addr: SocketAddr, tls: bool },
    #[error("not ready ({status}): {reason}")]
    NotReady { status: u16, reason: String },
    #[error("the console at {0} speaks HTTPS (tls_cert) and the health check plain HTTP: give it a port of its own with VAKT_METRICS_ADDR")]
    ConsoleIsHttps(SocketAddr),
}

/// The address to ask: `metrics_addr`, else `http_addr`; one that listens on every
/// interface is asked on the loopback.
pub fn target(config: &Config) -> SocketAddr {
    let mut addr = config.metrics_addr.unwrap_or(config.http_addr);
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr
}

/// Asks, and says what the answer was when it is OK.
pub async fn check(config: &Config, probe: Probe, within: Duration) -> Result<String, HealthError> {
    let addr = target(config);
    if config.metrics_addr.is_none() && config.tls_cert.is_some() {
        return Err(HealthError::ConsoleIsHttps(addr));
    }
    let answer = tokio::time::timeout(within, ask(addr, probe.path()))
        .await
        .map_err(|_| HealthError::Timeout {
            addr,
            after: within,
        })??;
    judge(addr, probe, &answer)
}

/// One request; the whole answer (vakt closes the connection after it).
async fn ask(addr: SocketAddr, path: &str) -> Result<Vec<u8>, HealthError> {
    let connect = |error| HealthError::Connect { addr, error };
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(connect)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: vakt-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(connect)?;
    let mut answer = Vec::new();
    // An answer of /readyz is a few dozen bytes: a cap keeps a wrong server from filling
    // memory.
    let read = (&mut stream).take(64 * 1024).read_to_end(&mut answer).await;
    match read {
        Ok(_) => Ok(answer),
        // A TLS server may reset the connection after its alert.
        Err(_) if !answer.is_empty() => Ok(answer),
        Err(_) => Err(HealthError::NotHttp { addr, tls: false }),
    }
}

/// The verdict on an answer: pure, so that every kind of answer is tested without a server.
pub fn judge(addr: SocketAddr, probe: Probe, answer: &[u8]) -> Result<String, HealthError> {
    // A TLS record (alert 0x15, handshake 0x16) with version 3.x: a TLS port.
    let tls = answer.len() >= 2 && matches!(answer[0], 0x15 | 0x16) && answer[1] == 3;
    let text = String::from_utf8_lossy(answer);
    let Some(status) = text
        .strip_prefix("HTTP/1.")
        .and_then(|t| t.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Err(HealthError::NotHttp { addr, tls });
    };
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if status == 200 {
        return Ok(match probe {
            Probe::Live => format!("alive ({addr})"),
            Probe::Ready => format!("ready ({addr})"),
        });
    }
    Err(HealthError::NotReady {
        status,
        reason: reason(body),
    })
}

/// What `/readyz` says is down, or the first line of whatever else answered.
fn reason(body: &str) -> String {
    if let Ok(status) = serde_json::from_str::<serde_json::Value>(body) {
        let mut down = Vec::new();
        if status["database"] == false {
            down.push("the database does not answer");
        }
        if status["broker"] == false {
            down.push("the ingest is not connected to the broker");
        }
        if !down.is_empty() {
            return down.join("; ");
        }
        if let Some(detail) = status["detail"].as_str() {
            return detail.to_owned();
        }
    }
    let line: String = body
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        "no reason given".into()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    #[test]
    fn every_answer_gets_its_verdict_in_one_line() {
        let ok =
            b"HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\n{\"database\":true,\"broker\":true}";
        assert_eq!(
            judge(addr(), Probe::Ready, ok).unwrap(),
            "ready (127.0.0.1:8080)"
        );
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"database\":true,\"broker\":false}",
                "not ready (503): the ingest is not connected to the broker",
            ),
            (
                b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"database\":false,\"broker\":false}",
                "not ready (503): the database does not answer; the ingest is not connected to the broker",
            ),
            (
                b"HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\n\r\n{\"detail\":\"no such thing\"}",
                "not ready (404): no such thing",
            ),
            (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "not ready (502): no reason given"),
            (
                b"\x15\x03\x03\x00\x02\x02\x46",
                "127.0.0.1:8080 does not answer in plain HTTP but in TLS: the health check speaks plain HTTP, so give it a port of its own with VAKT_METRICS_ADDR",
            ),
            (b"SSH-2.0-OpenSSH\r\n", "127.0.0.1:8080 does not answer in plain HTTP"),
            (b"", "127.0.0.1:8080 does not answer in plain HTTP"),
        ];
        for (answer, said) in cases {
            let err = judge(addr(), Probe::Ready, answer).unwrap_err().to_string();
            assert_eq!(err, *said);
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn the_metrics_address_is_asked_before_the_console_and_every_interface_on_the_loopback() {
        let mut c = Config {
            http_addr: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(target(&c).to_string(), "127.0.0.1:8080");
        c.metrics_addr = Some("[::]:9090".parse().unwrap());
        assert_eq!(target(&c).to_string(), "[::1]:9090");
    }
}
