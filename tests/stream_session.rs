//! The live stream ends when the caller's session does: at logout, at the idle limit, at
//! the absolute limit, and when the session or token is gone from the store.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

async fn open_stream(app: &TestApp, client: &reqwest::Client) -> Body {
    let resp = client
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    Box::pin(resp.bytes_stream())
}

/// Reads the stream to its end within `within`; the `session_end` reason it gave last.
async fn end_of(mut stream: Body, within: Duration) -> Option<String> {
    let mut text = String::new();
    let finished = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "the stream was still open after {within:?}: {text}"
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    if !last.contains("event: session_end") {
        return None;
    }
    let data = last.lines().find_map(|l| l.strip_prefix("data:"))?;
    let v: Value = serde_json::from_str(data.trim()).ok()?;
    v["reason"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn logging_out_ends_the_sessions_live_stream_at_once() {
    let app = TestApp::start().await;
    let console = app.officer_session().await;
    let stream = open_stream(&app, &console).await;

    let resp = console.post(app.url("/api/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 204);

    let started = Instant::now();
    let reason = end_of(stream, Duration::from_secs(2)).await;
    assert_eq!(reason.as_deref(), Some("logged_out"));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_stream_alone_does_not_keep_a_session_and_ends_at_the_idle_limit() {
    let app = TestApp::start_with(|c| c.session_idle_s = 2).await;
    let console = app.officer_session().await;
    let started = Instant::now();
    let stream = open_stream(&app, &console).await;

    let reason = end_of(stream, Duration::from_secs(5)).await;
    assert_eq!(reason.as_deref(), Some("expired"));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let me = console.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401, "the session is over for every request");
}

#[tokio::test]
async fn a_session_in_use_keeps_its_stream_until_the_absolute_limit() {
    let app = TestApp::start_with(|c| {
        c.session_idle_s = 2;
        c.session_absolute_s = 4;
    })
    .await;
    let console = app.officer_session().await;
    let started = Instant::now();
    let stream = open_stream(&app, &console).await;
    let keep_using = {
        let console = console.clone();
        let url = app.url("/api/me");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = console.get(&url).send().await;
            }
        })
    };

    let reason = end_of(stream, Duration::from_secs(7)).await;
    keep_using.abort();
    assert_eq!(reason.as_deref(), Some("expired"));
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "used all along, it outlived the idle limit: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_session_or_token_removed_elsewhere_ends_its_stream_within_a_status_tick() {
    let app = TestApp::start().await;
    let console = app.officer_session().await;
    let machine = app
        .client_for("feed", vakt::store::Role::Officer, None)
        .await;
    let by_session = open_stream(&app, &console).await;
    let by_token = open_stream(&app, &machine).await;

    // Another instance's logout, and a token taken away, show only in the shared store.
    tamper(&app.database_url, "DELETE FROM sessions").await;
    tamper(
        &app.database_url,
        "DELETE FROM api_tokens WHERE username = 'feed'",
    )
    .await;

    let (session, token) = tokio::join!(
        end_of(by_session, Duration::from_secs(12)),
        end_of(by_token, Duration::from_secs(12)),
    );
    assert_eq!(session.as_deref(), Some("logged_out"));
    assert_eq!(token.as_deref(), Some("revoked"));
}

#[tokio::test]
async fn a_console_session_tells_its_absolute_and_idle_ends_and_a_token_has_none() {
    let app = TestApp::start_with(|c| {
        c.session_idle_s = 60;
        c.session_absolute_s = 120;
    })
    .await;
    let console = app.officer_session().await;
    let before = chrono::Utc::now();
    let info: Value = console
        .get(app.url("/api/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = |field: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(info[field].as_str().unwrap()).unwrap();
        (t.with_timezone(&chrono::Utc) - before).num_seconds()
    };
    assert!((115..=120).contains(&at("ends_at")), "{info}");
    assert!((55..=60).contains(&at("idle_ends_at")), "{info}");
    assert_eq!(info["absolute_s"], 120);
    assert_eq!(info["idle_s"], 60);
    assert_eq!(
        info["second_factor"], false,
        "an officer without a code set up"
    );
    assert_eq!(info["username"], "officer");

    let token = app
        .officer
        .get(app.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 404, "a bearer token has no session");
    let resp = console.post(app.url("/api/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let gone = console.get(app.url("/api/session")).send().await.unwrap();
    assert_eq!(gone.status(), 401);
}
