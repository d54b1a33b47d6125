//! What every open live stream shares: its status strip and the check of its credential,
//! read from the store once a tick for all the streams together, not once per stream. A
//! thousand consoles cost one read of the devices, the open alerts and the credentials
//! every tick, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::{Instant, MissedTickBehavior};

use super::auth::{Caller, Credential, Ended};
use super::{AppState, StatusCounts};
use crate::domain::{now_ms, Millis};
use crate::metrics::Metrics;

/// How often the open streams' status strips and credentials are read again. A session or
/// token removed on another instance ends its streams here within about this long.
pub const TICK: Duration = Duration::from_secs(10);

/// How late a tick's board may be (the read itself takes a moment) and still count as
/// this tick's.
const FRESH_MARGIN: Duration = Duration::from_secs(2);

/// One tick's reading of the store, handed to every open stream.
pub struct Board {
    /// When it was read.
    pub at: Instant,
    counts: StatusCounts,
    /// The credentials of the streams open when it was read, each judged once however many
    /// streams share it.
    credentials: HashMap<Credential, Result<Millis, Ended>>,
    /// The `status` event of each view, written by the first stream of that view.
    rendered: Mutex<HashMap<Option<String>, Arc<str>>>,
}

impl Board {
    /// Reads the status counts of every region and judges these credentials: a few
    /// statements, whatever the number of streams.
    async fn read(s: &AppState, credentials: &[Credential]) -> Board {
        // A store that hangs holds back no stream's status (a console that hears none for
        // 35 s says it receives no alarms): past half a tick each, the credentials count as
        // unverified (each stream then ends only once its known limit has passed, as when
        // the store fails) and the strip says the database is down.
        let judged =
            tokio::time::timeout(TICK / 2, s.credentials_hold_until(credentials, now_ms()))
                .await
                .unwrap_or_else(|_| {
                    credentials
                        .iter()
                        .map(|c| (c.clone(), Err(Ended::Unverified)))
                        .collect()
                });
        let counts = tokio::time::timeout(TICK / 2, StatusCounts::read(s))
            .await
            .unwrap_or_else(|_| StatusCounts::unanswered(s.readiness.broker_connected()));
        Board {
            at: Instant::now(),
            counts,
            credentials: judged,
            rendered: Mutex::default(),
        }
    }

    /// Whether it is this tick's: while any stream is open, a board is read every tick.
    pub fn is_fresh(&self) -> bool {
        self.at.elapsed() <= TICK + FRESH_MARGIN
    }

    /// This tick's verdict on a credential; none for a stream that opened while the board
    /// was being read (its own check at the start is as recent).
    pub fn credential(&self, credential: &Credential) -> Option<Result<Millis, Ended>> {
        self.credentials.get(credential).copied()
    }

    /// The data of the `status` event for this caller. What a caller may count depends on
    /// the caller's region alone (the rule of [`Caller::covers`]), so it is written once
    /// per region a tick and copied to every stream of that region.
    pub fn status_json(&self, caller: &Caller) -> Arc<str> {
        let mut rendered = self.rendered.lock().unwrap_or_else(PoisonError::into_inner);
        rendered
            .entry(caller.region.clone())
            .or_insert_with(|| {
                let status = self.counts.for_caller(caller);
                serde_json::to_string(&status).unwrap_or_default().into()
            })
            .clone()
    }
}

/// The open live streams of this instance, by credential, and the latest board.
pub struct Consoles {
    open: Mutex<HashMap<Credential, usize>>,
    board: watch::Sender<Option<Arc<Board>>>,
    /// A stream opened with no fresh board to show: read one now, not at the next tick.
    wanted: Notify,
}

impl Default for Consoles {
    fn default() -> Self {
        Consoles {
            open: Mutex::default(),
            board: watch::Sender::new(None),
            wanted: Notify::new(),
        }
    }
}

impl Consoles {
    /// A new stream's place: its credential is judged on every tick from now on, until
    /// the seat is dropped with the stream.
    pub fn join(self: &Arc<Self>, credential: &Credential) -> Seat {
        *self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(credential.clone())
            .or_default() += 1;
        let boards = self.board.subscribe();
        // An old board means no stream was open: the newcomer should not wait a whole tick
        // for its first status.
        if !self.board.borrow().as_ref().is_some_and(|b| b.is_fresh()) {
            self.wanted.notify_one();
        }
        Seat {
            consoles: self.clone(),
            credential: credential.clone(),
            boards,
        }
    }

    fn credentials(&self) -> Vec<Credential> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.keys().cloned().collect()
    }
}

/// One stream's place among the consoles.
pub struct Seat {
    consoles: Arc<Consoles>,
    credential: Credential,
    /// Every new board, as it is read.
    pub boards: watch::Receiver<Option<Arc<Board>>>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut open = self
            .consoles
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.credential) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.credential);
            }
        }
    }
}

/// Reads the board every tick while any stream is open, and at once for a stream that
/// opens without a fresh one; nothing while none is open. Runs until shutdown.
pub async fn keep_the_board(s: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = s.consoles.wanted.notified() => {
                // Several streams opening together ask once between them.
                let just_read = s.consoles.board.borrow().as_ref()
                    .is_some_and(|b| b.at.elapsed() < Duration::from_secs(1));
                if just_read {
                    continue;
                }
                tick.reset();
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let credentials = s.consoles.credentials();
        if credentials.is_empty() {
            continue;
        }
        let board = Board::read(&s, &credentials).await;
        Metrics::inc(&s.metrics.console_board_reads_total);
        s.consoles.board.send_replace(Some(Arc::new(board)));
    }
}
