//! One incident, one alert: which alerts of a device belong together, and what a cancel
//! marks. The store's `raise` and `cancel` transactions follow these rules (the database
//! enforces one unresolved alert per device and incident class with a unique index on the
//! class stored here).

use crate::domain::AlertKind;

/// The incident class of panics and falls: a fall right after a panic is the same emergency.
pub const EMERGENCY: &str = "emergency";
/// The incident class of a tag in a zone and a tag near: the same restrained person closing in.
pub const TAG: &str = "tag";

/// Alerts of one incident class on one device are one incident: a second panic, or a fall
/// right after a panic, updates the unresolved alert instead of opening another. Every kind
/// not named here is a class of its own.
pub fn class_of(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Panic | AlertKind::Fall => EMERGENCY,
        AlertKind::TagInZone | AlertKind::TagNear => TAG,
        other => other.as_str(),
    }
}

/// An alert about no device (an order about to end) is raised once per incident, ever: the
/// incident is the order.
pub fn order_ending(order_id: &str) -> String {
    format!("order_ending:{order_id}")
}

/// A case's review reminder is raised once per review date of the case, ever: a risk
/// changed on the case without an assessment keeps the date it had, and must not raise the
/// same reminder again.
pub fn review_due(case_id: &str, next_review: crate::domain::Day) -> String {
    format!("review_due:{case_id}:{next_review}")
}

/// Whether a `cancel` marks the device's open emergency alert: only when the holder pressed
/// it after every alarm of that alert, in the device's own `(boot, seq)` order. A cancel that
/// arrives late (a repeat the window can no longer place, or reordered in transit) must not
/// mark a newer alarm it never answered.
pub fn cancel_marks(cancel: (u32, u32), latest_alarm_of_alert: Option<(u32, u32)>) -> bool {
    latest_alarm_of_alert.is_none_or(|alarm| alarm < cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_and_falls_are_one_emergency_tags_one_incident_and_every_other_kind_its_own() {
        #[rustfmt::skip]
        let table: &[(AlertKind, &str)] = &[
            (AlertKind::Panic, "emergency"),
            (AlertKind::Fall, "emergency"),
            (AlertKind::TagInZone, "tag"),
            (AlertKind::TagNear, "tag"),
            (AlertKind::Tamper, "tamper"),
            (AlertKind::PowerLoss, "power_loss"),
            (AlertKind::LowBattery, "low_battery"),
            (AlertKind::Silent, "silent"),
            (AlertKind::BadSignatures, "bad_signatures"),
            (AlertKind::OrderEnding, "order_ending"),
            (AlertKind::MessagesMissing, "messages_missing"),
            (AlertKind::ReviewDue, "review_due"),
        ];
        for (kind, class) in table {
            assert_eq!(class_of(*kind), *class, "{kind:?}");
        }
    }

    #[test]
    fn an_order_ending_is_its_own_incident() {
        assert_eq!(order_ending("o1"), "order_ending:o1");
        assert_ne!(order_ending("o1"), order_ending("o2"));
    }

    #[test]
    fn a_review_reminder_is_one_incident_per_case_and_review_date() {
        let day = |s: &str| s.parse::<crate::domain::Day>().unwrap();
        assert_eq!(
            review_due("c1", day("2026-12-01")),
            "review_due:c1:2026-12-01"
        );
        assert_ne!(
            review_due("c1", day("2026-12-01")),
            review_due("c1", day("2027-03-01"))
        );
        assert_ne!(
            review_due("c1", day("2026-12-01")),
            review_due("c2", day("2026-12-01"))
        );
    }

    type Origin = (u32, u32);

    #[test]
    fn a_cancel_marks_an_alert_only_when_pressed_after_every_alarm_of_it() {
        #[rustfmt::skip]
        let table: &[(&str, Origin, Option<Origin>, bool)] = &[
            ("after the alarm", (1, 11), Some((1, 10)), true),
            ("before the alarm, arriving late", (1, 9), Some((1, 10)), false),
            ("from an older boot than the alarm", (1, 500), Some((2, 3)), false),
            ("from a newer boot than the alarm", (3, 0), Some((2, 900)), true),
            ("an alert no message of the device opened", (1, 1), None, true),
        ];
        for (name, cancel, alarm, marks) in table {
            assert_eq!(cancel_marks(*cancel, *alarm), *marks, "{name}");
        }
    }
}
