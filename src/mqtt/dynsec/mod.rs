//! Live broker credentials: vakt keeps Mosquitto's dynamic-security plugin in step with the
//! device register, so that adding, issuing, returning, losing or re-keying a device takes
//! effect on the broker within seconds.
//!
//! [`plan`] decides (register → what the plugin should hold → commands); this module is the
//! edge around it: its own administrator connection to the broker, which publishes the
//! commands on `$CONTROL/dynamic-security/v1` and reads the answers on `…/response`
//! (matched by `correlationData`, so several instances on one broker each read their own),
//! and the task that reconciles. A device's change is pushed at once: the directory
//! announces each device it re-reads after a change, and that device alone is checked. A
//! full reconciliation runs at start and every `mqtt_admin_reconcile_s` seconds, and catches
//! whatever was missed: changes made on another instance, on the command line, while vakt
//! was down, or by hand on the broker.
//!
//! Each check reads the broker first and the register second. So when another instance
//! changes a device meanwhile, this one either sees the change in the register or sees the
//! broker as it was before that instance's push, and in both cases what it sends agrees with
//! (or repeats) that push rather than undoing it. Every command is idempotent, or its
//! "already done" answer is taken as success. A failure (no answer in time, an error) is
//! logged, counted (`vakt_broker_admin_errors_total`) and tried again by a full
//! reconciliation within seconds.

pub mod plan;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::config::Secret;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::mqtt::mosquitto::may_connect;
use crate::store::{DeviceRecord, SharedStore, StoreError};
use plan::{device_role, BackendUser, Command, Held, HeldClient, HeldRole, Password, Plan};
use plan::{RegisterDevice, Wanted};

/// Where the plugin takes commands, and where it answers.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// Commands per control message. Mosquitto 2.0's plugin writes its whole file after each
/// changing command, so a large first reconciliation goes in modest steps, each answered
/// well within the wait below.
const BATCH: usize = 20;
/// Bytes of commands per control message: the shipped `max_packet_size 4096` holds for
/// vakt's administrator too, and a broker cuts off a client that sends a larger packet.
const BATCH_BYTES: usize = 3_000;
/// How long an answer may take before the request counts as failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Clients or roles per listing request.
const PAGE: i64 = 500;
/// After a failed check, the next full reconciliation comes this soon.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not connected to the broker as its administrator")]
    NotConnected,
    #[error(
        "no answer from the dynamic-security plugin within {0:?} (is it loaded, and may vakt's \
         administrator publish to and subscribe to $CONTROL/dynamic-security/#?)"
    )]
    NoAnswer(Duration),
    #[error("{0} commands were refused")]
    Refused(usize),
    #[error("unexpected answer to {0}")]
    Unexpected(String),
    #[error("device register: {0}")]
    Store(#[from] StoreError),
}

/// What the reconciler needs to know besides the register.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub host: String,
    pub port: u16,
    /// The same TLS as the ingest's link for `mqtts://`: the administrator's password and
    /// every device's password travel on this connection.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The administrator connection's client id (`Config::broker_admin_client_id`).
    pub client_id: String,
    pub username: String,
    pub password: Secret,
    /// This instance's own backend user (`mqtt_username`) and the secret its password is
    /// derived from, when it logs in with one.
    pub backend: Option<(String, Secret)>,
    /// The backend's names, which no device can have.
    pub reserved: Vec<String>,
    /// Between full reconciliations.
    pub every: Duration,
}

/// Starts the administrator connection and the reconciler; the first full reconciliation
/// runs at once.
pub fn start(
    settings: AdminSettings,
    store: SharedStore,
    directory: Directory,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let admin = Admin::connect(&settings, shutdown.clone());
    let backend = settings.backend.as_ref().map(|(user, secret)| BackendUser {
        username: user.clone(),
        password: Password::new(super::link::backend_password(&secret.0, user)),
    });
    let refreshed = directory.devices_refreshed();
    let reconciler = Reconciler {
        admin,
        store,
        directory,
        metrics,
        backend,
        reserved: settings.reserved,
        conflicts: BTreeSet::new(),
        refused: BTreeSet::new(),
    };
    tokio::spawn(reconciler.run(refreshed, settings.every, shutdown));
}

/// One answer of the plugin to one command.
#[derive(Debug, Deserialize)]
struct Answer {
    command: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(rename = "correlationData", default)]
    correlation: Option<String>,
}

