//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        #[derive(Default)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// The counters, and the gauges as their owners report them.
            pub fn render(&self, gauges: Gauges) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP vakt_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE vakt_{} counter", stringify!($name));
                    let _ = writeln!(out, "vakt_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                let _ = writeln!(out, "# HELP vakt_broker_connected Whether the ingest is connected to the MQTT broker.");
                let _ = writeln!(out, "# TYPE vakt_broker_connected gauge");
                let _ = writeln!(out, "vakt_broker_connected {}", u8::from(gauges.broker_connected));
                let _ = writeln!(out, "# HELP vakt_supervision_leader Whether this instance leads supervision.");
                let _ = writeln!(out, "# TYPE vakt_supervision_leader gauge");
                let _ = writeln!(out, "vakt_supervision_leader {}", u8::from(gauges.supervision_leader));
                out
            }
        }
    };
}

/// What `/metrics` shows besides the counters: states that other parts own (the broker link,
/// supervision) and hand over as they are at the moment of rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Whether the ingest is connected to the broker.
    pub broker_connected: bool,
    /// Whether this instance leads supervision.
    pub supervision_leader: bool,
}

counters! {
    messages_total: "Device messages received.",
    messages_accepted_total: "Device messages verified and taken in.",
    duplicates_total: "QoS 1 redeliveries recognised and dropped.",
    replays_total: "Replayed messages (older boot or below the window) dropped.",
    messages_missing_total: "Device messages that never arrived: seqs that left the anti-replay window unseen.",
    messages_late_total: "Alarms taken in after their seq had left the anti-replay window.",
    bad_signatures_total: "Messages whose signature did not verify.",
    malformed_total: "Messages with a bad topic or body.",
    unknown_devices_total: "Messages from devices that are unknown or not issued.",
    security_events_total: "Security events recorded (some are rate-limited and only counted).",
    alerts_opened_total: "Alerts opened.",
    alerts_updated_total: "Alerts updated by a repeated trigger.",
    feedback_sent_total: "Signed acks sent to devices.",
    store_retries_total: "Store writes retried after a database error.",
    store_refused_total: "Messages not acknowledged because the store refused, for good, what they asked for.",
    broker_session_lost_total: "Connections to the broker that found the ingest's persistent session gone (no broker persistence, an expired session, a changed client id).",
    logins_failed_total: "Failed logins.",
    silence_alerts_total: "Silence alerts raised (or updated) by supervision.",
    overdue_alerts_total: "Alerts flagged overdue.",
    topic_denied_total: "Publishes refused because the device wrote outside its own uplink topics, or retained.",
    broker_logins_refused_total: "Logins the embedded broker refused.",
    backend_identity_refused_total: "Logins the embedded broker refused because they named one of the backend's own identities (security event `backend_identity`).",
    subscribe_denied_total: "Subscriptions the embedded broker refused because they reached beyond the device's own ack and cfg (security event `subscribe_denied`).",
    broker_downlink_dropped_total: "Downlink messages the embedded broker dropped for an offline device (its queue was full).",
    messages_throttled_total: "Device messages over their device's rate: delayed (embedded broker) or dropped (external broker).",
    health_rows_refused_total: "Device health rows the store refused for good (dropped, so they cannot hold back the other devices' rows).",
    broker_admin_commands_total: "Commands sent to the broker's dynamic-security plugin to bring its clients and roles in step with the device register.",
    broker_admin_errors_total: "Dynamic-security commands that failed or went unanswered in time, and reconciliations that could not read the broker or the register (the next reconciliation tries again).",
    broker_admin_reconciliations_total: "Full reconciliations of the broker's clients and roles with the device register that completed without an error.",
    broker_admin_conflicts_total: "Broker clients or roles found under a name vakt needs that vakt did not make, and so left alone (counted when first seen).",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
