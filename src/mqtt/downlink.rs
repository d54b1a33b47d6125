//! The backend's signed answers to devices: feedback on their alarms and their retained
//! configuration.

use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};

#[cfg(feature = "embedded")]
use super::embedded::EmbeddedBroker;
use crate::directory::Directory;
use crate::domain::now_ms;
use crate::metrics::Metrics;
use crate::protocol::{self, Feedback};

/// Sends signed downlink messages to devices; shared by the ingest and the API.
#[derive(Clone)]
pub struct Downlink {
    sink: DownlinkSink,
    directory: Directory,
    metrics: Arc<Metrics>,
}

/// Where downlink goes: through the backend's client on an external broker, or straight
/// into the embedded broker.
#[derive(Clone)]
pub(super) enum DownlinkSink {
    Client(AsyncClient),
    #[cfg(feature = "embedded")]
    Embedded(EmbeddedBroker),
}

impl DownlinkSink {
    async fn publish(&self, topic: String, retain: bool, body: String) -> Result<(), String> {
        match self {
            // Never wait for room in the client's queue: only the broker link's task empties
            // it, and that task may itself be waiting for the ingest (a full ingest queue),
            // which would then never come back from here. A full queue hands the message to
            // a task of its own instead.
            DownlinkSink::Client(c) => {
                match c.try_publish(topic.clone(), QoS::AtLeastOnce, retain, body.clone()) {
                    Ok(()) => Ok(()),
                    Err(rumqttc::ClientError::TryRequest(_)) => {
                        let c = c.clone();
                        tokio::spawn(async move {
                            if let Err(e) = c.publish(topic, QoS::AtLeastOnce, retain, body).await {
                                tracing::warn!(error = %e, "could not queue a downlink message");
                            }
                        });
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            #[cfg(feature = "embedded")]
            DownlinkSink::Embedded(b) => {
                b.publish(&topic, body.into(), retain);
                Ok(())
            }
        }
    }
}

impl Downlink {
    pub(super) fn new(sink: DownlinkSink, directory: Directory, metrics: Arc<Metrics>) -> Downlink {
        Downlink {
            sink,
            directory,
            metrics,
        }
    }

    /// Tells a device what happened to its alarm `(boot, seq)`.
    pub async fn feedback(&self, device_id: &str, origin: (u32, u32), st: Feedback) {
        let (Some(entry), Ok(device)) = (
            self.directory.device(device_id),
            protocol::DeviceId::parse(device_id),
        ) else {
            return;
        };
        let (topic, body) =
            protocol::feedback_body(&device, &entry.key, origin.0, origin.1, st, now_ms());
        match self.sink.publish(topic, false, body).await {
            Ok(()) => Metrics::inc(&self.metrics.feedback_sent_total),
            Err(e) => tracing::warn!(device = device_id, error = %e, "could not queue feedback"),
        }
    }

    /// Publishes the device's configuration as the directory holds it (the coordinator's
    /// interval, a next key waiting), retained, so the device gets it at its next connect
    /// too. True once queued.
    pub async fn config(&self, device_id: &str) -> bool {
        let (Some(entry), Ok(device)) = (
            self.directory.device(device_id),
            protocol::DeviceId::parse(device_id),
        ) else {
            return false;
        };
        let next = entry.next_key.as_ref().map(|(key, _)| key);
        let (topic, body) =
            protocol::config_body(&device, &entry.key, entry.hb_interval_s, next, now_ms());
        match self.sink.publish(topic, true, body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = device_id, error = %e, "could not queue config");
                false
            }
        }
    }
}
