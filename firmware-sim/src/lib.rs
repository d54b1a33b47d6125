//! Alarm device simulator for vakt: device protocol v1 (MQTT) implemented independently of the backend.
//!
//! [`SimDevice`] is one device with a real MQTT session; [`run_fleet`] drives
//! many of them for demos and load tests; [`saturate`] sends pre-signed heartbeats as
//! fast as a broker takes them, and [`count`] is a plain subscriber to measure against.
//! The signing code is written from the protocol text alone, so that it cross-checks the
//! backend's. [`repeat`]
//! holds the rule by which a device sends an alarm again until the backend's
//! signed `received` arrives: the reference for device makers.

mod canonical;
mod count;
mod device;
mod fleet;
mod protocol;
mod pubacks;
pub mod repeat;
mod saturate;
mod signing;
mod tls;
mod wire;

pub use canonical::{canonical_json, canonical_without_mac, CanonicalError};
pub use count::{count, CountConfig, CountReport, UPLINK_FILTER};
pub use device::{Feedback, SimDevice, SimOptions};
pub use fleet::{
    run_fleet, Burst, DeviceReport, FleetConfig, FleetDevice, FleetEvent, FleetReport, FLEET_FW,
    FLEET_MODEL,
};
pub use protocol::{boot_from_clock, is_valid_device_id, now_ms, topic, Fix, ALARM_KINDS};
pub use saturate::{saturate, SaturateConfig, SaturateReport};
pub use signing::{sign, signed_body, unwrap_new_key, verify, DeviceKey, VerifyError};
pub use tls::DeviceTls;
