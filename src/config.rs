//! Configuration: defaults, then `vakt.toml` (or the file `--config`/`VAKT_CONFIG` names),
//! then `VAKT_*` environment variables, one for every key (see `layers`).

mod layers;
#[cfg(test)]
mod schema;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::policy::PolicyConfig;
use crate::tls::{self, PemFile, TlsError};

/// A TLS setting's file, if set.
fn pem<'a>(setting: &'static str, path: &'a Option<PathBuf>) -> Option<PemFile<'a>> {
    path.as_deref().map(|path| PemFile { setting, path })
}

pub use layers::var_of;

/// A value that must never reach a log line. It may come from a file: `VAKT_X_FILE`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// As a newtype named [`layers::SECRET`], so that the layers know a secret when they see
    /// one (only a secret may be read from a `VAKT_X_FILE`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Secret, D::Error> {
                String::deserialize(d).map(Secret)
            }
        }
        d.deserialize_newtype_struct(layers::SECRET, Text)
    }
}

impl Serialize for Secret {
    /// Hidden, as in `Debug`: a serialized configuration shows that a secret is set, never
    /// what it is.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// `VAKT_*` variables that are not settings: the file to read, the log's filter and format,
/// and the test and benchmark harnesses' own. Any other `VAKT_*` variable must name a
/// setting, or vakt refuses to start (a misspelt variable would otherwise be ignored).
pub const NOT_SETTINGS: &[&str] = &[
    "VAKT_CONFIG",
    "VAKT_LOG",
    "VAKT_LOG_FORMAT",
    // tests/browser
    "VAKT_BIN",
    "VAKT_LOG_DIR",
    "VAKT_SCREENSHOT",
    "VAKT_SHOT_DIR",
    // tests/fault_campaign.rs, tests/burst.rs, tests/flood.rs
    "VAKT_CAMPAIGN_DEVICES",
    "VAKT_CAMPAIGN_ROUNDS",
    "VAKT_CAMPAIGN_ALARM_EVERY_MS",
    "VAKT_BURST_DEVICES",
    "VAKT_BURST_MESSAGES",
    "VAKT_FLOOD_MESSAGES",
];

/// Variables starting with this belong to the test harness (`VAKT_TEST_POSTGRES`, …).
pub const TEST_HARNESS_PREFIX: &str = "VAKT_TEST_";

/// Whether a `VAKT_*` variable is meant as a setting.
pub fn is_setting_variable(name: &str) -> bool {
    name.starts_with(layers::PREFIX)
        && !NOT_SETTINGS.contains(&name)
        && !name.starts_with(TEST_HARNESS_PREFIX)
}

/// The ingest's client id on an external broker when neither it nor a username is set.
pub const DEFAULT_CLIENT_ID: &str = "vakt-ingest";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API and console listen.
    pub http_addr: SocketAddr,
    /// Where the embedded MQTT broker listens (when no external broker is configured).
    pub mqtt_listen: SocketAddr,
    /// An external broker, `mqtt://host:port`; when set no broker is embedded.
    pub mqtt_url: Option<String>,
    /// This instance's own user on the external broker; it is its client id too.
    pub mqtt_username: Option<String>,
    /// The backend's broker secret, shared by all instances: each backend user's password is
    /// derived from it (`mqtt::link::backend_password`).
    pub mqtt_password: Option<Secret>,
    /// The ingest's MQTT client id; fixed so its persistent session survives restarts.
    /// Several instances need distinct ids. With a username, the username (see
    /// `broker_client_id`).
    pub mqtt_client_id: String,
    /// On an external broker, subscribe through `$share/{group}/...` so several instances
    /// split the devices between them; empty: every instance gets every message.
    pub mqtt_share_group: String,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data directory.
    pub database_url: Option<Secret>,
    /// 64 hex characters that seal device keys and one-time-code secrets at rest; none: `master.key` in the data
    /// directory (made on first start). Several instances must share one.
    pub master_key: Option<Secret>,
    pub data_dir: PathBuf,
    /// Seconds added to `2 × heartbeat interval` before a device counts as silent, for every
    /// supervision class (overrides `[supervision] classes`).
    pub silence_grace_s: Option<u64>,
    /// Heartbeat interval assumed before a device has said hello.
    pub default_hb_s: u32,
    pub session_idle_s: u64,
    pub session_absolute_s: u64,
    /// Mark the session cookie `Secure` (and name it `__Host-vakt_session`): set when a
    /// TLS-terminating proxy serves the console; vakt's own HTTPS (`tls_cert`) implies it.
    pub secure_cookies: bool,
    /// Admins, coordinators and investigators must log in with a one-time code (TOTP). Only
    /// the demo turns this off.
    pub require_second_factor: bool,
    /// XYZ street-tile URL template for the console's situation map (e.g.
    /// `https://tiles.example/{z}/{x}/{y}.png`); none: the map is drawn from geometry alone.
    pub map_tile_url: Option<String>,
    /// A Nominatim or Photon reverse geocoder inside the police network
    /// (`http://nominatim.internal:8080`) for street addresses in the alert detail; none:
    /// the console names the nearest place from its offline list only.
    pub geocoder_url: Option<String>,
    /// Reverse proxies (addresses or networks like `10.0.0.0/8`) whose `X-Forwarded-For`
    /// names the client, for login throttling; none: the socket's address is the client.
    pub trusted_proxies: crate::web::peer::TrustedProxies,
    /// Seconds a client has to send a request's headers; a slow one is cut off.
    pub http_header_timeout_s: u64,
    /// Seconds a client has to send a request's body.
    pub http_body_timeout_s: u64,
    /// Where order zones may lie (`min_lat`, `max_lat`, `min_lon`, `max_lon`); Sweden.
    pub zone_bounds: crate::domain::geo::Bounds,
    /// Messages a second each device may send, after its burst: past it, the embedded broker
    /// reads the device slower and the ingest drops what an external broker brings (counted,
    /// a `rate_limited` security event). 0: no limit (benchmarks only).
    pub device_messages_per_s: u32,
    /// Messages a device may send at once before its rate applies.
    pub device_message_burst: u32,

