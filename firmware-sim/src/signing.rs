//! Device keys and the HMAC-SHA256 body signature, both ways (sign uplink, verify downlink).

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::canonical::{canonical_json, canonical_without_mac, CanonicalError};

type HmacSha256 = Hmac<Sha256>;

/// The 32-byte secret a device is provisioned with.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key, as provisioning would issue.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random generator");
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, as the key was printed when it was issued.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The MQTT password: `hex(HMAC-SHA256(key, "vakt/v1/mqtt-password"))`, never the key
    /// itself, so a broker (or a link without TLS) that sees the password cannot sign as
    /// the device.
    pub fn mqtt_password(&self) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"vakt/v1/mqtt-password");
        hex::encode(mac.finalize().into_bytes())
    }
}

impl FromStr for DeviceKey {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            s.len() == 64,
            "a device key is 64 hex characters, got {}",
            s.len()
        );
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|e| anyhow::anyhow!("a device key is 64 hex characters: {e}"))?;
        Ok(Self(bytes))
    }
}

// Keys end up in logs through `{:?}` of whatever holds them; never print the secret.
impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

/// `hex(HMAC-SHA256(key, topic + "\n" + canonical_body))`, lowercase.
pub fn sign(key: &[u8; 32], topic: &str, canonical_body: &str) -> String {
    hex::encode(mac_over(key, topic, canonical_body).finalize().into_bytes())
}

fn mac_over(key: &[u8; 32], topic: &str, canonical_body: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(topic.as_bytes());
    mac.update(b"\n");
    mac.update(canonical_body.as_bytes());
    mac
}

/// The wire body for `members` on `topic`: the canonical text with `mac`
/// appended last, as a device that writes sorted members sends it.
pub fn signed_body(
    key: &DeviceKey,
    topic: &str,
    members: &[(&str, Value)],
) -> Result<String, CanonicalError> {
    let canonical = canonical_json(members)?;
    let mac = sign(key.as_bytes(), topic, &canonical);
    let open = canonical.strip_suffix('}').unwrap_or(&canonical);
    let separator = if open.len() > 1 { "," } else { "" };
    Ok(format!("{open}{separator}\"mac\":\"{mac}\"}}"))
}

