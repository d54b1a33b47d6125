//! Supervision: silence of devices and the timers on alerts (overdue escalation, reminders,
//! orders about to end, risk assessments due for review). Every instance keeps the liveness
//! table; one leader, chosen through the store, acts on it.

pub mod liveness;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::Config;
use crate::directory::{Change, DeviceEntry, Directory, Index};
use crate::domain::policy::escalation::{self, OverdueAfter};
use crate::domain::policy::triage::{self, Trigger};
use crate::domain::policy::{assessment, incidents, silence, Decision};
use crate::domain::{day_of, now_ms, AlertKind, DeviceKind, Millis, Reason};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt::cluster::PeersPending;
use crate::store::{Audit, DeviceRecord, Raise, RaiseOutcome, SharedStore};
pub use liveness::{Liveness, LivenessEvent};

/// How often the leader looks for due deadlines: detection is at most this late.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How often leadership is checked and, on PostgreSQL, taken over from a dead leader.
const LEAD_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often other instances' heartbeats are read from the store.
const HEARD_POLL_EVERY: Duration = Duration::from_secs(1);
/// Health rows may be written a little after the heartbeat; read back this far.
const HEARD_POLL_OVERLAP_MS: Millis = 5_000;

/// What a reminder says: its kind, priority, trigger and context, as the policy decided.
type Notice = (AlertKind, crate::domain::Priority, Vec<Reason>, Vec<Reason>);

/// The handle the ingest and the API use.
#[derive(Clone)]
pub struct Supervision {
    liveness: Arc<Mutex<Liveness>>,
    /// Intervals devices announced in `hello` since this process started (the store's copy
    /// is written in batches and may lag).
    reported: Arc<Mutex<HashMap<String, u32>>>,
    events: mpsc::UnboundedSender<LivenessEvent>,
    config: Arc<Config>,
    /// Written by the supervisor alone: whether this instance leads.
    leading: watch::Receiver<bool>,
}

impl Supervision {
    /// A message from `device` arrived (the last will does not count).
    pub fn heard(&self, device: &str, at: Millis) {
        let event = self
            .liveness
            .lock()
            .expect("liveness lock")
            .heard(device, at);
        if let Some(e) = event {
            let _ = self.events.send(e);
        }
    }

    /// The device told its heartbeat interval in `hello`; a coordinator's setting wins.
    pub fn reported_interval(&self, device: &str, hb_s: u32, directory: &Directory) {
        self.reported
            .lock()
            .expect("reported lock")
            .insert(device.to_owned(), hb_s);
        let Some(entry) = directory.device(device) else {
            return;
        };
        if entry.hb_interval_s.is_some()
            || entry.kind != DeviceKind::Alarm
            || entry.context.is_none()
        {
            return;
        }
        let grace = self.config.grace_for(&entry.supervision_class);
        let mut l = self.liveness.lock().expect("liveness lock");
        if l.is_tracked(device) {
            l.track(device, hb_s as Millis * 1000, grace as Millis * 1000, 0);
        }
    }

    pub fn is_silent(&self, device: &str) -> bool {
        self.liveness
            .lock()
            .expect("liveness lock")
            .is_silent(device)
    }

    /// Whether this instance leads supervision, as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    pub fn silent_count(&self) -> usize {
        self.liveness.lock().expect("liveness lock").silent_count()
    }
}

/// Starts supervision: the liveness table is filled from the store at once (a restart gives
/// every device a whole deadline from now), the loop runs in the background.
pub async fn start(
    config: Arc<Config>,
    store: SharedStore,
    directory: Directory,
    hub: Hub,
    metrics: Arc<Metrics>,
    peers_pending: Option<PeersPending>,
    shutdown: watch::Receiver<bool>,
) -> Result<Supervision, crate::store::StoreError> {
    let started = now_ms();
    let liveness = Arc::new(Mutex::new(Liveness::new(started - 24 * 3600 * 1000)));
    let (tx, rx) = mpsc::unbounded_channel();
    let reported = Arc::new(Mutex::new(HashMap::new()));
    let (leading_tx, leading) = watch::channel(false);
    // Before the first look, so no change falls between it and the changes that follow.
    let changes = directory.changes();
    let supervision = Supervision {
        liveness: liveness.clone(),
        reported: reported.clone(),
        events: tx,
        config: config.clone(),
        leading,
    };
    let mut supervisor = Supervisor {
        config,
        store,
        directory,
        hub,
        metrics,
        liveness,
        reported,
        events: rx,
        changes,
        resync: false,
        started,
        heard_cursor: started - HEARD_POLL_OVERLAP_MS,
        peers_pending,
        leading: leading_tx,
    };
    supervisor.resync = !supervisor.sync_all().await;
    tokio::spawn(supervisor.run(shutdown));
    Ok(supervision)
}