    // TLS (src/tls.rs, docs/operations.md "TLS"): PEM files for each link. PostgreSQL takes
    // its own from the database URL (`sslmode`, `sslrootcert`).
    /// The CA certificate(s) an `mqtts://` broker's certificate must chain to; none: the
    /// system's roots.
    pub mqtt_ca: Option<PathBuf>,
    /// The backend's client certificate for an `mqtts://` broker that asks for one, with
    /// `mqtt_client_key`.
    pub mqtt_client_cert: Option<PathBuf>,
    pub mqtt_client_key: Option<PathBuf>,
    /// HTTPS for the API and console: the certificate chain (leaf first) and its key. Set,
    /// `http_addr` speaks HTTPS only, and the session cookie is `Secure` and `__Host-`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A TLS listener of the embedded broker on `mqtt_tls_listen`, beside the plain one.
    pub mqtt_tls_cert: Option<PathBuf>,
    pub mqtt_tls_key: Option<PathBuf>,
    pub mqtt_tls_listen: SocketAddr,

    pub policy: PolicyConfig,
    pub supervision: SupervisionConfig,

    // Observability.
    /// Where `/metrics`, `/healthz` and `/readyz` are served on a port of their own (e.g.
    /// `127.0.0.1:9090`); `/metrics` is then not served on `http_addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// The bearer token `/metrics` asks for, wherever it is served.
    pub metrics_token: Option<Secret>,

    // Live broker credentials (`mqtt::dynsec`).
    /// Who keeps the external broker's logins and rights in step with the device register:
    /// `dynsec`, vakt itself, through Mosquitto's dynamic-security plugin; none: the broker
    /// is configured otherwise (`vakt broker mosquitto-files`, or by hand).
    pub mqtt_broker_admin: Option<BrokerAdmin>,
    /// vakt's administrator login on the broker for `mqtt_broker_admin`, on a connection of
    /// its own (client id: this instance's client id with `-admin` appended).
    pub mqtt_admin_username: Option<String>,
    pub mqtt_admin_password: Option<Secret>,
    /// Seconds between full reconciliations of the broker with the register (a change made
    /// through this instance goes out at once; these catch everything else).
    pub mqtt_admin_reconcile_s: u64,
}

/// Who administers the external broker's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerAdmin {
    /// vakt, through Mosquitto's dynamic-security plugin (`$CONTROL/dynamic-security/v1`).
    Dynsec,
}

impl std::str::FromStr for BrokerAdmin {
    type Err = String;

    fn from_str(s: &str) -> Result<BrokerAdmin, String> {
        match s {
            "dynsec" => Ok(BrokerAdmin::Dynsec),
            other => Err(format!("`{other}` is not `dynsec` (or empty, for none)")),
        }
    }
}

/// Silence grace per supervision class, and the alert timers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Grace in seconds per class; a device names its class (default `standard`).
    pub classes: std::collections::BTreeMap<String, u64>,
    /// An unacknowledged alert of priority 1, 2, 3 is overdue after these seconds.
    pub overdue_p1_s: u64,
    pub overdue_p2_s: u64,
    pub overdue_p3_s: u64,
    /// Orders with zones that end within this many days raise a reminder.
    pub order_ending_days: u64,
    /// Personal data of a closed case is erased this many days after closing.
    pub erase_closed_after_days: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            classes: [("standard".to_owned(), 30), ("strict".to_owned(), 10)].into(),
            overdue_p1_s: 30,
            overdue_p2_s: 120,
            overdue_p3_s: 600,
            order_ending_days: 7,
            erase_closed_after_days: 90,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: ([127, 0, 0, 1], 8080).into(),
            mqtt_listen: ([127, 0, 0, 1], 1883).into(),
            mqtt_url: None,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_client_id: DEFAULT_CLIENT_ID.into(),
            mqtt_share_group: "vakt".into(),
            database_url: None,
            master_key: None,
            data_dir: PathBuf::from("vakt-data"),
            silence_grace_s: None,
            default_hb_s: 60,
            session_idle_s: 15 * 60,
            session_absolute_s: 12 * 3600,
            secure_cookies: false,
            require_second_factor: true,
            map_tile_url: None,
            geocoder_url: None,
            trusted_proxies: Default::default(),
            http_header_timeout_s: 10,
            http_body_timeout_s: 30,
            zone_bounds: Default::default(),
            device_messages_per_s: 20,
            device_message_burst: 200,
            mqtt_ca: None,
            mqtt_client_cert: None,
            mqtt_client_key: None,
            tls_cert: None,
            tls_key: None,
            mqtt_tls_cert: None,
            mqtt_tls_key: None,
            mqtt_tls_listen: ([127, 0, 0, 1], 8883).into(),
            policy: PolicyConfig::default(),
            supervision: SupervisionConfig::default(),
            metrics_addr: None,
            metrics_token: None,

            mqtt_broker_admin: None,
            mqtt_admin_username: None,
            mqtt_admin_password: None,
            mqtt_admin_reconcile_s: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Toml(PathBuf, toml::de::Error),
    #[error("{file}: `{key}`: {msg}")]
    File {
        file: PathBuf,
        key: String,
        msg: String,
    },
    #[error("environment variable {0}: {1}")]
    Env(String, String),
    #[error("{0}")]
    BrokerIdentity(String),
    #[error("{0}")]
    BrokerAdmin(String),
}

