//! vakt: the backend for the alarm packages police victim support issues to threatened
//! people.
//!
//! A device message travels: broker ([`mqtt`], embedded, or an external one) → [`ingest`]
//! → [`protocol`] (decode and verify) → [`domain`] (correlate and triage, pure) → [`store`]
//! (one transaction) → acknowledgement to the broker and a signed answer to the device →
//! [`hub`] → the officers' consoles ([`web`]). [`directory`] is the in-memory index the
//! ingest reads instead of the database; [`supervise`] watches for silent devices and
//! overdue alerts; [`regions`] the list of police regions data is placed in; [`config`] the
//! settings; [`tls`] the certificates and keys of every encrypted link; [`metrics`] the
//! counters and histograms; [`health`] the client `vakt health` asks a running instance
//! with; `demo` (with the `demo` feature) the seeded first look. What people do through
//! the API or the command line goes through [`app`], the application's operations, one
//! module per aggregate.

pub mod app;
pub mod audit;
pub mod config;
pub mod credentials;
#[cfg(feature = "demo")]
pub mod demo;
pub mod directory;
pub mod domain;
pub mod geocode;
pub mod health;
pub mod hub;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod mqtt;
pub mod protocol;
pub mod readiness;
pub mod regions;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use config::Config;
use directory::Directory;
use hub::Hub;
use metrics::Metrics;
use store::{SharedStore, StoreError};
use web::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // Transparent: a store error already says it is the database's, and `{:#}` would
    // print it twice (once here, once as the cause).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[cfg(feature = "embedded")]
    #[error(transparent)]
    Broker(#[from] mqtt::embedded::BrokerError),
    #[cfg(not(feature = "embedded"))]
    #[error("this build of vakt has no embedded MQTT broker (it was built without the `embedded` feature): set mqtt_url (VAKT_MQTT_URL) to the broker the devices use")]
    NoEmbeddedBroker,
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(std::path::PathBuf, std::io::Error),
    #[error("cannot listen for HTTP on {0}: {1}")]
    Http(SocketAddr, std::io::Error),
    #[error("cannot listen for metrics on {0} (metrics_addr): {1}")]
    MetricsAddr(SocketAddr, std::io::Error),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("bad VAKT_MQTT_URL `{0}`: expected mqtt://host:port or mqtts://host:port")]
    MqttUrl(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    GeocoderUrl(#[from] geocode::GeocoderUrlError),
}

/// How to start: `demo` may move to free ports when the usual ones are taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    pub fallback_ports: bool,
}

