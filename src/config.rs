//! Configuration: defaults, then `vakt.toml`, then `VAKT_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::domain::policy::PolicyConfig;
use crate::tls::{self, PemFile, TlsError};

/// A TLS setting's file, if set.
fn pem<'a>(setting: &'static str, path: &'a Option<PathBuf>) -> Option<PemFile<'a>> {
    path.as_deref().map(|path| PemFile { setting, path })
}

/// A value that must never reach a log line.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// The ingest's client id on an external broker when neither it nor a username is set.
pub const DEFAULT_CLIENT_ID: &str = "vakt-ingest";

#[derive(Debug, Clone, Deserialize)]
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
    /// Admins and coordinators must log in with a one-time code (TOTP). Only the demo turns
    /// this off.
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
}

/// Silence grace per supervision class, and the alert timers.
#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Toml(PathBuf, toml::de::Error),
    #[error("environment variable {0}: {1}")]
    Env(&'static str, String),
    #[error("{0}")]
    BrokerIdentity(String),
}

impl Config {
    /// Defaults, then `vakt.toml` (or the file named by `VAKT_CONFIG`), then the environment.
    pub fn load() -> Result<Config, ConfigError> {
        // A file named on purpose must be there; the default one is optional.
        let mut config = match std::env::var_os("VAKT_CONFIG") {
            Some(file) => Config::from_file(Path::new(&file))?,
            None if Path::new("vakt.toml").exists() => Config::from_file(Path::new("vakt.toml"))?,
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml(path.to_owned(), e))
    }

