//! Whether this instance can take alarms in right now, as the parts that know it say:
//! the broker link whether it is connected (and subscribed), the ingest whether its store
//! writes are failing. Each is a watch channel that one part writes and others only read
//! (`/readyz`, the status strip, `/metrics`).

use tokio::sync::watch;

#[derive(Clone)]
pub struct Readiness {
    /// Written by the broker link: connected and subscribed (the embedded broker: serving).
    pub broker_connected: watch::Receiver<bool>,
    /// Written by the ingest: retrying a store write right now.
    pub store_failing: watch::Receiver<bool>,
}

impl Readiness {
    pub fn broker_connected(&self) -> bool {
        *self.broker_connected.borrow()
    }

    pub fn store_failing(&self) -> bool {
        *self.store_failing.borrow()
    }
}
