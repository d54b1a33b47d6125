//! The console hub: every change of an alert, fanned out to every open live stream.

use tokio::sync::broadcast;

use crate::store::AlertChange;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<AlertChange>,
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
        let _ = self.tx.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlertChange> {
        self.tx.subscribe()
    }
}
