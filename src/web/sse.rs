//! `GET /api/alerts/stream`: every change of an alert the caller may see, live, with
//! catch-up from the store for a client that reconnects with `Last-Event-ID`; it ends
//! when the caller's session does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::alerts::unrevealed_alert;
use super::auth::{Caller, Credential, Ended};
use super::consoles::Board;
use super::error::ApiResult;
use super::AppState;
use crate::domain::{now_ms, Millis};
use crate::hub::Published;
use crate::metrics::Metrics;
use crate::store::{AlertChange, Role};

#[utoipa::path(get, path = "/api/alerts/stream", tag = "alerts",
    params(("Last-Event-ID" = Option<i64>, Header, description = "The last event seen; what came after it is sent first"),
           ("last_event_id" = Option<i64>, Query, description = "The same, for a client that opens a new stream (a browser's EventSource sends the header only when it reconnects by itself, e.g. not after logging in again); the header wins")),
    responses((status = 200, content_type = "text/event-stream", description = "Event `alert` with the alert JSON; event `status` with broker and database state; event `session_end` with `{\"reason\": \"logged_out\"|\"expired\"|\"revoked\"|\"unverified\"}` last, when the caller's session or token ends (or could not be checked: connect again)")))]
pub async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    let last_seen = last_event_id(&headers, query.last_event_id.as_deref());
    // Subscribe before reading the store, so nothing falls between catch-up and live.
    let live = s.hub.subscribe();
    let ends = s.session_ends.subscribe();
    let backlog = match last_seen {
        // Changes are numbered at commit but may be published a little out of order (and
        // by other writers), so the catch-up reaches back a margin before the client's last
        // id; resending an alert's current state is harmless.
        Some(n) => {
            s.store
                .changes_since(n.saturating_sub(CATCH_UP_MARGIN))
                .await?
        }
        None => Vec::new(),
    };
    let stream = async_stream(move |tx| async move {
        let ended = feed(&tx, s, caller, live, ends, backlog).await;
        if let Some(why) = ended {
            // The console's cue to show the login, rather than to reconnect.
            let event = Event::default()
                .event("session_end")
                .json_data(serde_json::json!({ "reason": why.as_str() }))
                .unwrap_or_default();
            let _ = tx.send(event).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(serde::Deserialize)]
pub struct StreamQuery {
    last_event_id: Option<String>,
}

/// The last event the client saw: the `Last-Event-ID` header, else the query parameter.
/// Anything that is not a number counts as none: the client then gets live changes only.
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query)
        .and_then(|v| v.trim().parse().ok())
}

/// How many events before `Last-Event-ID` a reconnecting client is sent again.
const CATCH_UP_MARGIN: i64 = 256;

/// The stream's hold on its caller's credential. A session is judged again on every status
/// tick, in the one read the tick makes for every open stream (a logout or a removed token
/// on another instance ends the stream within a tick); read on its own at the stream's
/// start, at the moment its idle or absolute limit would pass, and before an event once
/// that moment has come; a logout, a removed session or a revoked token on this instance
/// ends it at once. The stream itself never counts as use of the session: an open console
/// keeps its session by the requests it makes.
struct Hold {
    credential: Credential,
    until: Millis,
}

impl Hold {
    async fn check(&mut self, s: &AppState) -> Result<(), Ended> {
        Metrics::inc(&s.metrics.stream_credential_checks_total);
        let verdict = s.credential_holds_until(&self.credential, now_ms()).await;
        self.judge(verdict)
    }

    /// Takes a verdict on the credential, the stream's own or the tick's shared one.
    fn judge(&mut self, verdict: Result<Millis, Ended>) -> Result<(), Ended> {
        match verdict {
            Ok(until) => {
                self.until = until;
                Ok(())
            }
            // A store that does not answer for a moment ends no stream whose credential is
            // known to hold a while yet.
            Err(Ended::Unverified) if now_ms() < self.until => Ok(()),
            Err(why) => Err(why),
        }
    }

