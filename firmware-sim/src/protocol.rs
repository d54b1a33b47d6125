//! Names and value types of protocol v1: topics, alarm kinds, positions, device ids, clocks.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Every alarm kind protocol v1 defines.
pub const ALARM_KINDS: [&str; 7] = [
    "panic",
    "fall",
    "tamper",
    "low_battery",
    "power_loss",
    "cancel",
    "test",
];

/// `vakt/v1/dev/{device_id}/{suffix}`, e.g. suffix `hb` or `ack`.
pub fn topic(device_id: &str, suffix: &str) -> String {
    format!("vakt/v1/dev/{device_id}/{suffix}")
}

/// `^[A-Za-z0-9_-]{3,64}$`
pub fn is_valid_device_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The device clock, Unix milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A boot counter for a simulated device start.
///
/// A real device keeps its boot counter in flash; the simulator has no flash,
/// and the backend treats an older boot as a replay. Unix seconds grow across
/// runs without any state file (two starts within one second would collide).
pub fn boot_from_clock() -> u32 {
    u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX)
}

/// A position fix in the wire units: 1e-7 degrees (WGS84) and metres (68 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    pub lat_e7: i64,
    pub lon_e7: i64,
    pub acc_m: u32,
}

impl Fix {
    /// Converts degrees to the wire's 1e-7 degree integers, rounding to nearest.
    pub fn from_degrees(lat: f64, lon: f64, acc_m: u32) -> anyhow::Result<Fix> {
        anyhow::ensure!(
            (-90.0..=90.0).contains(&lat),
            "latitude {lat} is outside -90..90"
        );
        anyhow::ensure!(
            (-180.0..=180.0).contains(&lon),
            "longitude {lon} is outside -180..180"
        );
        Ok(Fix {
            lat_e7: (lat * 1e7).round() as i64,
            lon_e7: (lon * 1e7).round() as i64,
            acc_m,
        })
    }

    pub(crate) fn members(&self) -> [(&'static str, Value); 3] {
        [
            ("lat", json!(self.lat_e7)),
            ("lon", json!(self.lon_e7)),
            ("acc", json!(self.acc_m)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_become_rounded_1e7_integers() {
        let fix = Fix::from_degrees(59.3293, -18.068_600_06, 10).unwrap();
        assert_eq!(
            fix,
            Fix {
                lat_e7: 593_293_000,
                lon_e7: -180_686_001,
                acc_m: 10
            }
        );
    }

    #[test]
    fn a_position_off_the_globe_or_nan_is_refused() {
        assert!(Fix::from_degrees(90.1, 0.0, 1).is_err());
        assert!(Fix::from_degrees(0.0, -180.5, 1).is_err());
        assert!(Fix::from_degrees(f64::NAN, 0.0, 1).is_err());
    }

    #[test]
    fn device_ids_follow_the_protocol_pattern() {
        assert!(is_valid_device_id("dev-001_A"));
        assert!(is_valid_device_id(&"a".repeat(64)));
        assert!(!is_valid_device_id("ab"));
        assert!(!is_valid_device_id(&"a".repeat(65)));
        assert!(!is_valid_device_id("dev/1"));
        assert!(!is_valid_device_id("dev+1"));
        assert!(!is_valid_device_id("dév-1"));
    }

    #[test]
    fn topics_are_under_the_v1_device_tree() {
        assert_eq!(topic("dev-001", "hb"), "vakt/v1/dev/dev-001/hb");
    }
}
