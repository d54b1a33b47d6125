//! The console hub: every change of an alert, fanned out to every open live stream.

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::store::AlertChange;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Published>,
}

/// A change as the live streams receive it, with when it was published (right after its
/// commit), for the latency of the live stream.
#[derive(Clone)]
pub struct Published {
    pub change: AlertChange,
    pub at: Instant,
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
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.tx.send(Published {
            change,
            at: Instant::now(),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}