/// A running vakt: where it listens, its state, and the switch that stops it.
pub struct Running {
    pub http_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served on their own (`metrics_addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// The broker devices connect to (the embedded one, or the configured external one).
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// The embedded broker's TLS port, when it has a TLS listener.
    pub mqtt_tls_port: Option<u16>,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting work and waits for the HTTP servers to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(server) = self.metrics_server {
            let _ = server.await;
        }
    }
}

/// Opens the store named by the configuration, creating the data directory for SQLite.
pub async fn open_store(config: &Config) -> Result<SharedStore, StartError> {
    open_store_with(config, store::SERVICE_PATIENCE).await
}

/// The store for a command-line tool, which may run beside a busy service.
pub async fn open_store_for_command(config: &Config) -> Result<SharedStore, StartError> {
    open_store_with(config, store::COMMAND_PATIENCE).await
}

/// The master key comes first: the store links audit entries under a key derived from it,
/// and seals at its first start what an older version stored in the clear.
async fn open_store_with(config: &Config, patience: Duration) -> Result<SharedStore, StartError> {
    if config.database_url.is_none() {
        private_dir(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    }
    let vault = config.key_vault()?;
    Ok(store::open_with_patience(&config.database_url(), &vault, patience).await?)
}

/// Creates the data directory readable by the owner only (an existing one is left as the
/// operator made it).
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Starts everything `vakt serve` runs and returns once it listens.
pub async fn start(config: Config, options: StartOptions) -> Result<Running, StartError> {
    tls::install_provider();
    if config.mqtt_url.is_some() {
        config.check_broker_identity()?;
    }
    // Every certificate and key is read before anything starts: a bad file is a start-up
    // error naming its setting, not a failure at the first connection.
    let https = config.https()?;
    let broker_address = config
        .mqtt_url
        .as_ref()
        .map(|url| mqtt::BrokerLink::parse_url(url).ok_or_else(|| StartError::MqttUrl(url.clone())))
        .transpose()?;
    let broker_tls = config.broker_tls(broker_address.as_ref().is_some_and(|a| a.tls))?;
    #[cfg(feature = "embedded")]
    let embedded_tls = match &config.mqtt_url {
        None => config.embedded_broker_tls()?,
        Some(_) => None,
    };
    if let Some(warning) = tls::postgres_tls_warning(&config.database_url()) {
        tracing::warn!("{warning}");
    }
    config.check_broker_admin()?;
    let store = open_store(&config).await?;
    let config = Arc::new(config);
    let vault = config.key_vault().map_err(StartError::Keys)?;
    let directory = Directory::new(Arc::new(vault));
    directory.reload(&store).await?;
    let hub = Hub::new();
    let metrics = Arc::new(Metrics::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Only several instances on one external broker share a subscription.
    let clustered = config.mqtt_url.is_some() && !config.mqtt_share_group.is_empty();
    let peers_pending = mqtt::cluster::PeersPending::default();
    let supervision = supervise::start(
        config.clone(),
        store.clone(),
        directory.clone(),
        hub.clone(),
        metrics.clone(),
        clustered.then(|| peers_pending.clone()),
        shutdown_rx.clone(),
    )
    .await?;

    let parts = ingest::IngestParts {
        store: store.clone(),
        directory: directory.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        policy: config.policy.clone(),
        supervision: supervision.clone(),
        rate: config.device_rate(),
    };
    let (ingest, mqtt_host, mqtt_port, mqtt_tls_port) = match broker_address {
        #[cfg(not(feature = "embedded"))]
        None => return Err(StartError::NoEmbeddedBroker),
        #[cfg(feature = "embedded")]
        None => {
            let listener = mqtt::embedded::bind(config.mqtt_listen, options.fallback_ports).await?;
            let addr = listener
                .local_addr()
                .map_err(|e| mqtt::embedded::BrokerError::Bind(config.mqtt_listen, e))?;
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                addr.ip().to_string()
            };
            let tls = match embedded_tls {
                Some(tls) => {
                    let wanted = config.mqtt_tls_listen;
                    let listener = mqtt::embedded::bind(wanted, options.fallback_ports).await?;
                    let port = listener
                        .local_addr()
                        .map_err(|e| mqtt::embedded::BrokerError::Bind(wanted, e))?
                        .port();
                    Some((listener, tls, port))
                }
                None => None,
            };
            let tls_port = tls.as_ref().map(|(_, _, port)| *port);
            let listeners = mqtt::embedded::Listeners {
                plain: listener,
                tls: tls.map(|(listener, config, _)| (listener, config)),
            };
            let reserved = config
                .backend_identities()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let ingest =
                ingest::start_embedded(listeners, parts, reserved, shutdown_rx.clone()).await?;
            (ingest, host, addr.port(), tls_port)
        }
        Some(mqtt::link::BrokerAddress { host, port, .. }) => {
            let link = mqtt::BrokerLink {
                host: host.clone(),
                port,
                client_id: config.broker_client_id().to_owned(),
                username: config.mqtt_username.clone(),
                secret: config.mqtt_password.as_ref().map(|s| s.0.clone()),
                share_group: Some(config.mqtt_share_group.clone()).filter(|g| !g.is_empty()),
                tls: broker_tls.clone(),
            };
            // Before the ingest connects: its own login may be among what this sets up.
            if let Some(config::BrokerAdmin::Dynsec) = config.mqtt_broker_admin {
                mqtt::dynsec::start(
                    broker_admin_settings(&config, &host, port, broker_tls),
                    store.clone(),
                    directory.clone(),
                    metrics.clone(),
                    shutdown_rx.clone(),
                );
            }
            let ingest = ingest::start(link.clone(), parts, shutdown_rx.clone()).await?;
            if clustered {
                tokio::spawn(mqtt::cluster::run(
                    store.clone(),
                    link,
                    ingest.deliveries.clone(),
                    supervision.leading(),
                    peers_pending.clone(),
                    shutdown_rx.clone(),
                ));
            }
            (ingest, host, port, None)
        }
    };

    // Consoles on this instance see what other instances commit too.
    if let Some(mut changes) = store.changes_from_elsewhere() {
        let (store, hub) = (store.clone(), hub.clone());
        tokio::spawn(async move {
            while let Some(seq) = changes.recv().await {
                match store.change_at(seq).await {
                    Ok(Some(change)) => hub.publish(change),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read an announced alert change"),
                }
            }
        });
    }

    // Other instances announce the cases and devices they change (PostgreSQL): read each
    // again as it is announced. Announcements of this instance's own changes come back
    // too and cost one more read of what changed.
    if let Some(mut notes) = store.directory_changes_from_elsewhere() {
        let (store, directory) = (store.clone(), directory.clone());
        tokio::spawn(async move {
            while let Some(what) = notes.recv().await {
                let read = match what.split_once(':') {
                    Some(("case", id)) => directory.refresh_case(&store, id).await,
                    Some(("device", id)) => directory.refresh_device(&store, id).await,
                    _ => directory.reload(&store).await,
                };
                if let Err(e) = read {
                    tracing::warn!(error = %e, what, "cannot read an announced change");
                }
            }
        });
    }

    // A safety net for what no announcement carries (the command line on SQLite, an
    // announcement lost with its connection): the whole directory, regularly.
    tokio::spawn(refresh_regularly(
        store.clone(),
        directory.clone(),
        shutdown_rx.clone(),
    ));

    let http_addr = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(l) => l,
        Err(e) if options.fallback_ports => {
            let any = SocketAddr::new(config.http_addr.ip(), 0);
            tokio::net::TcpListener::bind(any)
                .await
                .map_err(|_| StartError::Http(config.http_addr, e))?
        }
        Err(e) => return Err(StartError::Http(config.http_addr, e)),
    };
    let listener = http_addr;
    let http_addr = listener
        .local_addr()
        .map_err(|e| StartError::Http(config.http_addr, e))?;
    let geocoder = match &config.geocoder_url {
        Some(url) => Some(Arc::new(geocode::Geocoder::new(url)?)),
        None => None,
    };
    let state = AppState {
        store,
        directory,
        hub,
        metrics,
        config,
        devices: app::DeviceLink::Broker(ingest.downlink),
        supervision,
        readiness: ingest.readiness,
        throttle: Arc::default(),
        session_ends: Default::default(),
        consoles: Arc::default(),
        shutdown: Some(shutdown_rx.clone()),
        geocoder,
    };
    tokio::spawn(web::consoles::keep_the_board(
        state.clone(),
        shutdown_rx.clone(),
    ));
    tokio::spawn(announce_key_rotations_regularly(
        state.clone(),
        shutdown_rx.clone(),
    ));
    let app = web::router(state.clone());
    let header_timeout = Duration::from_secs(state.config.http_header_timeout_s);
    let (metrics_addr, metrics_server) = match state.config.metrics_addr {
        Some(wanted) => {
            let listener = tokio::net::TcpListener::bind(wanted)
                .await
                .map_err(|e| StartError::MetricsAddr(wanted, e))?;
            let bound = listener
                .local_addr()
                .map_err(|e| StartError::MetricsAddr(wanted, e))?;
            let server = tokio::spawn(web::serve::serve(
                listener,
                web::scrape::router(state.clone()),
                header_timeout,
                // Plain HTTP: the scrape port is for the operations network only.
                None,
                shutdown_rx.clone(),
            ));
            (Some(bound), Some(server))
        }
        None => {
            if state
                .config
                .metrics_token
                .as_ref()
                .is_none_or(|t| t.0.is_empty())
            {
                tracing::warn!(
                    "/metrics is served on the console's port to anyone who can reach it: set \
                     VAKT_METRICS_ADDR (a port of its own) or VAKT_METRICS_TOKEN \
                     (docs/operations.md, \"Health and metrics\")"
                );
            }
            (None, None)
        }
    };
    let server = tokio::spawn(web::serve::serve(
        listener,
        app,
        header_timeout,
        https,
        shutdown_rx.clone(),
    ));
    Ok(Running {
        http_addr,
        metrics_addr,
        metrics_server,
        mqtt_host,
        mqtt_port,
        mqtt_tls_port,
        state,
        shutdown: shutdown_tx,
        server,
    })
}

/// How this instance administers the broker's credentials (`check_broker_admin` has
/// checked that the logins are there).
fn broker_admin_settings(
    config: &Config,
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> mqtt::dynsec::AdminSettings {
    let backend = match (&config.mqtt_username, &config.mqtt_password) {
        (Some(_), Some(secret)) => Some((config.broker_client_id().to_owned(), secret.clone())),
        _ => None,
    };
    mqtt::dynsec::AdminSettings {
        host: host.to_owned(),
        port,
        tls,
        client_id: config.broker_admin_client_id(),
        username: config.mqtt_admin_username.clone().unwrap_or_default(),
        password: config.mqtt_admin_password.clone().unwrap_or_default(),
        backend,
        reserved: config
            .backend_identities()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        every: Duration::from_secs(config.mqtt_admin_reconcile_s),
    }
}

/// Key rotations started by `vakt device rotate-key` (which has no broker link) reach their
/// devices from here, within seconds.
async fn announce_key_rotations_regularly(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match app::devices::announce_key_rotations(&state.app()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(devices = n, "announced new device keys"),
                    Err(e) => tracing::warn!(error = %e, "could not announce key rotations"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn refresh_regularly(
    store: SharedStore,
    directory: Directory,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = directory.reload(&store).await {
                    tracing::warn!(error = %e, "directory refresh failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
