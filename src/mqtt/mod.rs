//! The broker link: everything between the devices' MQTT broker and the ingest.
//!
//! Either the `embedded` broker, inside this process (built with the `embedded` feature),
//! or an external one (Mosquitto) reached through the backend's own client ([`link`]),
//! whose password file and ACL [`mosquitto`] renders, or whose logins and rights [`dynsec`]
//! keeps in step with the device register, live. Both hand the devices' messages to the ingest through one
//! [`queue`], learn from [`Acks`] when a message is stored and may be acknowledged, and
//! carry the backend's answers back out ([`Downlink`]). Several instances on one external
//! broker share its subscription ([`cluster`]).
//!
//! Nothing here decides what a message means: that is the ingest's, which depends on this
//! module and never the other way round.

pub mod cluster;
pub mod downlink;
pub mod dynsec;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod link;
pub mod mosquitto;
pub mod queue;

use rumqttc::{AsyncClient, Publish};
use tokio::sync::{mpsc, oneshot, watch};

pub use downlink::Downlink;
pub use link::{BrokerLink, BACKEND_USER};
use queue::{Inbox, IngestQueue};

/// Messages waiting for the ingest. The embedded broker stops reading a device's connection
/// when its share is full, so a burst waits here or in the device, never in a lossy log.
const DELIVERY_QUEUE: usize = 10_000;

/// A message to take in, and who acknowledges it to the broker once it is stored.
pub struct Delivery {
    pub publish: Publish,
    /// The device that published it, where the broker is ours and knows (the embedded one);
    /// `None` on an external broker, whose ACL keeps devices on their own topics.
    pub publisher: Option<String>,
    /// `None`: the ingest's own session on an external broker (nothing to tell on the
    /// embedded one); `Some`: tell this sender instead.
    pub done: Option<oneshot::Sender<()>>,
}

/// A security event the embedded broker saw (a login under a reserved name, a subscription
/// outside the device's own topics), counted, rate-limited and stored like the ingest's own.
#[derive(Debug)]
pub struct BrokerEvent {
    /// The device it concerns, when the broker knows one for sure.
    pub device: Option<String>,
    pub kind: &'static str,
    pub detail: String,
}

/// How a message the ingest has taken in is acknowledged to the broker it came from.
#[derive(Clone)]
pub struct Acks {
    /// The backend's own session on an external broker; `None` on the embedded broker.
    client: Option<AsyncClient>,
}

impl Acks {
    /// Only now, with everything stored, may the broker forget the message.
    pub async fn stored(&self, done: Option<oneshot::Sender<()>>, publish: &Publish) {
        match (done, &self.client) {
            (Some(done), _) => {
                let _ = done.send(());
            }
            // Never wait for room in the client's queue (see `Downlink`): the broker link's
            // task that empties it may be waiting for the ingest that is calling this.
            (None, Some(client)) => {
                if client.try_ack(publish).is_err() {
                    let (client, publish) = (client.clone(), publish.clone());
                    tokio::spawn(async move {
                        if let Err(e) = client.ack(&publish).await {
                            tracing::warn!(error = %e, "could not acknowledge to the broker");
                        }
                    });
                }
            }
            (None, None) => {}
        }
    }
}

/// What the ingest gets from its broker: the messages, the security events the broker saw,
/// and the ways to acknowledge and to answer.
pub struct BrokerSide {
    pub inbox: Inbox,
    /// Only the embedded broker sees security events of its own.
    pub events: Option<mpsc::Receiver<BrokerEvent>>,
    pub acks: Acks,
    pub downlink: Downlink,
    /// Where a drained session of a dead instance hands its messages.
    pub deliveries: IngestQueue,
    /// Whether the broker link is up: connected and subscribed, or (embedded) serving.
    pub connected: watch::Receiver<bool>,
}

/// The broker side's own work, started once the ingest is ready to take messages in.
pub struct BrokerTask(Task);

enum Task {
    External(Box<link::Connection>),
    #[cfg(feature = "embedded")]
    Embedded {
        broker: embedded::EmbeddedBroker,
        listeners: embedded::Listeners,
        connected: watch::Sender<bool>,
    },
}

impl BrokerTask {
    pub fn run(self, shutdown: watch::Receiver<bool>) {
        match self.0 {
            Task::External(connection) => connection.run(shutdown),
            #[cfg(feature = "embedded")]
            Task::Embedded {
                broker,
                listeners,
                connected,
            } => {
                broker.serve(listeners, shutdown);
                connected.send_replace(true);
            }
        }
    }
}
