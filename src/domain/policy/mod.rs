//! The alert policy (docs/policy.md) in one place: what a device's trigger, the passing of
//! time and an incident's history make the backend do. Pure functions over plain data; the
//! ingest and supervision perform what they decide.
//!
//! - `triage`: a device's trigger → a [`Decision`] (the table of kinds and priorities);
//! - `episodes`: when a lasting condition raises again (low battery, bad signatures,
//!   missing messages);
//! - `silence`: the heartbeat interval a device is held to, the silence window, reminders;
//! - `escalation`: alerts nobody acknowledged in time, orders about to end;
//! - `incidents`: which alerts of a device are one incident, and what a cancel marks;
//! - `assessment`: review dates of risk assessments, the line a change of risk writes on
//!   open alerts, and the reminder when a review has passed.

pub mod assessment;
pub mod episodes;
pub mod escalation;
pub mod incidents;
pub mod silence;
pub mod triage;

use super::{AlertKind, Position, Priority, Reason};

/// Thresholds of the policy; configuration with the policy's defaults.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// A tag this close to an alarm device of its case is an emergency.
    pub proximity_m: f64,
    /// A heartbeat battery below this (and not charging) raises a low-battery alert.
    pub low_battery_pct: u8,
    /// This many bad signatures within `bad_signature_window_s` raise a technical alert.
    pub bad_signature_count: u32,
    pub bad_signature_window_s: u64,
    /// This many of a device's messages found missing within `messages_missing_window_s`
    /// raise a technical alert, once per episode.
    pub messages_missing_count: u64,
    pub messages_missing_window_s: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            proximity_m: 500.0,
            low_battery_pct: 15,
            bad_signature_count: 3,
            bad_signature_window_s: 600,
            // A heartbeat a minute is 60 messages an hour: a third of them lost is a device
            // whose coverage or connection a coordinator should look at, while the odd lost
            // message of a train tunnel stays below it.
            messages_missing_count: 20,
            messages_missing_window_s: 3600,
        }
    }
}

/// What the backend must do about a trigger, or about an alert as time passes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Open an alert, or update the device's unresolved alert of the same incident.
    Raise {
        kind: AlertKind,
        priority: Priority,
        position: Option<Position>,
        /// What happened; a repeated trigger adds its reasons to the alert's.
        trigger: Vec<Reason>,
        /// The case, orders and place as they stand now; replaces the alert's on update.
        context: Vec<Reason>,
    },
    /// Flag an open alert nobody acknowledged in time as overdue, at this priority (raised,
    /// never lowered), with this history note.
    Escalate {
        priority: Priority,
        note: Reason,
    },
    /// Mark the device's open alert: the holder pressed cancel.
    MarkCancel,
    /// Record a passed test of the device; no alert.
    RecordTest,
    Nothing,
}
