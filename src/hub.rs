//! The console hub: every change of an alert, fanned out to every open live stream.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::store::AlertChange;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Published>>,
}

/// A change as the live streams receive it, with when it was published (right after its
/// commit), for the latency of the live stream. Shared, not copied, by every stream: a
/// thousand consoles cost one change and one rendering, not a thousand.
pub struct Published {
    pub change: AlertChange,
    pub at: Instant,
    /// When the device alarm that made this change reached the ingest; none for every
    /// other change (a heartbeat's, an officer's, supervision's, another instance's).
    pub alarm_arrived: Option<Instant>,
    /// The change as the live streams send it, made by the first stream that sends it.
    pub rendered: OnceLock<String>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        // A slow console that falls this far behind catches up from the store instead.
        let (tx, _) = broadcast::channel(4096);
        Hub { tx }
    }

    pub fn publish(&self, change: AlertChange) {
        self.publish_alarm(change, None);
    }

    /// Publishes a change; `alarm_arrived` when a device alarm made it, so the live streams
    /// time the alarm's whole way from the broker to the consoles.
    pub fn publish_alarm(&self, change: AlertChange, alarm_arrived: Option<Instant>) {
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.tx.send(Arc::new(Published {
            change,
            at: Instant::now(),
            alarm_arrived,
            rendered: OnceLock::new(),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}
