//! Configuration: defaults, then `vakt.toml`, then `VAKT_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::policy::PolicyConfig;

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
    /// Mark the session cookie `Secure`: set when the console is served over TLS (directly
    /// or behind a TLS-terminating proxy).
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
    pub policy: PolicyConfig,
    pub supervision: SupervisionConfig,

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
            policy: PolicyConfig::default(),
            supervision: SupervisionConfig::default(),

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
    #[error("environment variable {0}: {1}")]
    Env(&'static str, String),
    #[error("{0}")]
    BrokerIdentity(String),
    #[error("{0}")]
    BrokerAdmin(String),
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

        if let Some(v) = get("VAKT_MQTT_BROKER_ADMIN") {
            self.mqtt_broker_admin = match v.as_str() {
                "" | "none" => None,
                v => Some(parse("VAKT_MQTT_BROKER_ADMIN", v.to_owned())?),
            };
        }
        if let Some(v) = get("VAKT_MQTT_ADMIN_USERNAME").filter(|v| !v.is_empty()) {
            self.mqtt_admin_username = Some(v);
        }
        if let Some(v) = get("VAKT_MQTT_ADMIN_PASSWORD").filter(|v| !v.is_empty()) {
            self.mqtt_admin_password = Some(Secret(v));
        }
        if let Some(v) = get("VAKT_MQTT_ADMIN_RECONCILE_S") {
            self.mqtt_admin_reconcile_s = parse("VAKT_MQTT_ADMIN_RECONCILE_S", v)?;
        }
        Ok(())
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
    fn broker_admin_comes_from_the_file_or_the_environment_and_needs_its_login() {
        let c: Config = toml::from_str(
            "mqtt_url = \"mqtt://broker:1883\"\nmqtt_username = \"vakt-1\"\nmqtt_password = \"s\"\nmqtt_broker_admin = \"dynsec\"\nmqtt_admin_username = \"vakt-admin\"\nmqtt_admin_password = \"pw\"",
        )
        .unwrap();
        assert_eq!(c.mqtt_broker_admin, Some(BrokerAdmin::Dynsec));
        assert!(c.check_broker_admin().is_ok());
        assert!(toml::from_str::<Config>("mqtt_broker_admin = \"files\"").is_err());

        let mut c = Config::default();
        let env = |k: &str| match k {
            "VAKT_MQTT_BROKER_ADMIN" => Some("dynsec".to_owned()),
            "VAKT_MQTT_ADMIN_USERNAME" => Some("vakt-admin".to_owned()),
            "VAKT_MQTT_ADMIN_PASSWORD" => Some("pw".to_owned()),
            "VAKT_MQTT_ADMIN_RECONCILE_S" => Some("5".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
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

        let err = c
            .apply_env(|k| (k == "VAKT_MQTT_BROKER_ADMIN").then(|| "files".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("VAKT_MQTT_BROKER_ADMIN"), "{err}");
        c.apply_env(|k| (k == "VAKT_MQTT_BROKER_ADMIN").then(String::new))
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