#[derive(Deserialize)]
struct Answers {
    responses: Vec<Answer>,
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Answer>>>>>;

/// vakt's administrator connection to the broker.
#[derive(Clone)]
struct Admin {
    client: AsyncClient,
    /// Connected and subscribed to the answers.
    ready: watch::Receiver<bool>,
    waiting: Waiting,
    next: Arc<AtomicU64>,
    /// What this connection's `correlationData` start with: every administrator on the
    /// broker gets every answer.
    tag: String,
}

impl Admin {
    fn connect(settings: &AdminSettings, shutdown: watch::Receiver<bool>) -> Admin {
        let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        if let Some(tls) = &settings.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15))
            // A page of listed roles with their rules is some hundreds of kilobytes.
            .set_max_packet_size(16 * 1024 * 1024, 1024 * 1024)
            .set_credentials(settings.username.clone(), settings.password.0.clone());
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (ready_tx, ready) = watch::channel(false);
        let admin = Admin {
            client: client.clone(),
            ready,
            waiting: Waiting::default(),
            next: Arc::default(),
            tag: settings.client_id.clone(),
        };
        tokio::spawn(drive(
            eventloop,
            client,
            ready_tx,
            admin.waiting.clone(),
            admin.tag.clone(),
            shutdown,
        ));
        admin
    }

    /// Sends `commands` in one control message and gives the plugin's answers, one per
    /// command, in order.
    async fn send(&self, commands: &[Command]) -> Result<Vec<Answer>, AdminError> {
        let mut ready = self.ready.clone();
        if tokio::time::timeout(ANSWER_WITHIN, ready.wait_for(|r| *r))
            .await
            .is_err()
        {
            return Err(AdminError::NotConnected);
        }
        let batch = self.next.fetch_add(1, Ordering::Relaxed);
        let mut list = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let mut value = serde_json::to_value(command).expect("commands serialise");
            value["correlationData"] = Value::String(format!("{}:{batch}:{i}", self.tag));
            list.push(value);
        }
        // The body carries passwords: it goes to the broker and nowhere else.
        let body = serde_json::to_vec(&serde_json::json!({ "commands": list }))
            .expect("commands serialise");
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("waiting").insert(batch, tx);
        let sent = self
            .client
            .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, body)
            .await;
        if sent.is_err() {
            self.waiting.lock().expect("waiting").remove(&batch);
            return Err(AdminError::NotConnected);
        }
        let answers = tokio::time::timeout(ANSWER_WITHIN, rx).await;
        self.waiting.lock().expect("waiting").remove(&batch);
        match answers {
            Ok(Ok(answers)) if answers.len() == commands.len() => Ok(answers),
            Ok(Ok(_)) => Err(AdminError::Unexpected(commands[0].summary())),
            Ok(Err(_)) => Err(AdminError::NotConnected),
            Err(_) => Err(AdminError::NoAnswer(ANSWER_WITHIN)),
        }
    }
}

