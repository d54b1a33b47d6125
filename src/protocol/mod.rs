//! Device protocol v1: topics, message bodies, signatures and the anti-replay window.
//!
//! Everything here is pure: bytes in, typed messages or a reason for refusal out.

pub mod canonical;
pub mod replay;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use canonical::{Body, BodyError, MAX_BODY_BYTES};
pub use replay::{Freshness, ReplayWindow};

pub const TOPIC_PREFIX: &str = "vakt/v1/dev/";
/// The filter the ingest subscribes to: every uplink topic of every device.
pub const UPLINK_FILTER: &str = "vakt/v1/dev/+/+";

/// A device id as the protocol allows it: `^[A-Za-z0-9_-]{3,64}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<DeviceId, ProtocolError> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(DeviceId(s.to_owned()))
        } else {
            Err(ProtocolError::BadDeviceId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a device's MQTT password is derived from its key with; no signature input is ever
/// this string (those start with a topic and a newline).
pub const MQTT_PASSWORD_CONTEXT: &[u8] = b"vakt/v1/mqtt-password";

/// The 32-byte secret a device signs with; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    pub fn generate() -> DeviceKey {
        DeviceKey(crate::keys::os_random())
    }

    pub fn from_hex(s: &str) -> Option<DeviceKey> {
        if s.len() != 64 {
            return None;
        }
        let bytes = hex::decode(s).ok()?;
        Some(DeviceKey(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The device's MQTT password: `hex(HMAC-SHA256(key, "vakt/v1/mqtt-password"))`.
    ///
    /// Not the key itself: a broker stores and compares passwords, its operators and its
    /// logs can see them, and a link without TLS carries them in the clear. Whoever learns
    /// this one can log in as the device but cannot sign its alarms or read its `newkey`.
    pub fn mqtt_password(&self) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(MQTT_PASSWORD_CONTEXT);
        hex::encode(mac.finalize().into_bytes())
    }

    fn mac(&self, topic: &str, canonical_body: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(topic.as_bytes());
        mac.update(b"\n");
        mac.update(canonical_body.as_bytes());
        mac
    }

    pub fn sign(&self, topic: &str, canonical_body: &str) -> String {
        hex::encode(self.mac(topic, canonical_body).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, topic: &str, canonical_body: &str, mac_hex: &str) -> bool {
        if mac_hex.len() != 64 || mac_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        match hex::decode(mac_hex) {
            Ok(tag) => self.mac(topic, canonical_body).verify_slice(&tag).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

/// Declares a set of topic kinds once: the enum, its topic leaves and the list of all of
/// them, so that a new kind reaches the topic parser, the broker's ACL and its checks, the
/// ingest and the documentation's test together.
macro_rules! topic_kinds {
    ($(#[$what:meta])* $set:ident { $($(#[$doc:meta])* $kind:ident => $leaf:literal,)* }) => {
        $(#[$what])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $set {
            $($(#[$doc])* $kind,)*
        }

        impl $set {
            /// Every kind, in the order the protocol lists them.
            pub const ALL: &'static [$set] = &[$($set::$kind,)*];

            /// The topic leaf: `vakt/v1/dev/{id}/{leaf}`.
            pub fn name(self) -> &'static str {
                match self {
                    $($set::$kind => $leaf,)*
                }
            }

            /// The kind a topic's last level names, whatever comes before it.
            pub fn of_leaf(topic: &str) -> Option<$set> {
                let (_, leaf) = topic.rsplit_once('/')?;
                Self::ALL.iter().copied().find(|k| k.name() == leaf)
            }
        }
    };
}

topic_kinds! {
    /// What a device may publish.
    Uplink {
        Hello => "hello",
        Heartbeat => "hb",
        Alarm => "alarm",
        Position => "pos",
        /// The last will.
        State => "state",
    }
}

topic_kinds! {
    /// What the backend answers a device on: signed feedback on its alarms, and its
    /// retained configuration.
    Downlink {
        Ack => "ack",
        Config => "cfg",
    }
}

/// What every MQTT identity of the backend itself (client ids, broker usernames) starts
/// with, compared without regard to case. No device id may: a device that could log in
/// under the backend's client id would end the backend's connection, or take over its
/// persistent session and read every device's messages.
pub const BACKEND_PREFIX: &str = "vakt-";

/// Whether `name` is, or could be, an MQTT identity of the backend.
pub fn is_backend_identity(name: &str) -> bool {
    name.len() >= BACKEND_PREFIX.len()
        && name.as_bytes()[..BACKEND_PREFIX.len()].eq_ignore_ascii_case(BACKEND_PREFIX.as_bytes())
}

/// The id for a new device: a protocol device id that is not, and cannot collide with, any
/// of the backend's identities (the reserved prefix, and the ones this instance is
/// configured with, `backend`, whatever they are). The one rule the API, the command line
/// and the broker files all apply.
pub fn new_device_id(id: &str, backend: &[&str]) -> Result<DeviceId, ProtocolError> {
    let id = DeviceId::parse(id)?;
    let taken = is_backend_identity(id.as_str())
        || backend.iter().any(|b| b.eq_ignore_ascii_case(id.as_str()));
    if taken {
        return Err(ProtocolError::ReservedDeviceId);
    }
    Ok(id)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("topic is not a vakt v1 device uplink")]
    BadTopic,
    #[error("device id does not match ^[A-Za-z0-9_-]{{3,64}}$")]
    BadDeviceId,
    #[error("device id is reserved for the backend's own broker identities (`vakt-…`)")]
    ReservedDeviceId,
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("member `{0}` is missing or has the wrong type")]
    Member(&'static str),
    #[error("member `{0}` is out of range")]
    Range(&'static str),
    #[error("member `{0}` holds a control character")]
    ControlCharacter(&'static str),
    #[error("unknown alarm kind `{0}`")]
    AlarmKind(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// Splits an uplink topic into the device and what it sent.
pub fn parse_topic(topic: &str) -> Result<(DeviceId, Uplink), ProtocolError> {
    let rest = topic
        .strip_prefix(TOPIC_PREFIX)
        .ok_or(ProtocolError::BadTopic)?;
    let (id, leaf) = rest.split_once('/').ok_or(ProtocolError::BadTopic)?;
    let uplink = *Uplink::ALL
        .iter()
        .find(|u| u.name() == leaf)
        .ok_or(ProtocolError::BadTopic)?;
    Ok((DeviceId::parse(id)?, uplink))
}

pub fn topic(device: &DeviceId, leaf: &str) -> String {
    format!("{TOPIC_PREFIX}{device}/{leaf}")
}

/// The write rights of a logged-in device (the Mosquitto ACL's `write vakt/v1/dev/%u/…`):
/// only its own uplink topics, and never retained, since a retained uplink would be handed
/// to whoever subscribes next, long after the device meant it.
pub fn may_publish(device: &str, topic: &str, retain: bool) -> Result<(), &'static str> {
    match parse_topic(topic) {
        Ok((id, _)) if id.as_str() != device => Err("another device's topic"),
        Ok(_) if retain => Err("devices may not publish retained messages"),
        Ok(_) => Ok(()),
        Err(_) => Err("not one of the device's uplink topics"),
    }
}

/// A position as devices send it: 1e-7 degrees WGS84 and an accuracy in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat_e7: i32,
    pub lon_e7: i32,
    pub acc_m: u32,
}

impl Fix {
    pub fn lat(&self) -> f64 {
        self.lat_e7 as f64 / 1e7
    }
    pub fn lon(&self) -> f64 {
        self.lon_e7 as f64 / 1e7
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Panic,
    Fall,
    Tamper,
    LowBattery,
    PowerLoss,
    Cancel,
    Test,
}

impl AlarmKind {
    pub fn parse(s: &str) -> Option<AlarmKind> {
        Some(match s {
            "panic" => AlarmKind::Panic,
            "fall" => AlarmKind::Fall,
            "tamper" => AlarmKind::Tamper,
            "low_battery" => AlarmKind::LowBattery,
            "power_loss" => AlarmKind::PowerLoss,
            "cancel" => AlarmKind::Cancel,
            "test" => AlarmKind::Test,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Panic => "panic",
            AlarmKind::Fall => "fall",
            AlarmKind::Tamper => "tamper",
            AlarmKind::LowBattery => "low_battery",
            AlarmKind::PowerLoss => "power_loss",
            AlarmKind::Cancel => "cancel",
            AlarmKind::Test => "test",
        }
    }
}

/// The typed content of a verified uplink message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Hello {
        fw: String,
        model: String,
        hb_s: u32,
    },
    Heartbeat {
        batt: u8,
        charging: bool,
        rssi: i32,
    },
    Alarm {
        kind: AlarmKind,
        batt: Option<u8>,
        fix: Option<Fix>,
    },
    Position {
        fix: Fix,
        speed_cm_s: Option<u32>,
    },
    /// The last will: the connection is gone.
    Offline,
}

/// One uplink message, signature checked, members typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub device: DeviceId,
    pub boot: u32,
    /// `None` only for the last will, which carries no sequence number.
    pub seq: Option<u32>,
    pub device_ts_ms: i64,
    pub payload: Payload,
}

/// What can be read from an uplink before its signature is checked: enough to find the key.
#[derive(Debug)]
pub struct Envelope {
    pub device: DeviceId,
    pub uplink: Uplink,
    pub topic: String,
    pub body: Body,
}

/// First step: topic and body shape, no key needed.
pub fn open(topic: &str, bytes: &[u8]) -> Result<Envelope, ProtocolError> {
    let (device, uplink) = parse_topic(topic)?;
    let body = Body::parse(bytes)?;
    Ok(Envelope {
        device,
        uplink,
        topic: topic.to_owned(),
        body,
    })
}

/// Second step: the signature, then the members of the topic.
pub fn verify(envelope: Envelope, key: &DeviceKey) -> Result<Message, ProtocolError> {
    if !signed_by(&envelope, key)? {
        return Err(ProtocolError::BadSignature);
    }
    decode(envelope)
}

/// Whether `key` made the envelope's `mac`; for a device that may sign with either of two
/// keys while its key is rotated. Decode with `decode` once one key fits.
pub fn signed_by(envelope: &Envelope, key: &DeviceKey) -> Result<bool, ProtocolError> {
    let mac = envelope
        .body
        .str("mac")
        .ok_or(ProtocolError::Member("mac"))?;
    Ok(key.verify(&envelope.topic, &envelope.body.canonical(), mac))
}

/// The members of the topic, from an envelope whose signature was checked.
pub fn decode(envelope: Envelope) -> Result<Message, ProtocolError> {
    let b = &envelope.body;
    let boot = u32_member(b, "boot")?;
    let ts = b.int("ts").ok_or(ProtocolError::Member("ts"))?;
    let seq = match envelope.uplink {
        Uplink::State => None,
        _ => Some(u32_member(b, "seq")?),
    };
    let payload = match envelope.uplink {
        Uplink::Hello => Payload::Hello {
            fw: string_member(b, "fw")?,
            model: string_member(b, "model")?,
            hb_s: match u32_member(b, "hb")? {
                0 => return Err(ProtocolError::Range("hb")),
                hb => hb,
            },
        },
        Uplink::Heartbeat => Payload::Heartbeat {
            batt: battery(b)?.ok_or(ProtocolError::Member("batt"))?,
            charging: match b.int("chg") {
                Some(0) => false,
                Some(1) => true,
                Some(_) => return Err(ProtocolError::Range("chg")),
                None => return Err(ProtocolError::Member("chg")),
            },
            rssi: match b.int("rssi") {
                Some(v) if (-200..=0).contains(&v) => v as i32,
                Some(_) => return Err(ProtocolError::Range("rssi")),
                None => return Err(ProtocolError::Member("rssi")),
            },
        },
        Uplink::Alarm => {
            let kind = string_member(b, "kind")?;
            Payload::Alarm {
                kind: AlarmKind::parse(&kind).ok_or(ProtocolError::AlarmKind(kind))?,
                batt: battery(b)?,
                fix: fix(b, false)?,
            }
        }
        Uplink::Position => Payload::Position {
            fix: fix(b, true)?.ok_or(ProtocolError::Member("lat"))?,
            speed_cm_s: match b.int("spd") {
                None => None,
                Some(v) => Some(u32::try_from(v).map_err(|_| ProtocolError::Range("spd"))?),
            },
        },
        // The last will only ever reports a lost connection.
        Uplink::State => match b.bool("online") {
            Some(false) => Payload::Offline,
            Some(true) => return Err(ProtocolError::Range("online")),
            None => return Err(ProtocolError::Member("online")),
        },
    };
    Ok(Message {
        device: envelope.device,
        boot,
        seq,
        device_ts_ms: ts,
        payload,
    })
}

fn u32_member(b: &Body, key: &'static str) -> Result<u32, ProtocolError> {
    let v = b.int(key).ok_or(ProtocolError::Member(key))?;
    u32::try_from(v).map_err(|_| ProtocolError::Range(key))
}

/// A text member. Control characters (NUL above all, which PostgreSQL cannot store) are
/// refused here, so no device text that reaches the store or a console can hold one.
fn string_member(b: &Body, key: &'static str) -> Result<String, ProtocolError> {
    let text = b.str(key).ok_or(ProtocolError::Member(key))?;
    if text.chars().any(char::is_control) {
        return Err(ProtocolError::ControlCharacter(key));
    }
    Ok(text.to_owned())
}

fn battery(b: &Body) -> Result<Option<u8>, ProtocolError> {
    match b.members.get("batt") {
        None => Ok(None),
        Some(_) => match b.int("batt") {
            Some(v) if (0..=100).contains(&v) => Ok(Some(v as u8)),
            Some(_) => Err(ProtocolError::Range("batt")),
            None => Err(ProtocolError::Member("batt")),
        },
    }
}

fn fix(b: &Body, required: bool) -> Result<Option<Fix>, ProtocolError> {
    let (lat, lon) = (b.int("lat"), b.int("lon"));
    match (lat, lon) {
        (None, None) if !required => Ok(None),
        (Some(lat), Some(lon)) => {
            if !(-900_000_000..=900_000_000).contains(&lat) {
                return Err(ProtocolError::Range("lat"));
            }
            if !(-1_800_000_000..=1_800_000_000).contains(&lon) {
                return Err(ProtocolError::Range("lon"));
            }
            let acc_m = match b.int("acc") {
                None if !required => 0,
                None => return Err(ProtocolError::Member("acc")),
                Some(v) => u32::try_from(v).map_err(|_| ProtocolError::Range("acc"))?,
            };
            Ok(Some(Fix {
                lat_e7: lat as i32,
                lon_e7: lon as i32,
                acc_m,
            }))
        }
        (None, _) => Err(ProtocolError::Member("lat")),
        (_, None) => Err(ProtocolError::Member("lon")),
    }
}

/// The states a device hears back about one alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    Received,
    Accepted,
    Resolved,
}

impl Feedback {
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Received => "received",
            Feedback::Accepted => "accepted",
            Feedback::Resolved => "resolved",
        }
    }
}

/// A signed `ack` body naming the alarm message `(boot, seq)`.
pub fn feedback_body(
    device: &DeviceId,
    key: &DeviceKey,
    boot: u32,
    seq: u32,
    st: Feedback,
    ts_ms: i64,
) -> (String, String) {
    let mut body = Body::default();
    body.insert_int("boot", boot as i64);
    body.insert_int("seq", seq as i64);
    body.insert_str("st", st.as_str());
    body.insert_int("ts", ts_ms);
    let topic = topic(device, Downlink::Ack.name());
    let mac = key.sign(&topic, &body.canonical());
    let text = body.with_mac(&mac);
    (topic, text)
}

/// A signed, retained `cfg` body carrying the heartbeat interval the backend expects.
///
/// `hb` is the interval a coordinator set (absent: the device keeps its own). `next_key`,
/// while a key rotation waits for the device, travels as `newkey`, wrapped so that only a
/// holder of the current key can read it (see `wrap_next_key`); the whole body is signed
/// with the current key, so nobody else can hand a device a key.
pub fn config_body(
    device: &DeviceId,
    key: &DeviceKey,
    hb_s: Option<u32>,
    next_key: Option<&DeviceKey>,
    ts_ms: i64,
) -> (String, String) {
    let topic = topic(device, Downlink::Config.name());
    let mut body = Body::default();
    if let Some(hb) = hb_s {
        body.insert_int("hb", hb as i64);
    }
    if let Some(next) = next_key {
        body.insert_str("newkey", &wrap_next_key(key, &topic, ts_ms, next));
    }
    body.insert_int("ts", ts_ms);
    let mac = key.sign(&topic, &body.canonical());
    let text = body.with_mac(&mac);
    (topic, text)
}

/// `hex(next XOR HMAC-SHA256(current, topic + "\n" + "newkey " + ts))`: a one-time pad from
/// the current key, unique per topic and `ts`. Its input never starts with `{`, so it is never
/// the input of a signature anybody can see.
pub fn wrap_next_key(current: &DeviceKey, topic: &str, ts_ms: i64, next: &DeviceKey) -> String {
    let pad = current
        .mac(topic, &format!("newkey {ts_ms}"))
        .finalize()
        .into_bytes();
    let wrapped: Vec<u8> = next.0.iter().zip(pad.iter()).map(|(k, p)| k ^ p).collect();
    hex::encode(wrapped)
}

/// The inverse of `wrap_next_key` (XOR is its own inverse), for tests and tools.
pub fn unwrap_next_key(
    current: &DeviceKey,
    topic: &str,
    ts_ms: i64,
    wrapped_hex: &str,
) -> Option<DeviceKey> {
    let wrapped = DeviceKey::from_hex(wrapped_hex)?;
    DeviceKey::from_hex(&wrap_next_key(current, topic, ts_ms, &wrapped))
}

#[cfg(test)]
mod tests;