/// Why a received body was not accepted as signed by the device key.
#[derive(Debug)]
pub enum VerifyError {
    NotJsonObject,
    MissingMac,
    Canonical(CanonicalError),
    BadMac,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJsonObject => f.write_str("body is not a JSON object"),
            Self::MissingMac => f.write_str("body has no mac string"),
            Self::Canonical(e) => write!(f, "body has no canonical form: {e}"),
            Self::BadMac => f.write_str("mac does not match the body"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Parses `payload` and checks its `mac`; returns the members without `mac`.
pub fn verify(
    key: &DeviceKey,
    topic: &str,
    payload: &[u8],
) -> Result<Map<String, Value>, VerifyError> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(payload) else {
        return Err(VerifyError::NotJsonObject);
    };
    let canonical = canonical_without_mac(&body).map_err(VerifyError::Canonical)?;
    let Some(Value::String(mac_hex)) = body.remove("mac") else {
        return Err(VerifyError::MissingMac);
    };
    // The spec fixes lowercase; accepting uppercase would allow a second
    // spelling of the same signature.
    let lowercase_hex = mac_hex.len() == 64
        && mac_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mac = hex::decode(&mac_hex).ok().filter(|_| lowercase_hex);
    // verify_slice compares in constant time.
    match mac {
        Some(mac)
            if mac_over(key.as_bytes(), topic, &canonical)
                .verify_slice(&mac)
                .is_ok() =>
        {
            Ok(body)
        }
        _ => Err(VerifyError::BadMac),
    }
}

/// The key a `cfg` hands over in `newkey` during a key rotation:
/// `newkey XOR HMAC-SHA256(current, topic + "\n" + "newkey " + ts)`, where `current` is the
/// key that signed the `cfg` and `ts` its `ts` member.
pub fn unwrap_new_key(
    current: &DeviceKey,
    topic: &str,
    ts: i64,
    newkey_hex: &str,
) -> anyhow::Result<DeviceKey> {
    let wrapped: DeviceKey = newkey_hex
        .parse()
        .map_err(|e| anyhow::anyhow!("newkey: {e}"))?;
    let pad = mac_over(current.as_bytes(), topic, &format!("newkey {ts}"))
        .finalize()
        .into_bytes();
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = wrapped.0[i] ^ pad[i];
    }
    Ok(DeviceKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_key_is_unwrapped_with_the_key_that_signed_the_cfg() {
        let current = counting_key();
        let topic = "vakt/v1/dev/dev-001/cfg";
        let new = DeviceKey::from_bytes([7u8; 32]);
        // Wrapping is the same XOR; done by hand here from the definition.
        let pad = mac_over(current.as_bytes(), topic, "newkey 1764320000123")
            .finalize()
            .into_bytes();
        let wrapped: Vec<u8> = new.0.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect();
        let unwrapped =
            unwrap_new_key(&current, topic, 1_764_320_000_123, &hex::encode(wrapped)).unwrap();
        assert_eq!(unwrapped, new);
        let other_ts =
            unwrap_new_key(&current, topic, 1_764_320_000_124, &hex::encode([0u8; 32])).unwrap();
        assert_ne!(other_ts, new);
    }

    const HB_TOPIC: &str = "vakt/v1/dev/dev-001/hb";
    const HB_BODY: &str =
        r#"{"batt":87,"boot":3,"chg":0,"rssi":-71,"seq":1204,"ts":1764320000123}"#;

    fn counting_key() -> DeviceKey {
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
            .parse()
            .unwrap()
    }

    #[test]
    fn a_heartbeat_body_is_signed_over_topic_newline_and_canonical_text() {
        // Computed independently with Python:
        // hmac.new(bytes(range(32)), topic + b"\n" + body, hashlib.sha256).hexdigest()
        assert_eq!(
            sign(counting_key().as_bytes(), HB_TOPIC, HB_BODY),
            "2b6c1230c1c0387404022b04356463b0993a27d3e8d3f371b02d9a8eb244211a"
        );
    }

    #[test]
    fn a_signed_body_is_the_canonical_text_with_mac_appended() {
        let members = [
            ("seq", json!(1204)),
            ("ts", json!(1_764_320_000_123_i64)),
            ("batt", json!(87)),
            ("boot", json!(3)),
            ("rssi", json!(-71)),
            ("chg", json!(0)),
        ];
        let body = signed_body(&counting_key(), HB_TOPIC, &members).unwrap();
        assert_eq!(
            body,
            format!(
                "{},\"mac\":\"2b6c1230c1c0387404022b04356463b0993a27d3e8d3f371b02d9a8eb244211a\"}}",
                &HB_BODY[..HB_BODY.len() - 1]
            )
        );
    }

    #[test]
    fn a_signed_body_verifies_and_loses_its_mac() {
        let key = DeviceKey::generate();
        let body = signed_body(&key, HB_TOPIC, &[("seq", json!(1))]).unwrap();
        let members = verify(&key, HB_TOPIC, body.as_bytes()).unwrap();
        assert_eq!(members, json!({"seq": 1}).as_object().unwrap().clone());
    }

    #[test]
    fn verification_fails_for_another_key_topic_or_body() {
        let key = DeviceKey::generate();
        let body = signed_body(&key, HB_TOPIC, &[("seq", json!(1))]).unwrap();
        let other_key = DeviceKey::generate();
        assert!(matches!(
            verify(&other_key, HB_TOPIC, body.as_bytes()),
            Err(VerifyError::BadMac)
        ));
        assert!(matches!(
            verify(&key, "vakt/v1/dev/dev-002/hb", body.as_bytes()),
            Err(VerifyError::BadMac)
        ));
        let tampered = body.replace("\"seq\":1", "\"seq\":2");
        assert!(matches!(
            verify(&key, HB_TOPIC, tampered.as_bytes()),
            Err(VerifyError::BadMac)
        ));
    }

    #[test]
    fn an_uppercase_mac_is_not_a_valid_spelling() {
        let key = DeviceKey::generate();
        let body = signed_body(&key, HB_TOPIC, &[("seq", json!(1))]).unwrap();
        let mac_start = body.find("\"mac\":\"").unwrap() + 7;
        let upper = format!(
            "{}{}",
            &body[..mac_start],
            body[mac_start..].to_ascii_uppercase()
        );
        assert!(matches!(
            verify(&key, HB_TOPIC, upper.as_bytes()),
            Err(VerifyError::BadMac)
        ));
    }

    #[test]
    fn a_body_without_mac_or_not_an_object_is_refused() {
        let key = DeviceKey::generate();
        assert!(matches!(
            verify(&key, HB_TOPIC, br#"{"seq":1}"#),
            Err(VerifyError::MissingMac)
        ));
        assert!(matches!(
            verify(&key, HB_TOPIC, b"[1]"),
            Err(VerifyError::NotJsonObject)
        ));
        assert!(matches!(
            verify(&key, HB_TOPIC, b"\xff"),
            Err(VerifyError::NotJsonObject)
        ));
    }

    #[test]
    fn a_device_key_is_exactly_64_hex_characters() {
        assert!("00".repeat(31).parse::<DeviceKey>().is_err());
        assert!("00".repeat(33).parse::<DeviceKey>().is_err());
        assert!("0g".repeat(32).parse::<DeviceKey>().is_err());
        let key: DeviceKey = "AB".repeat(32).parse().unwrap();
        assert_eq!(key.to_hex(), "ab".repeat(32));
    }

    #[test]
    fn the_mqtt_password_is_derived_from_the_key_as_the_protocol_says() {
        // The protocol's known answer:
        // printf 'vakt/v1/mqtt-password' | openssl dgst -sha256 -mac HMAC \
        //   -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
        let key = DeviceKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(
            key.mqtt_password(),
            "2724c5f4aead20e0d1c1448982b98b43c27ee94c6857994869791b1b2c4101e3"
        );
        assert_ne!(key.mqtt_password(), key.to_hex());
    }

    #[test]
    fn a_device_key_does_not_show_in_debug_output() {
        let key = counting_key();
        assert_eq!(format!("{key:?}"), "DeviceKey(..)");
    }
}
