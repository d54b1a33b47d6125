//! What `/metrics` shows, in the Prometheus text format: counters (device messages by kind
//! and result, alerts by kind and priority), latency histograms with fixed buckets, and the
//! gauges other parts own. Every count is an atomic in a fixed array: the ingest counts
//! without a lock or an allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::{Alert, AlertKind};
use crate::protocol::Uplink;

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// Device messages by kind and the ingest's verdict.
            pub messages: MessageCounts,
            pub alerts_opened: AlertCounts,
            pub alerts_updated: AlertCounts,
            /// From a message's arrival at the ingest to the commit of what it asked the
            /// store to do.
            pub message_commit: Histogram,
            /// One group commit of the ingest: the transaction that writes a batch of
            /// messages, from its start to its commit (retries included).
            pub ingest_transaction: Histogram,
            /// From a change's publication to this instance's consoles (right after its
            /// commit here, or on its announcement from another instance) until a live
            /// stream has it.
            pub live_stream: Histogram,
            /// From a device alarm's arrival at the ingest until a live stream has the
            /// change it made: the alarm's whole way through this instance.
            pub alarm_to_console: Histogram,
            /// From an alert's first trigger to its acknowledgement, by priority.
            pub time_to_acknowledge: [Histogram; PRIORITIES],
            /// From an alert's first trigger to its resolution, by priority.
            pub time_to_resolve: [Histogram; PRIORITIES],
        }

        impl Default for Metrics {
            fn default() -> Metrics {
                Metrics {
                    $($name: AtomicU64::new(0),)*
                    messages: MessageCounts::default(),
                    alerts_opened: AlertCounts::default(),
                    alerts_updated: AlertCounts::default(),
                    message_commit: Histogram::new(LATENCY_S),
                    ingest_transaction: Histogram::new(LATENCY_S),
                    live_stream: Histogram::new(LATENCY_S),
                    alarm_to_console: Histogram::new(LATENCY_S),
                    time_to_acknowledge: std::array::from_fn(|_| Histogram::new(ACKNOWLEDGE_S)),
                    time_to_resolve: std::array::from_fn(|_| Histogram::new(RESOLVE_S)),
                }
            }
        }

        impl Metrics {
            fn render_counters(&self, out: &mut String) {
                $(
                    counter(out, concat!("vakt_", stringify!($name)), $help, self.$name.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    messages_total: "Device messages received (including the backend's own ack and cfg seen again).",
    messages_missing_total: "Device messages that never arrived: seqs that left the anti-replay window unseen.",
    messages_late_total: "Alarms taken in after their seq had left the anti-replay window.",
    security_events_total: "Security events recorded (some are rate-limited and only counted).",
    feedback_sent_total: "Signed acks sent to devices.",
    store_retries_total: "Store writes retried after a database error.",
    ingest_transactions_total: "Transactions the ingest committed device messages' writes in (group commit: many messages per transaction).",
    ingest_writes_total: "Device messages' writes (alarms, cancels, tests) the ingest committed; divided by vakt_ingest_transactions_total, the mean batch.",
    store_refused_total: "Messages not acknowledged because the store refused, for good, what they asked for.",
    broker_session_lost_total: "Connections to the broker that found the ingest's persistent session gone (no broker persistence, an expired session, a changed client id).",
    logins_failed_total: "Failed logins.",
    silence_alerts_total: "Silence alerts raised (or updated) by supervision.",
    overdue_alerts_total: "Alerts flagged overdue.",
    broker_logins_refused_total: "Logins the embedded broker refused.",
    backend_identity_refused_total: "Logins the embedded broker refused because they named one of the backend's own identities (security event `backend_identity`).",
    subscribe_denied_total: "Subscriptions the embedded broker refused because they reached beyond the device's own ack and cfg (security event `subscribe_denied`).",
    broker_downlink_dropped_total: "Downlink messages the embedded broker dropped for an offline device (its queue was full).",
    messages_throttled_total: "Device messages over their device's rate: delayed (embedded broker) or dropped (external broker).",
    health_rows_refused_total: "Device health rows the store refused for good (dropped, so they cannot hold back the other devices' rows).",
    broker_admin_commands_total: "Commands sent to the broker's dynamic-security plugin to bring its clients and roles in step with the device register.",
    broker_admin_errors_total: "Dynamic-security commands that failed or went unanswered in time, and reconciliations that could not read the broker or the register (the next reconciliation tries again).",
    broker_admin_reconciliations_total: "Full reconciliations of the broker's clients and roles with the device register that completed without an error.",
    console_board_reads_total: "Reads of the store for every open live stream together (status strip and credentials), one a tick however many streams are open.",
    stream_credential_checks_total: "Reads of the store for one live stream's credential alone: at the stream's start, when its known limit passes, after it missed some ends.",
    broker_admin_conflicts_total: "Broker clients or roles found under a name vakt needs that vakt did not make, and so left alone (counted when first seen).",
}

/// Alert priorities, 1 (most urgent) to 4.
pub const PRIORITIES: usize = 4;

/// Buckets (seconds) of the ingest's and the live stream's latency: milliseconds matter.
pub const LATENCY_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) of the time to acknowledge: around the overdue limits (30 s, 2 min,
/// 10 min by default) and on to a day.
pub const ACKNOWLEDGE_S: &[f64] = &[
    5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0, 14400.0, 43200.0, 86400.0,
];
/// Buckets (seconds) of the time to resolve: minutes to a week.
pub const RESOLVE_S: &[f64] = &[
    60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0,
    604800.0,
];

/// What the ingest made of a device message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageResult {
    Accepted,
    Duplicate,
    Replay,
    Malformed,
    TopicDenied,
    UnknownDevice,
    BadSignature,
}

impl MessageResult {
    pub const ALL: [MessageResult; 7] = [
        MessageResult::Accepted,
        MessageResult::Duplicate,
        MessageResult::Replay,
        MessageResult::Malformed,
        MessageResult::TopicDenied,
        MessageResult::UnknownDevice,
        MessageResult::BadSignature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageResult::Accepted => "accepted",
            MessageResult::Duplicate => "duplicate",
            MessageResult::Replay => "replay",
            MessageResult::Malformed => "malformed",
            MessageResult::TopicDenied => "topic_denied",
            MessageResult::UnknownDevice => "unknown_device",
            MessageResult::BadSignature => "bad_signature",
        }
    }

    /// The counter each result had on its own before results became a label; kept, as the
    /// sum over kinds, for the alert rules and tests that read them.
    fn legacy(self) -> (&'static str, &'static str) {
        match self {
            MessageResult::Accepted => ("vakt_messages_accepted_total", "Device messages verified and taken in."),
            MessageResult::Duplicate => ("vakt_duplicates_total", "QoS 1 redeliveries recognised and dropped."),
            MessageResult::Replay => ("vakt_replays_total", "Replayed messages (older boot or below the window) dropped."),
            MessageResult::Malformed => ("vakt_malformed_total", "Messages with a bad topic or body."),
            MessageResult::TopicDenied => ("vakt_topic_denied_total", "Publishes refused because the device wrote outside its own uplink topics, or retained."),
            MessageResult::UnknownDevice => ("vakt_unknown_devices_total", "Messages from devices that are unknown or not issued."),
            MessageResult::BadSignature => ("vakt_bad_signatures_total", "Messages whose signature did not verify."),
        }
    }
}

const KINDS: usize = Uplink::ALL.len() + 1;
const RESULTS: usize = MessageResult::ALL.len();

/// Device messages by kind (the topic's leaf; `other` for a topic that is no uplink) and
/// result.
pub struct MessageCounts([[AtomicU64; RESULTS]; KINDS]);

impl Default for MessageCounts {
    fn default() -> Self {
        MessageCounts(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

impl MessageCounts {
    pub fn inc(&self, kind: Option<Uplink>, result: MessageResult) {
        self.0[kind_index(kind)][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, kind: Option<Uplink>, result: MessageResult) -> u64 {
        self.0[kind_index(kind)][result as usize].load(Ordering::Relaxed)
    }

    /// Over every kind.
    pub fn total(&self, result: MessageResult) -> u64 {
        self.0
            .iter()
            .map(|r| r[result as usize].load(Ordering::Relaxed))
            .sum()
    }
}

fn kind_index(kind: Option<Uplink>) -> usize {
    kind.and_then(|k| Uplink::ALL.iter().position(|u| *u == k))
        .unwrap_or(KINDS - 1)
}

fn kind_label(index: usize) -> &'static str {
    Uplink::ALL.get(index).map_or("other", |k| k.name())
}

/// Alerts by kind and priority.
pub struct AlertCounts([[AtomicU64; PRIORITIES]; AlertKind::ALL.len()]);

impl Default for AlertCounts {
    fn default() -> Self {
        AlertCounts(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

impl AlertCounts {
    pub fn inc(&self, alert: &Alert) {
        // `get`: a kind missing from `AlertKind::ALL` goes uncounted rather than panic.
        if let Some(row) = self.0.get(alert.kind as usize) {
            row[priority_index(alert)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, kind: AlertKind, priority: u8) -> u64 {
        self.0.get(kind as usize).map_or(0, |row| {
            row[usize::from(priority.clamp(1, PRIORITIES as u8)) - 1].load(Ordering::Relaxed)
        })
    }
}

fn priority_index(alert: &Alert) -> usize {
    usize::from(alert.priority.get().clamp(1, PRIORITIES as u8)) - 1
}

/// A histogram with fixed buckets: a count per bucket and the sum, all atomics.
pub struct Histogram {
    /// Upper bounds in seconds, ascending; one more bucket (+Inf) follows them.
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        // Prometheus buckets are `le`: a value on a bound belongs to that bound's bucket.
        let i = self.bounds.partition_point(|b| *b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A span between two wall-clock times; a clock that stepped back counts as none.
    pub fn observe_between(&self, from_ms: i64, to_ms: i64) {
        let ms = u64::try_from(to_ms.saturating_sub(from_ms)).unwrap_or(0);
        self.observe(Duration::from_millis(ms));
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// What `/metrics` shows besides the counters: states that other parts own (the broker link,
/// supervision, readiness) and hand over as they are at the moment of rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Whether the ingest is connected to the broker.
    pub broker_connected: bool,
    /// Whether this instance leads supervision.
    pub supervision_leader: bool,
    /// Whether `/readyz` would answer 200.
    pub ready: bool,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: bool) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", u8::from(value));
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An alert opened, wherever it was raised.
    pub fn alert_opened(&self, alert: &Alert) {
        self.alerts_opened.inc(alert);
    }

    /// An open alert updated by a repeated trigger.
    pub fn alert_updated(&self, alert: &Alert) {
        self.alerts_updated.inc(alert);
    }

    /// An alert just acknowledged: how long it waited.
    pub fn acknowledged(&self, alert: &Alert) {
        if let Some(at) = alert.acknowledged_at {
            self.time_to_acknowledge[priority_index(alert)].observe_between(alert.first_at, at);
        }
    }

    /// An alert just resolved: how long it was open.
    pub fn resolved(&self, alert: &Alert) {
        if let Some(at) = alert.resolved_at {
            self.time_to_resolve[priority_index(alert)].observe_between(alert.first_at, at);
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(32 * 1024);
        header(
            &mut out,
            "vakt_build_info",
            "gauge",
            "The running version; always 1.",
        );
        let _ = writeln!(
            out,
            "vakt_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_counters(&mut out);

        header(
            &mut out,
            "vakt_device_messages_total",
            "counter",
            "Device messages by kind (the topic's leaf; `other` when it is no uplink) and what the ingest made of them.",
        );
        for (k, row) in self.messages.0.iter().enumerate() {
            for (r, cell) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "vakt_device_messages_total{{kind=\"{}\",result=\"{}\"}} {}",
                    kind_label(k),
                    MessageResult::ALL[r].as_str(),
                    cell.load(Ordering::Relaxed)
                );
            }
        }
        for result in MessageResult::ALL {
            let (name, help) = result.legacy();
            let help = format!(
                "{help} The sum of vakt_device_messages_total{{result=\"{}\"}}.",
                result.as_str()
            );
            counter(&mut out, name, &help, self.messages.total(result));
        }

        for (name, help, counts) in [
            (
                "vakt_alerts_opened_total",
                "Alerts opened, by kind and priority.",
                &self.alerts_opened,
            ),
            (
                "vakt_alerts_updated_total",
                "Alerts updated by a repeated trigger, by kind and priority.",
                &self.alerts_updated,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for kind in AlertKind::ALL {
                for p in 1..=PRIORITIES as u8 {
                    let _ = writeln!(
                        out,
                        "{name}{{kind=\"{}\",priority=\"{p}\"}} {}",
                        kind.as_str(),
                        counts.get(kind, p)
                    );
                }
            }
        }

        header(
            &mut out,
            "vakt_message_commit_seconds",
            "histogram",
            "From a device message's arrival at the ingest to the commit of what it asked the store to do.",
        );
        self.message_commit
            .render(&mut out, "vakt_message_commit_seconds", "");
        header(
            &mut out,
            "vakt_ingest_transaction_seconds",
            "histogram",
            "One group commit of the ingest: the transaction that writes a batch of device messages, from its start to its commit, retries included.",
        );
        self.ingest_transaction
            .render(&mut out, "vakt_ingest_transaction_seconds", "");
        header(
            &mut out,
            "vakt_live_stream_seconds",
            "histogram",
            "From an alert change's publication on this instance (right after its commit, or when another instance's announcement arrives) until a console's live stream has it.",
        );
        self.live_stream
            .render(&mut out, "vakt_live_stream_seconds", "");
        header(
            &mut out,
            "vakt_alarm_to_console_seconds",
            "histogram",
            "From a device alarm's arrival at the ingest until a console's live stream has the alert it opened or updated (once per open stream).",
        );
        self.alarm_to_console
            .render(&mut out, "vakt_alarm_to_console_seconds", "");
        for (name, help, by_priority) in [
            (
                "vakt_alert_acknowledge_seconds",
                "From an alert's first trigger to its acknowledgement, by its priority then.",
                &self.time_to_acknowledge,
            ),
            (
                "vakt_alert_resolve_seconds",
                "From an alert's first trigger to its resolution, by its priority then.",
                &self.time_to_resolve,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            for (i, h) in by_priority.iter().enumerate() {
                h.render(&mut out, name, &format!("priority=\"{}\"", i + 1));
            }
        }

        gauge(
            &mut out,
            "vakt_ready",
            "Whether this instance can take alarms in: the database answers and the ingest is connected (as /readyz).",
            gauges.ready,
        );
        gauge(
            &mut out,
            "vakt_broker_connected",
            "Whether the ingest is connected to the MQTT broker.",
            gauges.broker_connected,
        );
        gauge(
            &mut out,
            "vakt_supervision_leader",
            "Whether this instance leads supervision.",
            gauges.supervision_leader,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Priority;

    /// The value of one line `series value` of the rendered text.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_every_bucket_above() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        for ms in [5, 10, 50, 2000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x", "priority=\"1\"");
        // 10 ms lies on the first bound: `le` takes it in.
        assert_eq!(
            value(&out, "x_bucket{priority=\"1\",le=\"0.01\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&out, "x_bucket{priority=\"1\",le=\"0.1\"}"),
            Some(3.0)
        );
        assert_eq!(value(&out, "x_bucket{priority=\"1\",le=\"1\"}"), Some(3.0));
        assert_eq!(
            value(&out, "x_bucket{priority=\"1\",le=\"+Inf\"}"),
            Some(4.0)
        );
        assert_eq!(value(&out, "x_count{priority=\"1\"}"), Some(4.0));
        assert_eq!(value(&out, "x_sum{priority=\"1\"}"), Some(2.065));
        // A clock stepped back is no negative time.
        h.observe_between(1000, 500);
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn messages_are_counted_by_kind_and_result_and_the_old_counters_are_their_sums() {
        let m = Metrics::default();
        m.messages.inc(Some(Uplink::Alarm), MessageResult::Accepted);
        m.messages
            .inc(Some(Uplink::Heartbeat), MessageResult::Accepted);
        m.messages.inc(None, MessageResult::Malformed);
        let text = m.render(Gauges::default());
        assert_eq!(
            value(
                &text,
                "vakt_device_messages_total{kind=\"alarm\",result=\"accepted\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "vakt_device_messages_total{kind=\"other\",result=\"malformed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(value(&text, "vakt_messages_accepted_total"), Some(2.0));
        assert_eq!(value(&text, "vakt_malformed_total"), Some(1.0));
        assert_eq!(value(&text, "vakt_bad_signatures_total"), Some(0.0));
    }

    #[test]
    fn alerts_are_counted_by_kind_and_priority_and_their_handling_timed() {
        let m = Metrics::default();
        let mut a = Alert::open_panic(1, Priority::P1, 1_000);
        m.alert_opened(&a);
        a.acknowledged_at = Some(21_000);
        m.acknowledged(&a);
        a.resolved_at = Some(601_000);
        m.resolved(&a);
        let text = m.render(Gauges {
            ready: true,
            ..Gauges::default()
        });
        assert_eq!(
            value(
                &text,
                "vakt_alerts_opened_total{kind=\"panic\",priority=\"1\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "vakt_alert_acknowledge_seconds_bucket{priority=\"1\",le=\"15\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                "vakt_alert_acknowledge_seconds_bucket{priority=\"1\",le=\"30\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "vakt_alert_resolve_seconds_sum{priority=\"1\"}"),
            Some(600.0)
        );
        assert_eq!(value(&text, "vakt_ready"), Some(1.0));
        assert!(text.contains(&format!(
            "vakt_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn every_metric_vakt_serves_is_in_the_documentation_and_every_one_documented_is_served() {
        let doc = include_str!("../docs/operations.md");
        let start = doc
            .find("| metric | type | what |")
            .expect("docs/operations.md has the table of metrics");
        let table: Vec<&str> = doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let text = Metrics::default().render(Gauges::default());
        let served: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect();
        for (name, kind) in &served {
            let row = table
                .iter()
                .find(|r| r.contains(&format!("`{name}`")) || r.contains(&format!("`{name}{{")))
                .unwrap_or_else(|| panic!("docs/operations.md: no row for {name}"));
            assert!(
                row.contains(&format!("| {kind} |")),
                "{name} is a {kind}: {row}"
            );
        }
        for row in table {
            let first = row.trim_start_matches("| ").split(" | ").next().unwrap();
            for name in first.split('`').skip(1).step_by(2) {
                let name = name.split('{').next().unwrap();
                assert!(
                    served.iter().any(|(n, _)| *n == name),
                    "docs/operations.md documents {name}, which vakt does not serve"
                );
            }
        }
    }

    #[test]
    fn every_metric_the_dashboard_plots_is_one_vakt_serves() {
        let text = Metrics::default().render(Gauges::default());
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/vakt.json"))
                .expect("deploy/grafana/vakt.json is JSON");
        let mut exprs = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().expect("a PromQL expr").to_owned());
            }
        }
        assert!(exprs.len() >= 6, "{exprs:?}");
        for expr in exprs {
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("vakt_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                assert!(
                    text.contains(&format!("\n{name} "))
                        || text.contains(&format!("\n{name}{{"))
                        || text.starts_with(&format!("# HELP {name} ")),
                    "the dashboard plots {name}, which /metrics does not serve ({expr})"
                );
            }
        }
    }
}