    /// Cheap: reads the store only once the known limit has passed.
    async fn check_if_due(&mut self, s: &AppState) -> Result<(), Ended> {
        if now_ms() >= self.until {
            self.check(s).await
        } else {
            Ok(())
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        let left = self.until.saturating_sub(now_ms()).max(0) as u64;
        // Far enough for a token; the tick checks again long before.
        tokio::time::Instant::now() + Duration::from_millis(left.min(86_400_000))
    }
}

/// Sends the backlog, then live changes; an alert is sent again only for a newer change.
/// Returns why the caller's credential ended, when that ended the stream.
async fn feed(
    tx: &tokio::sync::mpsc::Sender<Event>,
    s: AppState,
    caller: Caller,
    mut live: tokio::sync::broadcast::Receiver<Arc<Published>>,
    mut ends: tokio::sync::broadcast::Receiver<Credential>,
    backlog: Vec<AlertChange>,
) -> Option<Ended> {
    // Seated before the first check, so no tick's shared check can miss this stream.
    let mut seat = s.consoles.join(&caller.credential);
    let mut hold = Hold {
        credential: caller.credential.clone(),
        until: 0,
    };
    if let Err(why) = hold.check(&s).await {
        return Some(why);
    }
    let mut sent: HashMap<i64, i64> = HashMap::new();
    let mut cursor = 0;
    for change in backlog {
        if let Err(why) = hold.check_if_due(&s).await {
            return Some(why);
        }
        if send_new(tx, &s, &caller, &mut sent, &mut cursor, &change, None).await == Sent::Gone {
            return None;
        }
    }
    // The latest board, if it is fresh, gives the new console its status strip at once;
    // else the one read for it comes in a moment.
    let current = seat.boards.borrow_and_update().clone();
    if let Some(board) = current.filter(|b| b.is_fresh()) {
        if !send_status(tx, &board, &caller).await {
            return None;
        }
    }
    let mut shutdown = s.shutdown.clone();
    loop {
        tokio::select! {
            _ = async {
                match shutdown.as_mut() {
                    Some(rx) => { let _ = rx.wait_for(|stop| *stop).await; }
                    None => std::future::pending::<()>().await,
                }
            } => return None,
            ended = ends.recv() => match ended {
                Ok(credential) => {
                    if hold.credential == credential {
                        // As the store would answer at the next check.
                        return Some(match credential {
                            Credential::Session(_) => Ended::LoggedOut,
                            Credential::Token(_) => Ended::Revoked,
                        });
                    }
                }
                // Missed some ends: one of them may have been this one.
                Err(RecvError::Lagged(_)) => {
                    if let Err(why) = hold.check(&s).await {
                        return Some(why);
                    }
                }
                Err(RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(hold.deadline()) => {
                if let Err(why) = hold.check(&s).await {
                    return Some(why);
                }
            }
            msg = live.recv() => {
                if let Err(why) = hold.check_if_due(&s).await {
                    return Some(why);
                }
                match msg {
                    Ok(published) => {
                        let rendered = Some(&published.rendered);
                        match send_new(tx, &s, &caller, &mut sent, &mut cursor, &published.change, rendered).await {
                            Sent::Yes => {
                                s.metrics.live_stream.observe(published.at.elapsed());
                                if let Some(arrived) = published.alarm_arrived {
                                    s.metrics.alarm_to_console.observe(arrived.elapsed());
                                }
                            }
                            Sent::Skipped => {}
                            Sent::Gone => return None,
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too far behind the live feed: read what was missed from the store.
                        let from = cursor.saturating_sub(CATCH_UP_MARGIN);
                        let Ok(missed) = s.store.changes_since(from).await else { return None };
                        for change in missed {
                            if send_new(tx, &s, &caller, &mut sent, &mut cursor, &change, None).await == Sent::Gone {
                                return None;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            },
            changed = seat.boards.changed() => {
                if changed.is_err() {
                    return None;
                }
                let Some(board) = seat.boards.borrow_and_update().clone() else { continue };
                let judged = match board.credential(&hold.credential) {
                    Some(verdict) => hold.judge(verdict),
                    None => hold.check_if_due(&s).await,
                };
                if let Err(why) = judged {
                    return Some(why);
                }
                if !send_status(tx, &board, &caller).await {
                    return None;
                }
            }
        }
    }
}

/// Sends the caller's status strip from the tick's board; false once the client has left.
async fn send_status(
    tx: &tokio::sync::mpsc::Sender<Event>,
    board: &Board,
    caller: &Caller,
) -> bool {
    let event = Event::default()
        .event("status")
        .data(board.status_json(caller));
    tx.send(event).await.is_ok()
}

/// What became of a change on its way to one stream.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    /// Already sent at this change or a later one, or not the caller's to see.
    Skipped,
    /// The client has left.
    Gone,
}

/// Sends a change unless this alert was already sent at that change or a later one.
/// `rendered`: the rendering every stream shares, for a change that came live.
async fn send_new(
    tx: &tokio::sync::mpsc::Sender<Event>,
    s: &AppState,
    caller: &Caller,
    sent: &mut HashMap<i64, i64>,
    cursor: &mut i64,
    change: &AlertChange,
    rendered: Option<&OnceLock<String>>,
) -> Sent {
    if sent
        .get(&change.alert.id)
        .is_some_and(|seq| *seq >= change.event_seq)
    {
        return Sent::Skipped;
    }
    sent.insert(change.alert.id, change.event_seq);
    if sent.len() > 100_000 {
        // Bounded memory on a very long stream: forget the oldest half.
        let mut seqs: Vec<i64> = sent.values().copied().collect();
        seqs.sort_unstable();
        let median = seqs[seqs.len() / 2];
        sent.retain(|_, seq| *seq >= median);
    }
    *cursor = (*cursor).max(change.event_seq);
    send_change(tx, s, caller, change, rendered).await
}

async fn send_change(
    tx: &tokio::sync::mpsc::Sender<Event>,
    s: &AppState,
    caller: &Caller,
    change: &AlertChange,
    rendered: Option<&OnceLock<String>>,
) -> Sent {
    if !caller.covers(change.alert.region.as_deref()) {
        return Sent::Skipped;
    }
    // What a stream sends depends on the change alone, not on its caller: a live change is
    // rendered once, by the first stream, and the others copy the text.
    let own;
    let json = match rendered {
        Some(shared) => shared.get_or_init(|| render(s, change)),
        None => {
            own = render(s, change);
            &own
        }
    };
    if json.is_empty() {
        return Sent::Skipped;
    }
    let event = Event::default()
        .event("alert")
        .id(change.event_seq.to_string())
        .data(json);
    match tx.send(event).await {
        Ok(()) => Sent::Yes,
        Err(_) => Sent::Gone,
    }
}

/// The `alert` event's data: the alert JSON with the person's details left out; empty if
/// it cannot be written.
fn render(s: &AppState, change: &AlertChange) -> String {
    serde_json::to_string(&unrevealed_alert(&change.alert, &s.directory.snapshot()))
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_last_event_id_comes_from_the_header_and_else_from_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers, None), None);
        assert_eq!(last_event_id(&headers, Some("41")), Some(41));
        assert_eq!(last_event_id(&headers, Some("x")), None);
        headers.insert("last-event-id", HeaderValue::from_static(" 57 "));
        assert_eq!(last_event_id(&headers, Some("41")), Some(57));
    }
}
