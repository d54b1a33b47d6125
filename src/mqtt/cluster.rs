//! Several instances on one broker subscription: each says it is alive; the supervision
//! leader drains and ends the persistent session of an instance that died, so its share of
//! the devices' messages is taken in instead of queued for nobody.
//!
//! It lives with the broker link because what it manages are broker sessions of a shared
//! subscription, which only an external broker has; supervision only tells it who leads,
//! and learns from it while a dead instance's messages may still be unread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::link::{self, BrokerLink};
use super::queue::IngestQueue;
use crate::domain::{now_ms, Millis};
use crate::store::SharedStore;

const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// An instance not seen for this long is taken for dead.
const DEAD_AFTER_MS: Millis = 3_000;

/// Set while a dead instance's messages may still be waiting: silence is not judged then.
#[derive(Clone, Default)]
pub struct PeersPending(Arc<AtomicBool>);

impl PeersPending {
    pub fn set(&self, pending: bool) {
        self.0.store(pending, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub async fn run(
    store: SharedStore,
    link: BrokerLink,
    deliveries: IngestQueue,
    leading: watch::Receiver<bool>,
    pending: PeersPending,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                let _ = store.forget_instance(&link.client_id).await;
                return;
            }
        }
        let leading = *leading.borrow();
        let now = now_ms();
        if leading {
            // Read the old leader's mark before this instance claims the lead in its row.
            match store
                .stale_instances(&link.client_id, now - DEAD_AFTER_MS)
                .await
            {
                Ok(dead) => {
                    pending.set(!dead.is_empty());
                    for (client_id, _) in dead {
                        let taken = link::drain_session(&link, &client_id, &deliveries).await;
                        tracing::warn!(instance = %client_id, messages = taken, "drained the session of an instance that is gone");
                        // Ended on purpose: if that instance comes back, it starts afresh.
                        if let Err(e) = store.forget_broker_session(&client_id).await {
                            tracing::warn!(error = %e, "cannot forget an instance's broker session");
                        }
                        if let Err(e) = store.forget_instance(&client_id).await {
                            tracing::warn!(error = %e, "cannot forget an instance");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the instances"),
            }
            pending.set(false);
        }
        if let Err(e) = store
            .instance_alive(&link.client_id, leading, now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot record this instance as alive");
        }
    }
}