/// Drives the administrator connection: (re)connects, subscribes to the answers, and hands
/// each answer to whoever waits for it.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    ready: watch::Sender<bool>,
    waiting: Waiting,
    tag: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned = false;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => {
                let _ = client.disconnect().await;
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                warned = false;
                if let Err(e) = client.subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce).await {
                    tracing::error!(error = %e, "broker credentials: cannot subscribe to the plugin's answers");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if granted {
                    tracing::info!(
                        "broker credentials: connected to the broker as its administrator"
                    );
                } else {
                    tracing::error!(
                        topic = RESPONSE_TOPIC,
                        "broker credentials: vakt's administrator may not subscribe to the plugin's answers"
                    );
                }
                ready.send_replace(granted);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE_TOPIC => {
                hand_over(&p.payload, &tag, &waiting);
            }
            Ok(_) => {}
            Err(e) => {
                ready.send_replace(false);
                if !warned {
                    match &e {
                        ConnectionError::ConnectionRefused(code) => tracing::error!(
                            ?code,
                            "broker credentials: the broker refused vakt's administrator login \
                             (mqtt_admin_username, mqtt_admin_password)"
                        ),
                        e => {
                            tracing::warn!(error = %e, "broker credentials: administrator connection lost; retrying")
                        }
                    }
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Gives the answers of one control message to the request that sent it, if it was ours.
fn hand_over(payload: &[u8], tag: &str, waiting: &Waiting) {
    let Ok(answers) = serde_json::from_slice::<Answers>(payload) else {
        tracing::warn!("broker credentials: an answer of the plugin that is not JSON");
        return;
    };
    let batch = answers.responses.first().and_then(|a| {
        let rest = a
            .correlation
            .as_deref()?
            .strip_prefix(tag)?
            .strip_prefix(':')?;
        rest.split(':').next()?.parse::<u64>().ok()
    });
    let Some(batch) = batch else {
        return; // another administrator's
    };
    if let Some(tx) = waiting.lock().expect("waiting").remove(&batch) {
        let _ = tx.send(answers.responses);
    }
}

/// What a refused command is: an error, or, where another administrator may have done the
/// same a moment before, a reason to look again.
#[derive(Clone, Copy)]
enum Refusals {
    Errors,
    Expected,
}

/// Keeps the plugin in step with the register.
struct Reconciler {
    admin: Admin,
    store: SharedStore,
    directory: Directory,
    metrics: Arc<Metrics>,
    backend: Option<BackendUser>,
    reserved: Vec<String>,
    /// Conflicts and refusals already reported, so each is logged once, not every 30 s.
    conflicts: BTreeSet<String>,
    refused: BTreeSet<String>,
}

impl Reconciler {
    async fn run(
        mut self,
        mut refreshed: broadcast::Receiver<String>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut next_full = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_full) => {
                    let wait = match self.everything().await {
                        Ok(()) => {
                            Metrics::inc(&self.metrics.broker_admin_reconciliations_total);
                            every
                        }
                        Err(e) => {
                            self.failed(&e);
                            tracing::warn!(error = %e, "broker credentials: reconciliation failed; trying again shortly");
                            RETRY_AFTER.min(every)
                        }
                    };
                    next_full = Instant::now() + wait;
                }
                changed = refreshed.recv() => match changed {
                    Ok(id) => {
                        let mut ids = BTreeSet::from([id]);
                        while let Ok(more) = refreshed.try_recv() {
                            ids.insert(more);
                        }
                        for id in ids {
                            if let Err(e) = self.device(&id).await {
                                self.failed(&e);
                                tracing::warn!(device = %id, error = %e, "broker credentials: the device's change did not reach the broker; a reconciliation follows shortly");
                                next_full = next_full.min(Instant::now() + RETRY_AFTER);
                            }
                        }
                    }
                    // Too many changes at once to follow one by one: look at everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => next_full = Instant::now(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    fn failed(&self, e: &AdminError) {
        // Refused commands were counted one by one.
        if !matches!(e, AdminError::Refused(_)) {
            Metrics::inc(&self.metrics.broker_admin_errors_total);
        }
    }

    fn reserved(&self) -> Vec<&str> {
        self.reserved.iter().map(String::as_str).collect()
    }

    /// The full reconciliation: every client and role on the broker against the register.
    /// Refusals get a second look, as for one device (`device`): another instance may
    /// have made the same change between this one's reading and its commands.
    async fn everything(&mut self) -> Result<(), AdminError> {
        match self.everything_once(Refusals::Expected).await {
            Err(AdminError::Refused(_)) => self.everything_once(Refusals::Errors).await,
            done => done,
        }
    }

    async fn everything_once(&mut self, refusals: Refusals) -> Result<(), AdminError> {
        // The broker first, then the register (see the module's notes).
        let clients: Vec<HeldClient> = self
            .list(|offset| Command::ListClients {
                verbose: true,
                count: PAGE,
                offset,
            })
            .await?;
        let roles: Vec<HeldRole> = self
            .list(|offset| Command::ListRoles {
                verbose: true,
                count: PAGE,
                offset,
            })
            .await?;
        let held = Held::new(clients, roles);
        let register: Vec<RegisterDevice> = self
            .store
            .devices()
            .await?
            .iter()
            .map(|d| self.register_device(d))
            .collect();
        let wanted = Wanted::everything(&register, self.backend.as_ref(), &self.reserved());
        self.report(&wanted, true);
        let plan = plan::plan(&wanted, &held);
        self.apply(plan, true, refusals).await
    }

    /// One device after a change: its client and role on the broker against its entry in
    /// the register.
    async fn device(&mut self, id: &str) -> Result<(), AdminError> {
        match self.device_once(id, Refusals::Expected).await {
            // Every instance hears of a device's change and brings the broker in step at
            // once, so two of them read "not there" and send the same commands; the
            // second's are refused (an existing role assignment is only an "Internal
            // error" to Mosquitto 2.0). Looked at again, nothing is left to do: that was no
            // error. What is still out of step after a second look is one.
            Err(AdminError::Refused(_)) => self.device_once(id, Refusals::Errors).await,
            done => done,
        }
    }

    async fn device_once(&mut self, id: &str, refusals: Refusals) -> Result<(), AdminError> {
        let get = [
            Command::GetClient {
                username: id.to_owned(),
            },
            Command::GetRole {
                rolename: device_role(id),
            },
        ];
        let answers = self.admin.send(&get).await?;
        let client: Option<HeldClient> = found(&answers[0], "client", "Client not found")?;
        let role: Option<HeldRole> = found(&answers[1], "role", "Role not found")?;
        let held = Held::new(client.into_iter().collect(), role.into_iter().collect());
        let record = match self.store.device(id).await {
            Ok(d) => Some(self.register_device(&d)),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let wanted = Wanted::device(record.as_ref(), &self.reserved());
        self.report(&wanted, false);
        self.apply(plan::plan(&wanted, &held), false, refusals)
            .await
    }

    /// A device as the plan sees it; its key is opened only when it may connect, and only
    /// to derive the password.
    fn register_device(&self, d: &DeviceRecord) -> RegisterDevice {
        let password = may_connect(d.status)
            .then(|| self.directory.vault().open(&d.key_hex, &d.id).ok())
            .flatten()
            .map(|key| Password::new(key.mqtt_password()));
        RegisterDevice {
            id: d.id.clone(),
            status: d.status,
            password,
        }
    }

    /// Every page of a listing.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        page: impl Fn(i64) -> Command,
    ) -> Result<Vec<T>, AdminError> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let command = page(offset);
            let answers = self.admin.send(std::slice::from_ref(&command)).await?;
            let answer = &answers[0];
            if let Some(error) = &answer.error {
                Metrics::inc(&self.metrics.broker_admin_errors_total);
                tracing::warn!(command = %command.summary(), error, "broker credentials: the plugin refused");
                return Err(AdminError::Refused(1));
            }
            let data = answer.data.as_ref();
            let total = data
                .and_then(|d| d["totalCount"].as_i64())
                .ok_or_else(|| AdminError::Unexpected(command.summary()))?;
            let key = if answer.command == "listClients" {
                "clients"
            } else {
                "roles"
            };
            let items: Vec<T> = data
                .and_then(|d| serde_json::from_value(d[key].clone()).ok())
                .ok_or_else(|| AdminError::Unexpected(command.summary()))?;
            let n = items.len() as i64;
            all.extend(items);
            offset += n;
            if n == 0 || offset >= total {
                return Ok(all);
            }
        }
    }

    /// Logs what is new among the devices given nothing on purpose.
    fn report(&mut self, wanted: &Wanted, everything: bool) {
        let now: BTreeSet<String> = wanted
            .refused
            .iter()
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        for line in now.difference(&self.refused) {
            tracing::warn!("broker credentials: device {line}");
        }
        if everything {
            self.refused = now;
        } else {
            self.refused.extend(now);
        }
    }

    /// Carries the plan out, a batch at a time; every command is counted, every refusal
    /// logged and counted.
    async fn apply(
        &mut self,
        plan: Plan,
        everything: bool,
        refusals: Refusals,
    ) -> Result<(), AdminError> {
        let conflicts: BTreeSet<String> = plan.conflicts.into_iter().collect();
        for c in conflicts.difference(&self.conflicts) {
            Metrics::inc(&self.metrics.broker_admin_conflicts_total);
            tracing::warn!(
                "broker credentials: {c} (not made by vakt): left alone, so that device or \
                 user cannot log in as vakt wants; rename or remove it on the broker"
            );
        }
        if everything {
            self.conflicts = conflicts;
        } else {
            self.conflicts.extend(conflicts);
        }
        if plan.commands.is_empty() {
            return Ok(());
        }
        // What changes, in one line: a first reconciliation may send thousands of commands.
        const NAMED: usize = 10;
        let mut named: Vec<String> = plan
            .commands
            .iter()
            .take(NAMED)
            .map(Command::summary)
            .collect();
        if plan.commands.len() > NAMED {
            named.push(format!("and {} more", plan.commands.len() - NAMED));
        }
        tracing::info!(
            commands = plan.commands.len(),
            "broker credentials: bringing the broker in step with the register: {}",
            named.join(", ")
        );
        let mut refused = 0;
        for batch in batches(&plan.commands) {
            self.metrics
                .broker_admin_commands_total
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let answers = self.admin.send(batch).await?;
            for (command, answer) in batch.iter().zip(&answers) {
                match &answer.error {
                    Some(e) if !command.already_done(e) => {
                        refused += 1;
                        match refusals {
                            Refusals::Errors => {
                                Metrics::inc(&self.metrics.broker_admin_errors_total);
                                tracing::warn!(command = %command.summary(), error = %e, "broker credentials: the plugin refused");
                            }
                            Refusals::Expected => {
                                tracing::debug!(command = %command.summary(), error = %e, "broker credentials: the plugin refused; looking again");
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        match refused {
            0 => Ok(()),
            n => Err(AdminError::Refused(n)),
        }
    }
}

/// The commands cut into control messages of at most `BATCH` commands and about
/// `BATCH_BYTES` (a command larger than that goes alone), in order.
fn batches(commands: &[Command]) -> Vec<&[Command]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, command) in commands.iter().enumerate() {
        // Its correlation data, with room for long client ids and counters.
        let size = serde_json::to_vec(command).map_or(0, |v| v.len()) + 120;
        if i > start && (i - start == BATCH || bytes + size > BATCH_BYTES) {
            out.push(&commands[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < commands.len() {
        out.push(&commands[start..]);
    }
    out
}

/// What a `getClient`/`getRole` answer holds under `key`, or `None` when the plugin says it
/// has no such thing.
fn found<T: serde::de::DeserializeOwned>(
    answer: &Answer,
    key: &str,
    absent: &str,
) -> Result<Option<T>, AdminError> {
    match &answer.error {
        Some(e) if e == absent => Ok(None),
        Some(e) => Err(AdminError::Unexpected(format!("{}: {e}", answer.command))),
        None => answer
            .data
            .as_ref()
            .and_then(|d| serde_json::from_value(d[key].clone()).ok())
            .map(Some)
            .ok_or_else(|| AdminError::Unexpected(answer.command.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_go_in_order_in_messages_the_broker_takes() {
        let id = "d".repeat(64);
        let mut commands = Vec::new();
        for _ in 0..30 {
            commands.push(Command::CreateRole {
                rolename: plan::device_role(&id),
                textname: plan::DEVICE_MARK.into(),
                acls: plan::device_acls(&id),
            });
            commands.push(Command::EnableClient {
                username: id.clone(),
            });
        }
        let cut = batches(&commands);
        assert_eq!(cut.iter().map(|b| b.len()).sum::<usize>(), commands.len());
        assert_eq!(cut.concat(), commands, "nothing reordered or lost");
        for batch in &cut {
            let body = serde_json::to_vec(&serde_json::json!({ "commands": batch })).unwrap();
            assert!(batch.len() <= BATCH);
            // Under the shipped max_packet_size, with the topic and correlation data.
            assert!(body.len() + batch.len() * 120 + 64 < 4096, "{}", body.len());
        }
        let few = [Command::EnableClient {
            username: "a".into(),
        }];
        assert_eq!(batches(&few), [&few[..]]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn answers_go_to_the_request_that_sent_them_and_another_administrators_are_ignored() {
        let waiting = Waiting::default();
        let (tx, mut rx) = oneshot::channel();
        waiting.lock().unwrap().insert(7, tx);
        let theirs =
            br#"{"responses":[{"command":"getClient","correlationData":"vakt-2-admin:7:0"}]}"#;
        hand_over(theirs, "vakt-1-admin", &waiting);
        assert!(rx.try_recv().is_err(), "another instance's answer");
        let ours = br#"{"responses":[{"command":"getClient","error":"Client not found","correlationData":"vakt-1-admin:7:0"},{"command":"getRole","data":{"role":{"rolename":"r","acls":[]}},"correlationData":"vakt-1-admin:7:1"}]}"#;
        hand_over(ours, "vakt-1-admin", &waiting);
        let answers = rx.try_recv().unwrap();
        assert_eq!(answers.len(), 2);
        let client: Option<HeldClient> = found(&answers[0], "client", "Client not found").unwrap();
        assert!(client.is_none());
        let role: Option<HeldRole> = found(&answers[1], "role", "Role not found").unwrap();
        assert_eq!(role.unwrap().rolename, "r");
        assert!(waiting.lock().unwrap().is_empty());
    }
}
