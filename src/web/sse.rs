//! `GET /api/alerts/stream`: every change of an alert the caller may see, live, with
//! catch-up from the store for a client that reconnects with `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::api::alert_out;
use super::auth::Caller;
use super::error::ApiResult;
use super::AppState;
use crate::store::{AlertChange, Role};

#[utoipa::path(get, path = "/api/alerts/stream", tag = "alerts",
    params(("Last-Event-ID" = Option<i64>, Header, description = "The last event seen; what came after it is sent first")),
    responses((status = 200, content_type = "text/event-stream", description = "Event `alert` with the alert JSON; event `status` with broker and database state")))]
pub async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    let last_seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // Subscribe before reading the store, so nothing falls between catch-up and live.
    let mut live = s.hub.subscribe();
    let mut cursor = match last_seen {
        Some(n) => n,
        None => s.store.last_event_seq().await?,
    };
    let backlog = match last_seen {
        Some(n) => s.store.changes_since(n).await?,
        None => Vec::new(),
    };
    let stream = async_stream(move |tx| async move {
        for change in backlog {
            cursor = cursor.max(change.event_seq);
            if !send_change(&tx, &s, &caller, &change).await {
                return;
            }
        }
        let mut status_tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                msg = live.recv() => match msg {
                    Ok(change) => {
                        if change.event_seq <= cursor {
                            continue;
                        }
                        cursor = change.event_seq;
                        if !send_change(&tx, &s, &caller, &change).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too far behind the live feed: read what was missed from the store.
                        let Ok(missed) = s.store.changes_since(cursor).await else { return };
                        for change in missed {
                            cursor = cursor.max(change.event_seq);
                            if !send_change(&tx, &s, &caller, &change).await {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = status_tick.tick() => {
                    let status = super::status(&s).await;
                    let event = Event::default().event("status").json_data(status).unwrap_or_default();
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn send_change(
    tx: &tokio::sync::mpsc::Sender<Event>,
    s: &AppState,
    caller: &Caller,
    change: &AlertChange,
) -> bool {
    if !caller.covers(change.alert.region.as_deref()) {
        return true;
    }
    let out = alert_out(&change.alert, &s.directory.snapshot());
    let Ok(event) = Event::default()
        .event("alert")
        .id(change.event_seq.to_string())
        .json_data(out)
    else {
        return true;
    };
    tx.send(event).await.is_ok()
}

/// A stream fed by a task through a small channel; the task ends when the client leaves.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}
