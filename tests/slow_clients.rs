//! Slow clients meet the HTTP server: headers or a body sent a byte at a time are cut off
//! within the configured deadline, while a live stream and ordinary requests go on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn quick_deadlines() -> TestApp {
    TestApp::start_with(|c| {
        c.http_header_timeout_s = 1;
        c.http_body_timeout_s = 1;
    })
    .await
}

/// Writes `bytes` one every 100 ms until the server hangs up; returns how long it took
/// and what the server said, or `None` when it is still writing after `give_up`.
async fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    give_up: Duration,
) -> Option<(Duration, String)> {
    let start = Instant::now();
    let mut answer = Vec::new();
    for b in bytes.iter().cycle() {
        if start.elapsed() > give_up {
            return None;
        }
        let mut buf = [0u8; 4096];
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    return Some((start.elapsed(), String::from_utf8_lossy(&answer).into_owned()))
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stream.write_all(&[*b]).await.is_err() {
                    return Some((start.elapsed(), String::from_utf8_lossy(&answer).into_owned()));
                }
            }
        }
    }
    unreachable!("the cycle never ends")
}

#[tokio::test]
async fn a_client_sending_its_headers_a_byte_at_a_time_is_disconnected_at_the_deadline() {
    let app = quick_deadlines().await;
    let mut stream = TcpStream::connect(app.running.http_addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vakt\r\n")
        .await
        .unwrap();
    // Header lines that never end, one byte every 100 ms.
    let (after, _) = trickle(
        &mut stream,
        b"X-Slow: aaaaaaaa\r\n",
        Duration::from_secs(10),
    )
    .await
    .expect("the server hangs up on a client that never finishes its headers");
    assert!(after < Duration::from_secs(4), "cut after {after:?}");
    // And the server still answers everyone else.
    let ok = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_client_sending_its_body_a_byte_at_a_time_gets_408_and_is_disconnected() {
    let app = quick_deadlines().await;
    let mut stream = TcpStream::connect(app.running.http_addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: vakt\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .await
        .unwrap();
    let (after, answer) = trickle(&mut stream, b" ", Duration::from_secs(10))
        .await
        .expect("the server hangs up on a client that never finishes its body");
    assert!(after < Duration::from_secs(4), "cut after {after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn a_live_stream_outlasts_the_header_deadline() {
    let app = quick_deadlines().await;
    let mut resp = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let start = Instant::now();
    // The stream sends its backlog and keep-alives; it must not end.
    while start.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(other) => panic!("the stream ended after {:?}: {other:?}", start.elapsed()),
        }
    }
}

#[tokio::test]
async fn a_body_sent_at_once_is_read_as_usual() {
    let app = quick_deadlines().await;
    let resp = app
        .anonymous
        .post(app.url("/api/login"))
        .json(&serde_json::json!({"username": "officer", "password": "officer-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