/// What the directory's changes since the last look reached.
enum Followed {
    Nothing,
    /// Some devices, and these cases.
    Cases(BTreeSet<String>),
    /// The whole directory.
    Everything,
}

/// The heartbeat interval and grace, in seconds, supervision gives a device of the
/// directory; `None` when it is not supervised (only issued alarm devices of open cases
/// are). `hello_hb_s`: the interval the device announced, when known.
pub fn supervised(
    entry: &DeviceEntry,
    hello_hb_s: Option<u32>,
    config: &Config,
) -> Option<(u32, u64)> {
    if entry.kind != DeviceKind::Alarm || entry.context.is_none() {
        return None;
    }
    let hb = silence::effective_interval_s(entry.hb_interval_s, hello_hb_s, config.default_hb_s);
    Some((hb, config.grace_for(&entry.supervision_class)))
}

/// What supervision knows of devices besides the directory.
pub struct Known<'a> {
    pub config: &'a Config,
    /// The store's records of the devices that needed reading (health: the interval
    /// announced, when last heard).
    pub records: &'a HashMap<String, DeviceRecord>,
    /// Intervals devices announced to this process.
    pub reported: &'a HashMap<String, u32>,
    /// When this process started: silence before it is not held against a device.
    pub started: Millis,
    pub now: Millis,
}

/// Brings the liveness table in line with the directory for `devices`, and for them only:
/// tracked with their interval and grace when supervised, untracked when not.
pub fn follow<'a>(
    l: &mut Liveness,
    index: &Index,
    devices: impl IntoIterator<Item = &'a str>,
    known: &Known<'_>,
) {
    for id in devices {
        let record = known.records.get(id);
        let hello = known
            .reported
            .get(id)
            .copied()
            .or(record.and_then(|r| r.health.hello_hb_s));
        let Some((hb, grace)) = index
            .devices
            .get(id)
            .and_then(|e| supervised(e, hello, known.config))
        else {
            l.untrack(id);
            continue;
        };
        // Already tracked: what this process heard itself is newer.
        let heard = if l.is_tracked(id) {
            0
        } else {
            silence::counted_from(
                record.and_then(|r| r.health.last_heard_at),
                known.started,
                known.now,
            )
        };
        l.track(id, hb as Millis * 1000, grace as Millis * 1000, heard);
    }
}

struct Supervisor {
    config: Arc<Config>,
    store: SharedStore,
    directory: Directory,
    hub: Hub,
    metrics: Arc<Metrics>,
    liveness: Arc<Mutex<Liveness>>,
    reported: Arc<Mutex<HashMap<String, u32>>>,
    events: mpsc::UnboundedReceiver<LivenessEvent>,
    /// The directory's changes: which devices to look at again.
    changes: broadcast::Receiver<Change>,
    /// The last look at every device failed: the next one tries again.
    resync: bool,
    started: Millis,
    heard_cursor: Millis,
    /// With several instances: set while a dead one's queued messages may be unread.
    peers_pending: Option<PeersPending>,
    /// Whether this instance leads, for the cluster and `/metrics`.
    leading: watch::Sender<bool>,
}