impl Config {
    /// Defaults, then the file (`file`, as `--config` or `VAKT_CONFIG` name it, which must
    /// exist; else `vakt.toml` if there is one), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let default = Path::new("vakt.toml");
        let file = file.or_else(|| default.exists().then_some(default));
        let text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?,
            ),
            None => None,
        };
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| is_setting_variable(n)) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| ConfigError::Env(name.to_owned(), "its value is not UTF-8".into()))?;
            env.push((name.to_owned(), value));
        }
        Config::from_layers(file.zip(text.as_deref()), env)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        Config::from_layers(Some((path, &text)), Vec::new())
    }

    /// The configuration from a file's text (with its path, for errors) and `VAKT_*`
    /// variables (taken as given: the caller leaves out those that are not settings).
    pub fn from_layers(
        file: Option<(&Path, &str)>,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let defaults =
            toml::Value::try_from(Config::default()).expect("the defaults serialize to TOML");
        let mut tree = layers::Node::defaults(defaults);
        if let Some((path, text)) = file {
            let table: toml::Table = text
                .parse()
                .map_err(|e| ConfigError::Toml(path.to_owned(), e))?;
            tree.overlay(layers::Node::file(table));
        }
        let given = |name: &str| env.iter().any(|(n, v)| n == name && !v.is_empty());
        for (name, _) in &env {
            if let Some(plain) = name.strip_suffix(layers::FILE_SUFFIX) {
                if given(plain) {
                    return Err(ConfigError::Env(
                        name.clone(),
                        format!("{plain} is set too: give the secret one way only"),
                    ));
                }
            }
        }
        let mut env = env;
        env.sort();
        for (name, value) in env {
            tree.set_env(&name, value)
                .map_err(|e| layer_error(e, None))?;
        }
        Config::deserialize(tree).map_err(|e| layer_error(e, file.map(|(p, _)| p)))
    }

    /// The HTTPS server's configuration when `tls_cert` and `tls_key` are set.
    pub fn https(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let pair = tls::pair(
            pem("tls_cert (VAKT_TLS_CERT)", &self.tls_cert),
            pem("tls_key (VAKT_TLS_KEY)", &self.tls_key),
            ("tls_cert (VAKT_TLS_CERT)", "tls_key (VAKT_TLS_KEY)"),
        )?;
        pair.map(|(cert, key)| tls::server_config(cert, key, &[tls::ALPN_HTTP1]))
            .transpose()
    }

    /// The embedded broker's TLS listener configuration when `mqtt_tls_cert` and
    /// `mqtt_tls_key` are set.
    pub fn embedded_broker_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let pair = tls::pair(
            pem("mqtt_tls_cert (VAKT_MQTT_TLS_CERT)", &self.mqtt_tls_cert),
            pem("mqtt_tls_key (VAKT_MQTT_TLS_KEY)", &self.mqtt_tls_key),
            (
                "mqtt_tls_cert (VAKT_MQTT_TLS_CERT)",
                "mqtt_tls_key (VAKT_MQTT_TLS_KEY)",
            ),
        )?;
        pair.map(|(cert, key)| tls::server_config(cert, key, &[]))
            .transpose()
    }

    /// The client configuration for an external broker: `Some` for `mqtts://`. The CA and
    /// client certificate settings make sense only there, so with a plain `mqtt://` URL
    /// they are an error rather than a silently unencrypted link.
    pub fn broker_tls(&self, mqtts: bool) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        let ca = pem("mqtt_ca (VAKT_MQTT_CA)", &self.mqtt_ca);
        let client = tls::pair(
            pem(
                "mqtt_client_cert (VAKT_MQTT_CLIENT_CERT)",
                &self.mqtt_client_cert,
            ),
            pem(
                "mqtt_client_key (VAKT_MQTT_CLIENT_KEY)",
                &self.mqtt_client_key,
            ),
            (
                "mqtt_client_cert (VAKT_MQTT_CLIENT_CERT)",
                "mqtt_client_key (VAKT_MQTT_CLIENT_KEY)",
            ),
        )?;
        if !mqtts {
            return match (ca, client) {
                (None, None) => Ok(None),
                (Some(f), _) | (None, Some((f, _))) => Err(TlsError::Mismatch(format!(
                    "{} is set but mqtt_url (VAKT_MQTT_URL) is a plain mqtt:// URL: use \
                     mqtts://host:8883 for an encrypted link, or leave {} unset",
                    f.setting, f.setting
                ))),
            };
        }
        tls::client_config(ca, client).map(Some)
    }

    /// Whether vakt serves HTTPS itself (`tls_cert`).
    pub fn https_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Whether the session cookie is `Secure` (and so `__Host-` prefixed): asked for, or the
    /// console is served over HTTPS by vakt itself.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies || self.https_enabled()
    }

    /// Grace of a supervision class: `silence_grace_s` (VAKT_SILENCE_GRACE_S) wins over every
    /// class; an unknown class gets the `standard` one (or 30 s).
    pub fn grace_for(&self, class: &str) -> u64 {
        self.silence_grace_s.unwrap_or_else(|| {
            let classes = &self.supervision.classes;
            classes
                .get(class)
                .or_else(|| classes.get("standard"))
                .copied()
                .unwrap_or(30)
        })
    }

    /// What each device may send to the ingest.
    pub fn device_rate(&self) -> crate::mqtt::queue::RateLimit {
        crate::mqtt::queue::RateLimit {
            per_s: self.device_messages_per_s,
            burst: self.device_message_burst,
        }
    }

    /// The vault that seals device keys, from `master_key` or the data directory's file.
    pub fn key_vault(&self) -> Result<crate::keys::KeyVault, crate::keys::KeyError> {
        crate::keys::KeyVault::load(
            self.master_key.as_ref().map(|s| s.0.as_str()),
            &self.data_dir,
        )
    }

    /// The backend's client id on an external broker. With a username it is the username
    /// (unless `mqtt_client_id` is set to something else, which `check_broker_identity`
    /// refuses): Mosquitto's `use_username_as_clientid`, which keeps devices off the
    /// backend's client id, makes it so anyway, and the supervision leader must know under
    /// which id a dead instance's session is kept.
    pub fn broker_client_id(&self) -> &str {
        match &self.mqtt_username {
            Some(user) if self.mqtt_client_id == DEFAULT_CLIENT_ID => user,
            _ => &self.mqtt_client_id,
        }
    }

    /// The names this instance goes by on a broker: no device may be given one of them.
    pub fn backend_identities(&self) -> Vec<&str> {
        let mut names = vec![self.mqtt_client_id.as_str(), self.broker_client_id()];
        names.extend(self.mqtt_username.as_deref());
        names
    }

    /// On an external broker, the backend's client id and username must carry the prefix no
    /// device id may have (`protocol::BACKEND_PREFIX`), so that no device can ever log in
    /// under them, whichever instance created it; with a username, the client id is that
    /// username.
    pub fn check_broker_identity(&self) -> Result<(), ConfigError> {
        use crate::protocol::{is_backend_identity, BACKEND_PREFIX};
        let client = self.broker_client_id();
        if !is_backend_identity(client) {
            return Err(ConfigError::BrokerIdentity(format!(
                "mqtt_client_id `{client}` must start with `{BACKEND_PREFIX}`: that prefix is \
                 reserved for the backend, so no device can be given the id and take over the \
                 backend's connection"
            )));
        }
        if let Some(user) = &self.mqtt_username {
            if !is_backend_identity(user) {
                return Err(ConfigError::BrokerIdentity(format!(
                    "mqtt_username `{user}` must start with `{BACKEND_PREFIX}`: that prefix is \
                     reserved for the backend, so no device can be given the name"
                )));
            }
            if client != user {
                return Err(ConfigError::BrokerIdentity(format!(
                    "mqtt_client_id `{client}` differs from mqtt_username `{user}`: the broker \
                     makes the username the client id (use_username_as_clientid), so give each \
                     instance a username of its own and leave mqtt_client_id unset"
                )));
            }
        }
        Ok(())
    }

    /// With `mqtt_broker_admin`, what vakt needs to manage the broker: an external broker,
    /// its own administrator login, and a sensible reconciliation period.
    pub fn check_broker_admin(&self) -> Result<(), ConfigError> {
        let Some(BrokerAdmin::Dynsec) = self.mqtt_broker_admin else {
            return Ok(());
        };
        let missing = |what: &str| {
            Err(ConfigError::BrokerAdmin(format!(
                "mqtt_broker_admin = \"dynsec\" needs {what}"
            )))
        };
        if self.mqtt_url.is_none() {
            return missing(
                "mqtt_url (VAKT_MQTT_URL): the embedded broker checks the register itself and has no dynamic-security plugin",
            );
        }
        if self.mqtt_admin_username.as_deref().unwrap_or("").is_empty() {
            return missing("mqtt_admin_username (VAKT_MQTT_ADMIN_USERNAME), vakt's administrator login on the broker");
        }
        if self
            .mqtt_admin_password
            .as_ref()
            .is_none_or(|p| p.0.is_empty())
        {
            return missing("mqtt_admin_password (VAKT_MQTT_ADMIN_PASSWORD)");
        }
        // vakt makes this instance's own login there too, and the broker lets nobody in
        // without one.
        if self.mqtt_username.is_none() {
            return missing(
                "mqtt_username (VAKT_MQTT_USERNAME), this instance's own login on the broker",
            );
        }
        if self.mqtt_password.as_ref().is_none_or(|p| p.0.is_empty()) {
            return missing(
                "mqtt_password (VAKT_MQTT_PASSWORD), the secret the backend users' passwords come from",
            );
        }
        if !(1..=3600).contains(&self.mqtt_admin_reconcile_s) {
            return Err(ConfigError::BrokerAdmin(
                "mqtt_admin_reconcile_s (VAKT_MQTT_ADMIN_RECONCILE_S) must be 1 to 3600 seconds"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The client id of this instance's administrator connection to the broker: its own
    /// client id (which carries the backend prefix) with `-admin`, so no device can take it
    /// and two instances never share one.
    pub fn broker_admin_client_id(&self) -> String {
        format!("{}-admin", self.broker_client_id())
    }

    /// The database to open: the configured URL, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.0.clone(),
            None => format!("sqlite://{}", self.data_dir.join("vakt.db").display()),
        }
    }
}

/// A layer's error as the operator should read it: naming the variable, or the file's key.
fn layer_error(e: layers::LayerError, file: Option<&Path>) -> ConfigError {
    let key = e.key();
    match e.var {
        Some(var) if key.is_empty() => ConfigError::Env(var, e.msg),
        Some(var) => ConfigError::Env(var, format!("`{key}`: {}", e.msg)),
        None => ConfigError::File {
            file: file.map_or_else(|| PathBuf::from("built-in defaults"), Path::to_owned),
            key,
            msg: e.msg,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nothing_configured_vakt_listens_locally_and_keeps_sqlite_in_the_data_dir() {
        let c = Config::default();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.mqtt_listen.to_string(), "127.0.0.1:1883");
        assert_eq!(c.database_url(), "sqlite://vakt-data/vakt.db");
    }

    /// The configuration from a file's text (empty: no file) and variables.
    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = (!file.is_empty()).then_some((Path::new("vakt.toml"), file));
        Config::from_layers(file, env)
    }

    #[test]
    fn every_variable_sets_its_key_however_deep_it_lies() {
        type Read = fn(&Config) -> String;
        let cases: &[(&str, &str, Read, &str)] = &[
            (
                "VAKT_HTTP_ADDR",
                "127.0.0.1:9100",
                |c| c.http_addr.to_string(),
                "127.0.0.1:9100",
            ),
            (
                "VAKT_MQTT_URL",
                "mqtt://b:1883",
                |c| format!("{:?}", c.mqtt_url),
                "Some(\"mqtt://b:1883\")",
            ),
            ("VAKT_MQTT_URL", "", |c| format!("{:?}", c.mqtt_url), "None"),
            (
                "VAKT_MQTT_USERNAME",
                "vakt-1",
                |c| format!("{:?}", c.mqtt_username),
                "Some(\"vakt-1\")",
            ),
            (
                "VAKT_MQTT_SHARE_GROUP",
                "",
                |c| format!("{:?}", c.mqtt_share_group),
                "\"\"",
            ),
            (
                "VAKT_DATABASE_URL",
                "",
                |c| format!("{:?}", c.database_url),
                "None",
            ),
            (
                "VAKT_DATABASE_URL",
                "postgres://db/v",
                |c| c.database_url(),
                "postgres://db/v",
            ),
            (
                "VAKT_MASTER_KEY",
                "",
                |c| format!("{:?}", c.master_key),
                "None",
            ),
            (
                "VAKT_DATA_DIR",
                "/var/lib/vakt",
                |c| c.data_dir.display().to_string(),
                "/var/lib/vakt",
            ),
            (
                "VAKT_SILENCE_GRACE_S",
                "5",
                |c| c.grace_for("strict").to_string(),
                "5",
            ),
            (
                "VAKT_SECURE_COOKIES",
                "true",
                |c| c.secure_cookies.to_string(),
                "true",
            ),
            (
                "VAKT_REQUIRE_SECOND_FACTOR",
                "false",
                |c| c.require_second_factor.to_string(),
                "false",
            ),
            (
                "VAKT_SESSION_IDLE_S",
                "60",
                |c| c.session_idle_s.to_string(),
                "60",
            ),
            (
                "VAKT_TRUSTED_PROXIES",
                "192.0.2.1, 10.0.0.0/8",
                |c| format!("{:?}", Vec::<String>::from(c.trusted_proxies.clone())),
                "[\"192.0.2.1/32\", \"10.0.0.0/8\"]",
            ),
            (
                "VAKT_TRUSTED_PROXIES",
                "[\"10.0.0.1\"]",
                |c| format!("{:?}", Vec::<String>::from(c.trusted_proxies.clone())),
                "[\"10.0.0.1/32\"]",
            ),
            (
                "VAKT_TRUSTED_PROXIES",
                "",
                |c| format!("{:?}", Vec::<String>::from(c.trusted_proxies.clone())),
                "[]",
            ),
            (
                "VAKT_DEVICE_MESSAGES_PER_S",
                "0",
                |c| c.device_rate().per_s.to_string(),
                "0",
            ),
            (
                "VAKT_ZONE_BOUNDS__MIN_LAT",
                "50.5",
                |c| c.zone_bounds.min_lat.to_string(),
                "50.5",
            ),
            (
                "VAKT_POLICY__PROXIMITY_M",
                "750",
                |c| c.policy.proximity_m.to_string(),
                "750",
            ),
            (
                "VAKT_POLICY__LOW_BATTERY_PCT",
                "20",
                |c| c.policy.low_battery_pct.to_string(),
                "20",
            ),
            (
                "VAKT_SUPERVISION__OVERDUE_P1_S",
                "45",
                |c| c.supervision.overdue_p1_s.to_string(),
                "45",
            ),
            // A map entry: the other entries keep their defaults.
            (
                "VAKT_SUPERVISION__CLASSES__STRICT",
                "5",
                |c| format!("{:?}", c.supervision.classes),
                "{\"standard\": 30, \"strict\": 5}",
            ),
            (
                "VAKT_SUPERVISION__CLASSES__GOLD",
                "3",
                |c| format!("{:?}", c.supervision.classes),
                "{\"gold\": 3, \"standard\": 30, \"strict\": 10}",
            ),
            // A whole map at once, as TOML: it replaces the default.
            (
                "VAKT_SUPERVISION__CLASSES",
                "{ standard = 60 }",
                |c| format!("{:?}", c.supervision.classes),
                "{\"standard\": 60}",
            ),
            (
                "VAKT_METRICS_ADDR",
                "127.0.0.1:9090",
                |c| format!("{:?}", c.metrics_addr),
                "Some(127.0.0.1:9090)",
            ),
            (
                "VAKT_METRICS_TOKEN",
                "t0ken",
                |c| format!("{:?}", c.metrics_token.as_ref().map(|s| &s.0)),
                "Some(\"t0ken\")",
            ),
        ];
        for (var, value, read, want) in cases {
            let c = load("", &[(var, value)]).unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            assert_eq!(read(&c), *want, "{var}={value}");
        }
    }

    #[test]
    fn a_bad_setting_is_an_error_naming_the_variable_or_the_key() {
        /// A file's text, variables, and what the error must say.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "",
                &[("VAKT_HTTP_ADDR", "nowhere")],
                &["environment variable VAKT_HTTP_ADDR"],
            ),
            (
                "",
                &[("VAKT_NOPE", "1")],
                &["VAKT_NOPE", "unknown field `nope`"],
            ),
            (
                "",
                &[("VAKT_POLICY__PROXIMITY", "100")],
                &[
                    "VAKT_POLICY__PROXIMITY:",
                    "`policy.proximity`",
                    "unknown field `proximity`",
                ],
            ),
            (
                "",
                &[("VAKT_POLICY__PROXIMITY_M", "near")],
                &["VAKT_POLICY__PROXIMITY_M", "`near` is not a number"],
            ),
            (
                "",
                &[("VAKT_POLICY__LOW_BATTERY_PCT", "300")],
                &["VAKT_POLICY__LOW_BATTERY_PCT", "0 to 255"],
            ),
            (
                "",
                &[("VAKT_SECURE_COOKIES", "yes")],
                &["VAKT_SECURE_COOKIES", "`true` or `false`"],
            ),
            (
                "",
                &[("VAKT_TRUSTED_PROXIES", "proxy")],
                &["VAKT_TRUSTED_PROXIES", "`proxy` is not an IP address"],
            ),
            ("", &[("VAKT_POLICY", "5")], &["VAKT_POLICY", "is a table"]),
            (
                "",
                &[("VAKT_HTTP_ADDR__PORT", "5")],
                &["VAKT_HTTP_ADDR__PORT"],
            ),
            (
                "",
                &[("VAKT_POLICY____X", "5")],
                &["VAKT_POLICY____X", "not the name of a setting"],
            ),
            (
                "",
                &[("VAKT_HTTP_ADDR_FILE", "/etc/hostname")],
                &["VAKT_HTTP_ADDR_FILE", "not one"],
            ),
            (
                "",
                &[("VAKT_MASTER_KEY_FILE", "/nonexistent/key")],
                &["VAKT_MASTER_KEY_FILE", "cannot read /nonexistent/key"],
            ),
            (
                "",
                &[("VAKT_MASTER_KEY", "ab"), ("VAKT_MASTER_KEY_FILE", "/k")],
                &["VAKT_MASTER_KEY_FILE", "one way only"],
            ),
            (
                "silence_grace = 5",
                &[],
                &["vakt.toml", "`silence_grace`", "unknown field"],
            ),
            (
                "[policy]\nproximity = 100",
                &[],
                &["vakt.toml", "`policy.proximity`"],
            ),
            ("http_addr = 5", &[], &["vakt.toml", "`http_addr`"]),
            ("http_addr = ", &[], &["vakt.toml"]),
        ];
        for (file, env, want) in cases {
            let err = load(file, env).map(|_| ()).unwrap_err().to_string();
            for w in *want {
                assert!(err.contains(w), "{file:?} {env:?}: {err:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_the_defaults() {
        let file = "http_addr = \"0.0.0.0:9000\"\nsilence_grace_s = 5\n\
                    [policy]\nproximity_m = 250.0\n\
                    [supervision]\nclasses = { gold = 5 }\n";
        let c = load(file, &[("VAKT_HTTP_ADDR", "127.0.0.1:9100")]).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(c.grace_for("standard"), 5);
        assert_eq!(c.policy.proximity_m, 250.0);
        assert_eq!(
            c.policy.low_battery_pct,
            PolicyConfig::default().low_battery_pct
        );
        assert_eq!(c.supervision.classes.len(), 3);
        let c = load(file, &[("VAKT_SILENCE_GRACE_S", "")]).unwrap();
        assert_eq!(c.silence_grace_s, None);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_not_a_silent_default() {
        assert!(toml::from_str::<Config>("silence_grace = 5").is_err());
        assert!(toml::from_str::<Config>("[policy]\nproximity = 100").is_err());
        let c: Config = toml::from_str("[policy]\nproximity_m = 250.0").unwrap();
        assert_eq!(c.policy.proximity_m, 250.0);
    }

    #[test]
    fn a_secret_comes_from_its_file_without_the_line_break_after_it() {
        let dir = tempfile::tempdir().unwrap();
        for (written, read) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
            (" s3cret \n", " s3cret "),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, written).unwrap();
            let path = path.to_str().unwrap();
            let c = load(
                "",
                &[
                    ("VAKT_MASTER_KEY_FILE", path),
                    ("VAKT_DATABASE_URL_FILE", path),
                    ("VAKT_MQTT_PASSWORD_FILE", path),
                    ("VAKT_METRICS_TOKEN_FILE", path),
                    // Empty counts as not given: no conflict with the file.
                    ("VAKT_MASTER_KEY", ""),
                ],
            )
            .unwrap();
            for secret in [
                &c.master_key,
                &c.database_url,
                &c.mqtt_password,
                &c.metrics_token,
            ] {
                assert_eq!(
                    secret.as_ref().map(|s| s.0.as_str()),
                    Some(read),
                    "{written:?}"
                );
            }
        }
    }

    #[test]
    fn variables_of_the_log_the_file_and_the_harnesses_are_not_settings() {
        for v in [
            "VAKT_LOG",
            "VAKT_LOG_FORMAT",
            "VAKT_CONFIG",
            "VAKT_TEST_POSTGRES",
        ] {
            assert!(!is_setting_variable(v), "{v}");
        }
        for v in [
            "VAKT_HTTP_ADDR",
            "VAKT_POLICY__PROXIMITY_M",
            "VAKT_LOGS",
            "VAKT_MASTER_KEY_FILE",
        ] {
            assert!(is_setting_variable(v), "{v}");
        }
    }

    /// Whether `var` names a setting of `Config` (or a secret's `_FILE`, or a map's entry).
    fn names_a_setting(settings: &[(Vec<&str>, schema::Shape)], var: &str) -> bool {
        settings.iter().any(|(path, shape)| {
            let plain = var_of(path);
            match shape {
                schema::Shape::Secret => var == plain || var == format!("{plain}_FILE"),
                schema::Shape::Map => var == plain || var.starts_with(&format!("{plain}__")),
                _ => var == plain,
            }
        })
    }

    #[test]
    fn every_vakt_variable_the_repository_uses_is_a_setting_or_listed_as_none() {
        let settings = schema::settings::<Config>();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = [
            "tests", "benches", "scripts", ".ci", "deploy", "docs", "src",
        ]
        .iter()
        .map(|d| root.join(d))
        .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() && !path.ends_with("node_modules") {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.extend(["docker-compose.yml", "Dockerfile", "README.md"].map(|f| root.join(f)));
        // Placeholders the documentation writes names with, and its example of a misspelling.
        let placeholders = [
            "VAKT_X",
            "VAKT_X_FILE",
            "VAKT_KEY",
            "VAKT_TABLE__KEY",
            "VAKT_POLICY__PROXIMTY_M",
        ];
        let mut strays = Vec::new();
        // This file's tests name wrong variables on purpose.
        files.retain(|f| !f.ends_with("src/config.rs"));
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let mut rest = text.as_str();
            while let Some(at) = rest.find("VAKT_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                // `VAKT_TEST_*`: a family of names, not one.
                let family = rest.starts_with('*');
                let name = name.trim_end_matches('_');
                if family
                    || name.len() <= "VAKT".len()
                    || !is_setting_variable(name)
                    || placeholders.contains(&name)
                    || names_a_setting(&settings, name)
                {
                    continue;
                }
                strays.push(format!("{name} in {}", file.display()));
            }
        }
        assert!(
            strays.is_empty(),
            "neither settings nor listed in NOT_SETTINGS: {strays:#?}"
        );
    }

    /// A default as the settings table writes it at the start of its cell.
    fn rendered(v: &serde_json::Value) -> String {
        use serde_json::Value;
        match v {
            Value::Null => "none".into(),
            Value::String(s) => format!("`{s}`"),
            Value::Array(a) if a.is_empty() => "none".into(),
            Value::Object(m) => {
                let entries: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("`{{ {} }}`", entries.join(", "))
            }
            v => format!("`{v}`"),
        }
    }

    #[test]
    fn the_settings_table_of_the_documentation_lists_every_setting_its_variable_and_default() {
        let doc = include_str!("../docs/operations.md");
        let start = doc
            .find("| key | variable | default | meaning |")
            .expect("docs/operations.md has the settings table");
        let rows: Vec<Vec<&str>> = doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut documented: Vec<&str> = rows.iter().map(|r| r[0]).collect();
        for (path, shape) in schema::settings::<Config>() {
            let key = path.join(".");
            let var = var_of(&path);
            let (key_cell, var_cell) = match shape {
                schema::Shape::Map => (format!("`{key}.<name>`"), format!("`{var}__<NAME>`")),
                schema::Shape::Secret => (format!("`{key}`"), format!("`{var}` or `{var}_FILE`")),
                _ => (format!("`{key}`"), format!("`{var}`")),
            };
            let Some(row) = rows.iter().find(|r| r[0] == key_cell) else {
                panic!("docs/operations.md: the settings table has no row {key_cell}");
            };
            documented.retain(|k| *k != key_cell);
            assert_eq!(row.len(), 4, "{key_cell}: four cells");
            assert_eq!(row[1], var_cell, "{key_cell}: its variable");
            let default = path.iter().fold(&defaults, |v, k| &v[k]);
            assert!(
                row[2].starts_with(&rendered(default)),
                "{key_cell}: the default cell {:?} should start with {}",
                row[2],
                rendered(default)
            );
            assert!(!row[3].is_empty(), "{key_cell}: what it means");
            assert!(
                !key.ends_with("_file"),
                "{key}: a key ending in `_file` would read as a secret's file variable"
            );
        }
        assert!(
            documented.is_empty(),
            "rows for settings that do not exist: {documented:?}"
        );
    }

    #[test]
    fn a_serialized_configuration_hides_its_secrets() {
        let c = Config {
            metrics_token: Some(Secret("hunter2".into())),
            ..Config::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(json.contains("\"metrics_token\":\"***\""));
    }

    #[test]
    fn with_a_username_the_backend_is_known_on_the_broker_by_that_name_alone() {
        let mut c = Config {
            mqtt_username: Some("vakt-1".into()),
            ..Config::default()
        };
        assert_eq!(c.broker_client_id(), "vakt-1");
        assert!(c.check_broker_identity().is_ok());
        c.mqtt_client_id = "vakt-2".into();
        let err = c.check_broker_identity().unwrap_err().to_string();
        assert!(err.contains("differs from mqtt_username"), "{err}");
        c.mqtt_client_id = "vakt-1".into();
        assert!(c.check_broker_identity().is_ok());
    }

    #[test]
    fn a_backend_identity_a_device_id_could_have_is_refused() {
        let c = Config {
            mqtt_client_id: "ingest-7".into(),
            ..Config::default()
        };
        assert!(c
            .check_broker_identity()
            .unwrap_err()
            .to_string()
            .contains("mqtt_client_id `ingest-7` must start with `vakt-`"));
        let c = Config {
            mqtt_username: Some("backend".into()),
            mqtt_client_id: "vakt-1".into(),
            ..Config::default()
        };
        assert!(c
            .check_broker_identity()
            .unwrap_err()
            .to_string()
            .contains("mqtt_username `backend`"));
        assert!(Config::default().check_broker_identity().is_ok());
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_the_environment_and_a_bad_one_is_refused() {
        let c: Config = toml::from_str("trusted_proxies = [\"10.0.0.0/8\"]").unwrap();
        assert!(c.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        assert!(toml::from_str::<Config>("trusted_proxies = [\"proxy\"]").is_err());
        assert!(!Config::default()
            .trusted_proxies
            .trusts("10.2.3.4".parse().unwrap()));
        let c = load("", &[("VAKT_TRUSTED_PROXIES", "192.0.2.1,10.0.0.0/8")]).unwrap();
        assert!(c.trusted_proxies.trusts("192.0.2.1".parse().unwrap()));
        let err = load("", &[("VAKT_TRUSTED_PROXIES", "x")]).unwrap_err();
        assert!(err.to_string().contains("VAKT_TRUSTED_PROXIES"));
    }

    #[test]
    fn tls_files_come_from_the_file_or_the_environment_and_an_empty_variable_unsets_one() {
        let file = "tls_cert = \"/etc/vakt/tls.crt\"\nmqtt_ca = \"/etc/vakt/ca.pem\"";
        let c = load(file, &[]).unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("/etc/vakt/tls.crt")));
        assert_eq!(c.mqtt_tls_listen.to_string(), "127.0.0.1:8883");
        let c = load(
            file,
            &[
                ("VAKT_TLS_KEY", "/run/secrets/tls.key"),
                ("VAKT_MQTT_CA", ""),
                ("VAKT_MQTT_TLS_LISTEN", "0.0.0.0:8883"),
            ],
        )
        .unwrap();
        assert_eq!(c.tls_key, Some(PathBuf::from("/run/secrets/tls.key")));
        assert_eq!(c.mqtt_ca, None);
        assert_eq!(c.mqtt_tls_listen.to_string(), "0.0.0.0:8883");
        let err = load(file, &[("VAKT_MQTT_TLS_LISTEN", "8883")]).unwrap_err();
        assert!(err.to_string().contains("VAKT_MQTT_TLS_LISTEN"), "{err}");
    }

    #[test]
    fn a_missing_or_unusable_tls_file_is_an_error_naming_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();

        let c = Config {
            mqtt_ca: Some(missing.clone()),
            ..Config::default()
        };
        let err = c.broker_tls(true).unwrap_err().to_string();
        assert!(err.contains("mqtt_ca (VAKT_MQTT_CA)"), "{err}");
        assert!(err.contains("missing.pem"), "{err}");

        let c = Config {
            tls_cert: Some(not_pem.clone()),
            tls_key: Some(not_pem.clone()),
            ..Config::default()
        };
        let err = c.https().unwrap_err().to_string();
        assert!(err.contains("tls_cert (VAKT_TLS_CERT)"), "{err}");
        assert!(err.contains("no certificate"), "{err}");

        let c = Config {
            mqtt_tls_cert: Some(not_pem.clone()),
            ..Config::default()
        };
        let err = c.embedded_broker_tls().unwrap_err().to_string();
        assert!(
            err.contains("mqtt_tls_cert (VAKT_MQTT_TLS_CERT) is set without mqtt_tls_key"),
            "{err}"
        );

        let c = Config {
            mqtt_client_key: Some(missing),
            ..Config::default()
        };
        let err = c.broker_tls(true).unwrap_err().to_string();
        assert!(
            err.contains("mqtt_client_key (VAKT_MQTT_CLIENT_KEY) is set without"),
            "{err}"
        );
    }

    #[test]
    fn a_broker_ca_with_a_plain_broker_url_is_refused_rather_than_left_unused() {
        let c = Config {
            mqtt_ca: Some("/etc/vakt/ca.pem".into()),
            ..Config::default()
        };
        let err = c.broker_tls(false).unwrap_err().to_string();
        assert!(err.contains("mqtt_ca (VAKT_MQTT_CA) is set"), "{err}");
        assert!(err.contains("mqtts://"), "{err}");
        assert!(Config::default().broker_tls(false).unwrap().is_none());
    }

    #[test]
    fn vakts_own_https_makes_the_session_cookie_secure() {
        assert!(!Config::default().cookies_secure());
        let c = Config {
            tls_cert: Some("/etc/vakt/tls.crt".into()),
            ..Config::default()
        };
        assert!(c.cookies_secure());
        let c = Config {
            secure_cookies: true,
            ..Config::default()
        };
        assert!(c.cookies_secure());
    }

    #[test]
    fn broker_admin_comes_from_the_file_or_the_environment_and_needs_its_login() {
        let c: Config = toml::from_str(
            "mqtt_url = \"mqtt://broker:1883\"\nmqtt_username = \"vakt-1\"\nmqtt_password = \"s\"\nmqtt_broker_admin = \"dynsec\"\nmqtt_admin_username = \"vakt-admin\"\nmqtt_admin_password = \"pw\"",
        )
        .unwrap();
        assert_eq!(c.mqtt_broker_admin, Some(BrokerAdmin::Dynsec));
        assert!(c.check_broker_admin().is_ok());
        assert!(toml::from_str::<Config>("mqtt_broker_admin = \"files\"").is_err());

        let env = [
            ("VAKT_MQTT_BROKER_ADMIN", "dynsec"),
            ("VAKT_MQTT_ADMIN_USERNAME", "vakt-admin"),
            ("VAKT_MQTT_ADMIN_PASSWORD", "pw"),
            ("VAKT_MQTT_ADMIN_RECONCILE_S", "5"),
        ];
        let mut c = load("", &env).unwrap();
        assert!(
            !format!("{c:?}").contains("\"pw\""),
            "the password is hidden"
        );
        assert_eq!(c.mqtt_broker_admin, Some(BrokerAdmin::Dynsec));
        assert_eq!(c.mqtt_admin_reconcile_s, 5);
        let err = c.check_broker_admin().unwrap_err().to_string();
        assert!(err.contains("mqtt_url"), "{err}");
        c.mqtt_url = Some("mqtt://broker".into());
        let err = c.check_broker_admin().unwrap_err().to_string();
        assert!(err.contains("mqtt_username"), "{err}");
        c.mqtt_username = Some("vakt-1".into());
        c.mqtt_password = Some(Secret("s".into()));
        assert!(c.check_broker_admin().is_ok());
        c.mqtt_admin_password = None;
        let err = c.check_broker_admin().unwrap_err().to_string();
        assert!(err.contains("mqtt_admin_password"), "{err}");

        let err = load("", &[("VAKT_MQTT_BROKER_ADMIN", "files")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("VAKT_MQTT_BROKER_ADMIN"), "{err}");
        let c = load(
            "mqtt_broker_admin = \"dynsec\"",
            &[("VAKT_MQTT_BROKER_ADMIN", "")],
        )
        .unwrap();
        assert_eq!(c.mqtt_broker_admin, None);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = Config {
            database_url: Some(Secret("postgres://u:hunter2@db/vakt".into())),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