    /// Applies `VAKT_*` variables; `get` is the environment (a closure so tests need no
    /// process-wide state).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: String) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            v.parse()
                .map_err(|e: T::Err| ConfigError::Env(name, e.to_string()))
        }
        if let Some(v) = get("VAKT_HTTP_ADDR") {
            self.http_addr = parse("VAKT_HTTP_ADDR", v)?;
        }
        if let Some(v) = get("VAKT_MQTT_LISTEN") {
            self.mqtt_listen = parse("VAKT_MQTT_LISTEN", v)?;
        }
        if let Some(v) = get("VAKT_MQTT_URL").filter(|v| !v.is_empty()) {
            self.mqtt_url = Some(v);
        }
        if let Some(v) = get("VAKT_MQTT_USERNAME") {
            self.mqtt_username = Some(v);
        }
        if let Some(v) = get("VAKT_MQTT_PASSWORD") {
            self.mqtt_password = Some(Secret(v));
        }
        if let Some(v) = get("VAKT_MQTT_CLIENT_ID") {
            self.mqtt_client_id = v;
        }
        if let Some(v) = get("VAKT_MQTT_SHARE_GROUP") {
            self.mqtt_share_group = v;
        }
        if let Some(v) = get("VAKT_DATABASE_URL").filter(|v| !v.is_empty()) {
            self.database_url = Some(Secret(v));
        }
        if let Some(v) = get("VAKT_MASTER_KEY").filter(|v| !v.is_empty()) {
            self.master_key = Some(Secret(v));
        }
        if let Some(v) = get("VAKT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("VAKT_SECURE_COOKIES") {
            self.secure_cookies = parse("VAKT_SECURE_COOKIES", v)?;
        }
        if let Some(v) = get("VAKT_MAP_TILE_URL").filter(|v| !v.is_empty()) {
            self.map_tile_url = Some(v);
        }
        if let Some(v) = get("VAKT_GEOCODER_URL").filter(|v| !v.is_empty()) {
            self.geocoder_url = Some(v);
        }
        if let Some(v) = get("VAKT_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .parse()
                .map_err(|e| ConfigError::Env("VAKT_TRUSTED_PROXIES", e))?;
        }
        if let Some(v) = get("VAKT_HTTP_HEADER_TIMEOUT_S") {
            self.http_header_timeout_s = parse("VAKT_HTTP_HEADER_TIMEOUT_S", v)?;
        }
        if let Some(v) = get("VAKT_HTTP_BODY_TIMEOUT_S") {
            self.http_body_timeout_s = parse("VAKT_HTTP_BODY_TIMEOUT_S", v)?;
        }
        if let Some(v) = get("VAKT_SILENCE_GRACE_S") {
            self.silence_grace_s = Some(parse("VAKT_SILENCE_GRACE_S", v)?);
        }
        if let Some(v) = get("VAKT_DEVICE_MESSAGES_PER_S") {
            self.device_messages_per_s = parse("VAKT_DEVICE_MESSAGES_PER_S", v)?;
        }
        if let Some(v) = get("VAKT_DEVICE_MESSAGE_BURST") {
            self.device_message_burst = parse("VAKT_DEVICE_MESSAGE_BURST", v)?;
        }
        self.apply_tls_env(&get)
    }

    /// The TLS settings' `VAKT_*` variables; an empty one unsets its file.
    fn apply_tls_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let file = |name: &str| get(name).map(|v| (!v.is_empty()).then(|| PathBuf::from(v)));
        if let Some(v) = file("VAKT_MQTT_CA") {
            self.mqtt_ca = v;
        }
        if let Some(v) = file("VAKT_MQTT_CLIENT_CERT") {
            self.mqtt_client_cert = v;
        }
        if let Some(v) = file("VAKT_MQTT_CLIENT_KEY") {
            self.mqtt_client_key = v;
        }
        if let Some(v) = file("VAKT_TLS_CERT") {
            self.tls_cert = v;
        }
        if let Some(v) = file("VAKT_TLS_KEY") {
            self.tls_key = v;
        }
        if let Some(v) = file("VAKT_MQTT_TLS_CERT") {
            self.mqtt_tls_cert = v;
        }
        if let Some(v) = file("VAKT_MQTT_TLS_KEY") {
            self.mqtt_tls_key = v;
        }
        if let Some(v) = get("VAKT_MQTT_TLS_LISTEN") {
            self.mqtt_tls_listen = v.parse().map_err(|e: std::net::AddrParseError| {
                ConfigError::Env("VAKT_MQTT_TLS_LISTEN", e.to_string())
            })?;
        }
        Ok(())
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

    /// The database to open: the configured URL, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.0.clone(),
            None => format!("sqlite://{}", self.data_dir.join("vakt.db").display()),
        }
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

    #[test]
    fn the_environment_wins_over_the_file() {
        let mut c: Config =
            toml::from_str("http_addr = \"0.0.0.0:9000\"\nsilence_grace_s = 5").unwrap();
        assert_eq!(c.grace_for("standard"), 5);
        c.apply_env(|k| (k == "VAKT_HTTP_ADDR").then(|| "127.0.0.1:9100".to_owned()))
            .unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:9100");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_not_a_silent_default() {
        assert!(toml::from_str::<Config>("silence_grace = 5").is_err());
        assert!(toml::from_str::<Config>("[policy]\nproximity = 100").is_err());
        let c: Config = toml::from_str("[policy]\nproximity_m = 250.0").unwrap();
        assert_eq!(c.policy.proximity_m, 250.0);
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "VAKT_HTTP_ADDR").then(|| "nowhere".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("VAKT_HTTP_ADDR"));
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
        let mut c = Config::default();
        assert!(!c.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        c.apply_env(|k| (k == "VAKT_TRUSTED_PROXIES").then(|| "192.0.2.1,10.0.0.0/8".into()))
            .unwrap();
        assert!(c.trusted_proxies.trusts("192.0.2.1".parse().unwrap()));
        let err = c
            .apply_env(|k| (k == "VAKT_TRUSTED_PROXIES").then(|| "x".into()))
            .unwrap_err();
        assert!(err.to_string().contains("VAKT_TRUSTED_PROXIES"));
    }

    #[test]
    fn tls_files_come_from_the_file_or_the_environment_and_an_empty_variable_unsets_one() {
        let mut c: Config =
            toml::from_str("tls_cert = \"/etc/vakt/tls.crt\"\nmqtt_ca = \"/etc/vakt/ca.pem\"")
                .unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("/etc/vakt/tls.crt")));
        assert_eq!(c.mqtt_tls_listen.to_string(), "127.0.0.1:8883");
        let env = |k: &str| match k {
            "VAKT_TLS_KEY" => Some("/run/secrets/tls.key".to_owned()),
            "VAKT_MQTT_CA" => Some(String::new()),
            "VAKT_MQTT_TLS_LISTEN" => Some("0.0.0.0:8883".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.tls_key, Some(PathBuf::from("/run/secrets/tls.key")));
        assert_eq!(c.mqtt_ca, None);
        assert_eq!(c.mqtt_tls_listen.to_string(), "0.0.0.0:8883");
        let err = c
            .apply_env(|k| (k == "VAKT_MQTT_TLS_LISTEN").then(|| "8883".to_owned()))
            .unwrap_err();
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
    fn secrets_do_not_show_in_debug_output() {
        let c = Config {
            database_url: Some(Secret("postgres://u:hunter2@db/vakt".into())),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
