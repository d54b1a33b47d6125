//! Every open live stream shares one read of the store a status tick: each still gets the
//! status strip of exactly its own regions, and the store is read once a tick for all the
//! streams, not once per stream.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use vakt::store::Role;

type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A live stream, read event by event.
struct Console {
    body: Body,
    text: String,
}

impl Console {
    async fn open(app: &TestApp, client: &reqwest::Client) -> Console {
        let resp = client
            .get(app.url("/api/alerts/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Console {
            body: Box::pin(resp.bytes_stream()),
            text: String::new(),
        }
    }

    /// The data of the next `status` event, within `within`.
    async fn next_status(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, async {
            loop {
                while let Some(end) = self.text.find("\n\n") {
                    let event: String = self.text.drain(..end + 2).collect();
                    if event.lines().any(|l| l == "event: status") {
                        let data = event
                            .lines()
                            .find_map(|l| l.strip_prefix("data:"))
                            .expect("a status event has data");
                        return serde_json::from_str(data.trim()).unwrap();
                    }
                }
                let chunk = self
                    .body
                    .next()
                    .await
                    .expect("the stream stays open")
                    .unwrap();
                self.text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no status event within {within:?}"))
    }
}

#[tokio::test]
async fn each_stream_gets_the_status_of_exactly_its_own_regions() {
    let app = TestApp::start().await;
    // One panic in Stockholm, two in Syd.
    for region in ["Stockholm", "Syd", "Syd"] {
        let d = app.issued_device(region).await;
        let device = app.connect(&d).await;
        device.alarm("panic", None, None).await.unwrap();
        app.wait_for_alert(&d.id, |_| true).await;
    }
    let stockholm = app
        .client_for("sthlm", Role::Officer, Some("Stockholm"))
        .await;
    let syd = app.client_for("syd", Role::Officer, Some("Syd")).await;
    let elsewhere = app.client_for("nord", Role::Officer, Some("Nord")).await;

    let mut consoles = Vec::new();
    for (client, open_p1) in [
        (&stockholm, 1),
        (&syd, 2),
        (&elsewhere, 0),
        (&app.officer, 3),
        (&app.coordinator, 3),
    ] {
        consoles.push((Console::open(&app, client).await, open_p1));
    }

    for (console, open_p1) in &mut consoles {
        let status = console.next_status(Duration::from_secs(5)).await;
        assert_eq!(status["open_by_priority"]["1"], *open_p1, "{status}");
        assert_eq!(status["open_by_priority"]["2"], 0, "{status}");
        assert_eq!(status["devices_silent"], 0, "{status}");
        assert_eq!(status["database"], true, "{status}");
    }
    // The plain request agrees with the stream, region by region.
    for (client, open_p1) in [
        (&stockholm, 1),
        (&syd, 2),
        (&elsewhere, 0),
        (&app.officer, 3),
    ] {
        let status = app.get(client, "/api/status").await;
        assert_eq!(status["open_by_priority"]["1"], open_p1, "{status}");
    }
}

#[tokio::test]
async fn the_store_is_read_once_a_tick_for_every_open_stream_not_once_per_stream() {
    let app = TestApp::start().await;
    let mut clients = vec![app.officer.clone(), app.coordinator.clone()];
    for n in 0..4 {
        clients.push(app.officer_session().await);
        let region = if n % 2 == 0 { "Stockholm" } else { "Syd" };
        clients.push(
            app.client_for(&format!("feed{n}"), Role::Officer, Some(region))
                .await,
        );
    }
    let mut consoles = Vec::new();
    for client in clients.iter().chain(&clients) {
        consoles.push(Console::open(&app, client).await);
    }
    let streams = consoles.len() as u64;

    for console in &mut consoles {
        console.next_status(Duration::from_secs(5)).await;
    }
    let reads_at_open = app.metric("vakt_console_board_reads_total").await;
    // Each stream checked its credential on its own once, at its start.
    assert_eq!(
        app.metric("vakt_stream_credential_checks_total").await,
        streams
    );
    // A second status on every stream: the next tick.
    for console in &mut consoles {
        console
            .next_status(vakt::web::consoles::TICK + Duration::from_secs(5))
            .await;
    }
    let reads = app.metric("vakt_console_board_reads_total").await;

    // One read for the first stream to open (the others found it fresh) and one for the
    // tick; a store read per stream would be 2 × 20.
    assert!(
        (1..=2).contains(&reads_at_open),
        "{reads_at_open} reads for {streams} streams opening"
    );
    assert!(
        reads <= reads_at_open + 2,
        "{reads} reads after one tick of {streams} streams"
    );
    assert_eq!(
        app.metric("vakt_stream_credential_checks_total").await,
        streams,
        "the tick judged every credential in its one read"
    );
}