impl Supervisor {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut leadership = self.store.leadership();
        let mut leading = false;
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lead_check = tokio::time::interval(LEAD_CHECK_EVERY);
        let mut heard_poll = tokio::time::interval(HEARD_POLL_EVERY);
        let mut timers = tokio::time::interval(Duration::from_secs(1));
        let mut orders = tokio::time::interval(Duration::from_secs(60));
        let mut retention = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = lead_check.tick() => {
                    let now_leading = leadership.check().await;
                    if now_leading && !leading {
                        tracing::info!("this instance leads supervision");
                        // The old leader's share of the heartbeats may sit in its session:
                        // judge no silence until it has been drained.
                        if let Some(p) = &self.peers_pending {
                            p.set(true);
                        }
                        // Devices announced their intervals to the old leader too (their
                        // `hello` went to whichever instance the broker chose): look at
                        // every device in the store once, at the next sweep, instead of
                        // judging them by the default interval until the next full pass.
                        self.resync = true;
                        self.resync_silent().await;
                        self.orders_ending().await;
                        self.reviews_passed().await;
                        self.erase_closed_cases().await;
                    } else if leading && !now_leading {
                        tracing::warn!("this instance no longer leads supervision");
                    }
                    leading = now_leading;
                    self.leading.send_replace(leading);
                }
                _ = sweep.tick() => {
                    // A coordinator's change may have added an order that ends soon,
                    // recorded an assessment, or closed a case.
                    match self.follow_changes().await {
                        Followed::Nothing => {}
                        Followed::Cases(cases) => if leading {
                            self.orders_ending_of(&cases).await;
                            self.reviews_passed_of(&cases).await;
                            self.erase_closed_cases_among(&cases).await;
                        }
                        Followed::Everything => if leading {
                            self.orders_ending().await;
                            self.reviews_passed().await;
                            self.erase_closed_cases().await;
                        }
                    }
                    let waiting = self.peers_pending.as_ref().is_some_and(|p| p.get());
                    if leading && !waiting {
                        let events = self.liveness.lock().expect("liveness lock").sweep(now_ms());
                        for e in events {
                            self.act(e).await;
                        }
                    }
                }
                Some(e) = self.events.recv() => {
                    if leading {
                        self.act(e).await;
                    }
                }
                _ = heard_poll.tick() => self.poll_heard(leading).await,
                _ = timers.tick(), if leading => self.overdue().await,
                _ = orders.tick(), if leading => {
                    self.orders_ending().await;
                    self.reviews_passed().await;
                }
                _ = retention.tick(), if leading => self.erase_closed_cases().await,
            }
        }
    }

    /// Follows the directory's changes since the last look: only the devices they name
    /// are looked at again, unless the whole directory was reloaded (or this fell behind).
    async fn follow_changes(&mut self) -> Followed {
        let mut devices = BTreeSet::new();
        let mut cases = BTreeSet::new();
        let mut everything = std::mem::take(&mut self.resync);
        loop {
            match self.changes.try_recv() {
                Ok(Change::Device(id)) => {
                    devices.insert(id);
                }
                Ok(Change::Case {
                    case_id,
                    devices: of_case,
                }) => {
                    cases.insert(case_id);
                    devices.extend(of_case.iter().cloned());
                }
                Ok(Change::Reloaded) | Err(TryRecvError::Lagged(_)) => everything = true,
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        if everything {
            self.resync = !self.sync_all().await;
            return Followed::Everything;
        }
        if devices.is_empty() && cases.is_empty() {
            return Followed::Nothing;
        }
        self.sync_devices(&devices).await;
        Followed::Cases(cases)
    }

    /// Looks at the devices named again: tracked, with their interval, when supervised,
    /// untracked when not. The store is read only for those this process knows too little
    /// of (not tracked yet, or no interval heard here).
    async fn sync_devices(&mut self, devices: &BTreeSet<String>) {
        let index = self.directory.snapshot();
        let unknown: Vec<&String> = {
            let reported = self.reported.lock().expect("reported lock");
            let l = self.liveness.lock().expect("liveness lock");
            devices
                .iter()
                .filter(|id| {
                    index.devices.get(id).is_some_and(|e| {
                        supervised(e, None, &self.config).is_some()
                            && (!l.is_tracked(id)
                                || (e.hb_interval_s.is_none() && !reported.contains_key(*id)))
                    })
                })
                .collect()
        };
        let mut records = HashMap::new();
        for id in unknown {
            match self.store.device(id).await {
                Ok(d) => {
                    records.insert(id.clone(), d);
                }
                Err(e) => {
                    tracing::warn!(device = %id, error = %e, "cannot read a device for supervision")
                }
            }
        }
        let reported = self.reported.lock().expect("reported lock").clone();
        let known = Known {
            config: &self.config,
            records: &records,
            reported: &reported,
            started: self.started,
            now: now_ms(),
        };
        let mut l = self.liveness.lock().expect("liveness lock");
        follow(&mut l, &index, devices.iter().map(String::as_str), &known);
    }

    /// Supervises exactly the issued alarm devices of open cases, with their intervals,
    /// looking at every device (at start, and after a full reload of the directory).
    async fn sync_all(&mut self) -> bool {
        let index = self.directory.snapshot();
        let records = match self.store.devices().await {
            Ok(d) => d
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect::<HashMap<_, _>>(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read devices for supervision");
                return false;
            }
        };
        let reported = self.reported.lock().expect("reported lock").clone();
        let known = Known {
            config: &self.config,
            records: &records,
            reported: &reported,
            started: self.started,
            now: now_ms(),
        };
        let mut l = self.liveness.lock().expect("liveness lock");
        let wanted: HashSet<&str> = index
            .devices
            .iter()
            .filter(|(_, e)| supervised(e, None, &self.config).is_some())
            .map(|(id, _)| id)
            .collect();
        follow(&mut l, &index, wanted.iter().copied(), &known);
        for id in l.tracked_ids() {
            if !wanted.contains(id.as_str()) {
                l.untrack(&id);
            }
        }
        true
    }

    /// On taking the lead: devices whose silence alert is still open are silent already.
    async fn resync_silent(&mut self) {
        match self.store.unresolved_silent_devices().await {
            Ok(list) => {
                let mut l = self.liveness.lock().expect("liveness lock");
                for (device, since) in list {
                    l.mark_silent(&device, since);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read open silence alerts"),
        }
    }

    /// Heartbeats other instances took in, as written to the store.
    async fn poll_heard(&mut self, leading: bool) {
        let since = self.heard_cursor;
        let rows = match self.store.heard_since(since).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read device health");
                return;
            }
        };
        let mut newest = since;
        let mut events = Vec::new();
        {
            let mut l = self.liveness.lock().expect("liveness lock");
            for (device, at) in rows {
                newest = newest.max(at);
                events.extend(l.heard(&device, at));
            }
        }
        // Rows can be written a little after their time: read the last seconds again.
        self.heard_cursor = since.max(newest - HEARD_POLL_OVERLAP_MS);
        if leading {
            for e in events {
                self.act(e).await;
            }
        }
    }

    async fn act(&mut self, event: LivenessEvent) {
        let now = now_ms();
        match event {
            LivenessEvent::Silent {
                device, last_heard, ..
            } => self.raise_silent(&device, last_heard, now).await,
            LivenessEvent::Reminder { device, n } => {
                let note = silence::still_silent(n);
                self.annotate(&device, "reminder", &note, None, now).await;
            }
            LivenessEvent::BackOnline { device } => {
                let note = silence::heard_again();
                self.annotate(&device, "back_online", &note, Some(true), now)
                    .await;
            }
        }
    }

    async fn raise_silent(&mut self, device: &str, last_heard: Millis, now: Millis) {
        let Some(entry) = self.directory.device(device) else {
            return;
        };
        let Some(ctx) = entry.context.clone() else {
            return;
        };
        let (hb, grace) = self.interval_and_grace(device, &entry).await;
        let trigger = Trigger::Silent {
            last_heard,
            interval_s: hb,
            grace_s: grace,
        };
        let decision = triage::triage(&self.config.policy, &ctx, &trigger, now, &[]);
        let Some(raise) = Raise::for_decision(decision, &ctx, None, false, now) else {
            return;
        };
        let outcome = self.store.raise(&raise).await;
        match &outcome {
            Ok(RaiseOutcome::Opened(change)) => self.metrics.alert_opened(&change.alert),
            Ok(RaiseOutcome::Updated(change)) => self.metrics.alert_updated(&change.alert),
            _ => {}
        }
        match outcome {
            Ok(RaiseOutcome::Opened(change)) | Ok(RaiseOutcome::Updated(change)) => {
                crate::metrics::Metrics::inc(&self.metrics.silence_alerts_total);
                tracing::info!(device, alert = change.alert.id, "device silent");
                self.hub.publish(change);
            }
            Ok(RaiseOutcome::Duplicate) => {}
            Err(e) => {
                tracing::error!(device, error = %e, "could not store a silence alert; will retry");
                // Let the next sweep find it again.
                self.liveness
                    .lock()
                    .expect("liveness lock")
                    .unmark_silent(device);
            }
        }
    }

    async fn interval_and_grace(
        &self,
        device: &str,
        entry: &crate::directory::DeviceEntry,
    ) -> (u32, u64) {
        let reported = self
            .reported
            .lock()
            .expect("reported lock")
            .get(device)
            .copied();
        let hello = match (entry.hb_interval_s, reported) {
            (Some(_), _) => None,
            (None, Some(r)) => Some(r),
            (None, None) => self
                .store
                .device(device)
                .await
                .ok()
                .and_then(|d| d.health.hello_hb_s),
        };
        let hb =
            silence::effective_interval_s(entry.hb_interval_s, hello, self.config.default_hb_s);
        (hb, self.config.grace_for(&entry.supervision_class))
    }

    async fn annotate(
        &mut self,
        device: &str,
        action: &str,
        note: &Reason,
        back_online: Option<bool>,
        now: Millis,
    ) {
        match self
            .store
            .annotate_open(
                device,
                incidents::class_of(AlertKind::Silent),
                action,
                note,
                back_online,
                now,
            )
            .await
        {
            Ok(Some(change)) => self.hub.publish(change),
            Ok(None) => {}
            Err(e) => tracing::warn!(device, error = %e, "could not annotate the silence alert"),
        }
    }

    /// Open alerts nobody acknowledged in time: flagged overdue, priority 2 and 3 raised.
    async fn overdue(&mut self) {
        let now = now_ms();
        let limits = &self.config.supervision;
        let after = OverdueAfter {
            p1_s: limits.overdue_p1_s,
            p2_s: limits.overdue_p2_s,
            p3_s: limits.overdue_p3_s,
        };
        let alerts = match self.store.alerts(&[crate::domain::AlertState::Open]).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read open alerts");
                return;
            }
        };
        for a in alerts {
            let Decision::Escalate { priority, note } = escalation::overdue(after, &a, now) else {
                continue;
            };
            match self.store.mark_overdue(a.id, priority, &note, now).await {
                Ok(Some(change)) => {
                    crate::metrics::Metrics::inc(&self.metrics.overdue_alerts_total);
                    self.hub.publish(change);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(alert = a.id, error = %e, "could not mark an alert overdue")
                }
            }
        }
    }

    /// Retention: personal data of cases closed long enough ago is erased, and each erasure
    /// is on the audit trail, in its own transaction.
    async fn erase_closed_cases(&mut self) {
        let now = now_ms();
        let days = self.config.supervision.erase_closed_after_days as Millis;
        let detail = format!("closed more than {days} days ago");
        let audit = Audit::new(None, "case_erased").detail(&detail);
        match self
            .store
            .erase_closed_cases(now - days * 24 * 3600 * 1000, now, &audit)
            .await
        {
            Ok(erased) => {
                for case_id in erased {
                    tracing::info!(case = %case_id, "personal data of a closed case erased");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention run failed"),
        }
    }

    /// After cases changed: retention, if one of them is closed.
    async fn erase_closed_cases_among(&mut self, cases: &BTreeSet<String>) {
        let index = self.directory.snapshot();
        if cases
            .iter()
            .any(|id| index.cases.get(id).is_some_and(|c| c.closed_at.is_some()))
        {
            self.erase_closed_cases().await;
        }
    }

    /// Orders in force, with zones, that end within the configured days: one reminder each.
    async fn orders_ending(&mut self) {
        match self.store.orders().await {
            Ok(orders) => self.remind_orders_ending(&orders).await,
            Err(e) => tracing::warn!(error = %e, "cannot read orders"),
        }
    }

    /// The same for the orders of some cases only, after they changed.
    async fn orders_ending_of(&mut self, cases: &BTreeSet<String>) {
        for case_id in cases {
            match self.store.orders_of_case(case_id).await {
                Ok(orders) => self.remind_orders_ending(&orders).await,
                Err(e) => tracing::warn!(case = %case_id, error = %e, "cannot read orders"),
            }
        }
    }

    async fn remind_orders_ending(&mut self, orders: &[crate::domain::Order]) {
        let now = now_ms();
        let within_days = self.config.supervision.order_ending_days;
        let index = self.directory.snapshot();
        for order in orders {
            let Some(case) = index.cases.get(&order.case_id) else {
                continue;
            };
            let Decision::Raise {
                kind,
                priority,
                trigger,
                context,
                ..
            } = escalation::order_ending(order, case, within_days, now)
            else {
                continue;
            };
            let incident = incidents::order_ending(&order.id);
            let notice = (kind, priority, trigger, context);
            if let Err(e) = self.raise_reminder(&incident, case, notice, now).await {
                tracing::warn!(order = %order.id, error = %e, "could not raise an order-ending reminder")
            }
        }
    }

    /// Opens a reminder of `incident` for `case` once (a repeat is nothing) and shows it on
    /// the consoles.
    async fn raise_reminder(
        &self,
        incident: &str,
        case: &crate::domain::Case,
        (kind, priority, trigger, context): Notice,
        now: Millis,
    ) -> Result<(), crate::store::StoreError> {
        let raised = self
            .store
            .raise_notice(incident, kind, priority, case, &trigger, &context, now)
            .await?;
        if let Some(change) = raised {
            self.metrics.alert_opened(&change.alert);
            self.hub.publish(change);
        }
        Ok(())
    }

    /// Open cases whose latest risk assessment's review date has passed: one reminder each.
    async fn reviews_passed(&mut self) {
        match self.store.reviews_passed(day_of(now_ms())).await {
            Ok(due) => self.remind_reviews(&due).await,
            Err(e) => tracing::warn!(error = %e, "cannot read risk assessments"),
        }
    }

    /// The same for some cases only, after they changed (a risk set on the case keeps a
    /// review date that may have passed).
    async fn reviews_passed_of(&mut self, cases: &BTreeSet<String>) {
        let mut latest = Vec::new();
        for case_id in cases {
            match self.store.latest_assessment(case_id).await {
                Ok(a) => latest.extend(a),
                Err(e) => {
                    tracing::warn!(case = %case_id, error = %e, "cannot read risk assessments")
                }
            }
        }
        self.remind_reviews(&latest).await;
    }

    async fn remind_reviews(&mut self, latest: &[crate::domain::Assessment]) {
        let now = now_ms();
        let today = day_of(now);
        let index = self.directory.snapshot();
        for a in latest {
            let Some(case) = index.cases.get(&a.case_id) else {
                continue;
            };
            let Decision::Raise {
                kind,
                priority,
                trigger,
                context,
                ..
            } = assessment::review_due(a, case, today)
            else {
                continue;
            };
            let Some(due) = a.next_review else {
                continue;
            };
            let incident = incidents::review_due(&case.id, due);
            let notice = (kind, priority, trigger, context);
            if let Err(e) = self.raise_reminder(&incident, case, notice, now).await {
                tracing::warn!(case = %case.id, error = %e, "could not raise a review reminder")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::tests::{directory, record_of_c1};

    fn known<'a>(
        config: &'a Config,
        records: &'a HashMap<String, DeviceRecord>,
        reported: &'a HashMap<String, u32>,
    ) -> Known<'a> {
        Known {
            config,
            records,
            reported,
            started: 0,
            now: 1_000,
        }
    }

    #[test]
    fn only_issued_alarm_devices_of_open_cases_are_supervised() {
        let directory = directory();
        let index = directory.snapshot();
        let config = Config::default();
        let (records, reported) = (HashMap::new(), HashMap::new());
        let mut l = Liveness::new(0);
        follow(
            &mut l,
            &index,
            ["d1", "d2", "d3", "d4"],
            &known(&config, &records, &reported),
        );
        let mut tracked = l.tracked_ids();
        tracked.sort();
        assert_eq!(tracked, ["d1", "d3"]);
    }

    #[test]
    fn after_a_case_is_closed_following_its_devices_alone_stops_supervising_them() {
        let directory = directory();
        let config = Config::default();
        let (records, reported) = (HashMap::new(), HashMap::new());
        let mut l = Liveness::new(0);
        follow(
            &mut l,
            &directory.snapshot(),
            ["d1", "d3"],
            &known(&config, &records, &reported),
        );
        let mut changes = directory.changes();
        let mut closed = record_of_c1(vec![]);
        closed.case.closed_at = Some(500);
        directory.apply_case("c1", Some(closed));
        let Ok(Change::Case { devices, .. }) = changes.try_recv() else {
            panic!("no change told");
        };
        follow(
            &mut l,
            &directory.snapshot(),
            devices.iter().map(String::as_str),
            &known(&config, &records, &reported),
        );
        assert_eq!(l.tracked_ids(), ["d3"]);
    }

    #[test]
    fn a_coordinators_interval_wins_over_the_one_the_device_announced() {
        let directory = directory();
        let mut entry = directory.device("d1").unwrap();
        let config = Config::default();
        assert_eq!(
            supervised(&entry, Some(60), &config).map(|(hb, _)| hb),
            Some(60)
        );
        entry.hb_interval_s = Some(30);
        assert_eq!(
            supervised(&entry, Some(60), &config).map(|(hb, _)| hb),
            Some(30)
        );
    }
}
