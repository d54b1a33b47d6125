//! Triage: what happened to an issued device → what the backend must do (the table of
//! kinds and priorities in docs/policy.md), as one pure function.

use super::{Decision, PolicyConfig};
use crate::domain::correlate::{self, DeviceContext};
use crate::domain::geo;
use crate::domain::{rfc3339, AlertKind, DeviceKind, Millis, Position, Priority, Reason};
use crate::protocol::AlarmKind;

/// Something that happened to an issued device.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Alarm {
        kind: AlarmKind,
        position: Option<Position>,
        battery: Option<u8>,
    },
    Heartbeat {
        battery: u8,
        charging: bool,
    },
    /// A position report; for a tag this is where the restrained person is.
    Position(Position),
    /// The threshold of bad signatures was reached.
    BadSignatures {
        count: u32,
    },
    /// The threshold of missing messages was reached.
    MessagesMissing {
        count: u64,
    },
    /// Nothing heard for `2 × interval + grace`.
    Silent {
        last_heard: Millis,
        interval_s: u32,
        grace_s: u64,
    },
}

/// Last known positions of the alarm devices of the tag's case, for proximity.
pub type AlarmPositions<'a> = &'a [(String, Position)];

pub fn triage(
    policy: &PolicyConfig,
    ctx: &DeviceContext,
    trigger: &Trigger,
    at: Millis,
    alarm_positions: AlarmPositions,
) -> Decision {
    let elevated = ctx.case.risk.is_elevated();
    let raise =
        |kind, priority, position: Option<Position>, trigger: Vec<Reason>| Decision::Raise {
            kind,
            priority,
            position,
            trigger,
            context: correlate::reasons(ctx, position, at),
        };
    match trigger {
        Trigger::Alarm { kind, position, battery } => {
            let p = *position;
            match kind {
                // A tag is worn by the restrained person: its buttons are nobody's emergency.
                AlarmKind::Panic | AlarmKind::Fall if ctx.kind == DeviceKind::Tag => Decision::Nothing,
                AlarmKind::Panic => raise(AlertKind::Panic, Priority::P1, p, vec![Reason::new("panic_pressed", "Panic button pressed")]),
                AlarmKind::Fall => raise(AlertKind::Fall, Priority::P1, p, vec![Reason::new("fall_detected", "Fall detected")]),
                AlarmKind::Tamper | AlarmKind::PowerLoss => {
                    let (alert, what) = if *kind == AlarmKind::Tamper {
                        (AlertKind::Tamper, Reason::new("tamper_detected", "Tamper detected on the device"))
                    } else {
                        (AlertKind::PowerLoss, Reason::new("power_lost", "The device lost its power"))
                    };
                    let mut first = vec![what];
                    let priority = if elevated {
                        first.push(raised_by_risk(Priority::P1, ctx));
                        Priority::P1
                    } else {
                        Priority::P2
                    };
                    raise(alert, priority, p, first)
                }
                AlarmKind::LowBattery => {
                    let what = match battery {
                        Some(b) => Reason::new(
                            "low_battery_reported",
                            format!("The device reports a low battery ({b} %)"),
                        )
                        .with("battery_pct", *b),
                        None => Reason::new("low_battery_reported", "The device reports a low battery"),
                    };
                    raise(AlertKind::LowBattery, Priority::P4, p, vec![what])
                }
                AlarmKind::Cancel => Decision::MarkCancel,
                AlarmKind::Test => Decision::RecordTest,
            }
        }
        Trigger::Heartbeat { battery, charging } => {
            if !charging && *battery < policy.low_battery_pct {
                raise(
                    AlertKind::LowBattery,
                    Priority::P4,
                    None,
                    vec![Reason::new(
                        "low_battery_heartbeat",
                        format!("Battery at {battery} % in the last heartbeat"),
                    )
                    .with("battery_pct", *battery)],
                )
            } else {
                Decision::Nothing
            }
        }
        Trigger::BadSignatures { count } => raise(
            AlertKind::BadSignatures,
            Priority::P2,
            None,
            vec![Reason::new(
                "bad_signatures",
                format!(
                    "{count} messages with a bad signature within {} min: the device may have been tampered with",
                    policy.bad_signature_window_s / 60
                ),
            )
            .with("count", *count)
            .with("window_min", policy.bad_signature_window_s / 60)],
        ),
        Trigger::MessagesMissing { count } => raise(
            AlertKind::MessagesMissing,
            Priority::P4,
            None,
            vec![Reason::new(
                "messages_missing",
                format!(
                    "{count} messages from the device never arrived within {} min: check its coverage and connection",
                    policy.messages_missing_window_s / 60
                ),
            )
            .with("count", *count)
            .with("window_min", policy.messages_missing_window_s / 60)],
        ),
        Trigger::Silent {
            last_heard,
            interval_s,
            grace_s,
        } => {
            let mut first = vec![Reason::new(
                "silent",
                format!(
                    "No message from the device since {} (heartbeat every {interval_s} s, grace {grace_s} s): the holder may be unprotected",
                    rfc3339(*last_heard)
                ),
            )
            .with("last_heard_at", rfc3339(*last_heard))
            .with("hb_s", *interval_s)
            .with("grace_s", *grace_s)];
            let priority = if elevated {
                first.push(raised_by_risk(Priority::P2, ctx));
                Priority::P2
            } else {
                Priority::P3
            };
            raise(AlertKind::Silent, priority, None, first)
        }
        Trigger::Position(p) => {
            if ctx.kind != DeviceKind::Tag {
                return Decision::Nothing;
            }
            tag_position(policy, ctx, *p, at, alarm_positions, raise)
        }
    }
}

/// An alarm taken in after its seq had left the anti-replay window: the device repeated it
/// because the first copy was lost, so it may have been pressed well before now. Said, with
/// the device's own time, so an officer does not take it for a fresh one.
pub fn arrived_late(decision: Decision, device_ts: Millis) -> Decision {
    let Decision::Raise {
        kind,
        priority,
        position,
        mut trigger,
        context,
    } = decision
    else {
        return decision;
    };
    trigger.push(
        Reason::new(
            "arrived_late",
            format!(
                "Arrived late: the device repeated it after the first copy was lost; sent at {} by the device's clock",
                rfc3339(device_ts)
            ),
        )
        .with("device_time", rfc3339(device_ts)),
    );
    Decision::Raise {
        kind,
        priority,
        position,
        trigger,
        context,
    }
}

/// The case's risk lifted the priority: said, since an officer may wonder why.
fn raised_by_risk(priority: Priority, ctx: &DeviceContext) -> Reason {
    Reason::new(
        "priority_by_risk",
        format!(
            "Priority {} because the case risk is {}",
            priority.get(),
            ctx.case.risk.as_str()
        ),
    )
    .with("priority", priority.get())
    .with("risk", ctx.case.risk.as_str())
}

/// A tag's position: inside a zone of its order, or near the protected person's device.
fn tag_position(
    policy: &PolicyConfig,
    ctx: &DeviceContext,
    p: Position,
    at: Millis,
    alarm_positions: AlarmPositions,
    raise: impl Fn(AlertKind, Priority, Option<Position>, Vec<Reason>) -> Decision,
) -> Decision {
    let Some(order) = ctx.tag_order(at) else {
        return Decision::Nothing;
    };
    let placement = correlate::place(order.zones.iter(), None, p);
    if let Some(zone) = placement.inside.first() {
        return raise(
            AlertKind::TagInZone,
            Priority::P1,
            Some(p),
            vec![Reason::new(
                "tag_in_zone",
                format!(
                    "Restrained person {} (tag {}) is inside exclusion zone '{zone}'",
                    order.restrained.name, ctx.device_id
                ),
            )
            .with("restrained", order.restrained.name.as_str())
            .with("tag", ctx.device_id.as_str())
            .with("zone", zone.as_str())],
        );
    }
    let nearest = alarm_positions
        .iter()
        .map(|(id, q)| (id, geo::distance_m((p.lat, p.lon), (q.lat, q.lon))))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match nearest {
        Some((device, d)) if d <= policy.proximity_m => raise(
            AlertKind::TagNear,
            Priority::P1,
            Some(p),
            vec![Reason::new(
                "tag_near",
                format!(
                    "Restrained person {} (tag {}) is {} from the last known position of alarm device {device}",
                    order.restrained.name,
                    ctx.device_id,
                    geo::describe_distance(d)
                ),
            )
            .with("restrained", order.restrained.name.as_str())
            .with("tag", ctx.device_id.as_str())
            .with("distance_m", d.round() as i64)
            .with("device", device.as_str())],
        ),
        _ => Decision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::correlate::tests::{context, HOME};
    use crate::domain::{Area, Risk, Zone};

    fn decide(risk: Risk, trigger: Trigger) -> Decision {
        triage(
            &PolicyConfig::default(),
            &context(risk),
            &trigger,
            1_000,
            &[],
        )
    }

    fn alarm(kind: AlarmKind) -> Trigger {
        Trigger::Alarm {
            kind,
            position: None,
            battery: None,
        }
    }

    fn priority(d: &Decision) -> (AlertKind, u8) {
        match d {
            Decision::Raise { kind, priority, .. } => (*kind, priority.get()),
            other => panic!("no alert: {other:?}"),
        }
    }

    #[test]
    fn a_panic_from_an_alarm_device_is_priority_1() {
        assert_eq!(
            priority(&decide(Risk::Low, alarm(AlarmKind::Panic))),
            (AlertKind::Panic, 1)
        );
    }

    #[test]
    fn a_fall_is_priority_1() {
        assert_eq!(
            priority(&decide(Risk::Low, alarm(AlarmKind::Fall))),
            (AlertKind::Fall, 1)
        );
    }

    #[test]
    fn tamper_and_power_loss_are_priority_2_on_a_low_or_medium_risk_case() {
        for risk in [Risk::Low, Risk::Medium] {
            assert_eq!(
                priority(&decide(risk, alarm(AlarmKind::Tamper))),
                (AlertKind::Tamper, 2)
            );
            assert_eq!(
                priority(&decide(risk, alarm(AlarmKind::PowerLoss))),
                (AlertKind::PowerLoss, 2)
            );
        }
    }

    #[test]
    fn tamper_and_power_loss_are_priority_1_on_a_high_or_critical_risk_case() {
        for risk in [Risk::High, Risk::Critical] {
            assert_eq!(
                priority(&decide(risk, alarm(AlarmKind::Tamper))),
                (AlertKind::Tamper, 1)
            );
            assert_eq!(
                priority(&decide(risk, alarm(AlarmKind::PowerLoss))),
                (AlertKind::PowerLoss, 1)
            );
        }
    }

    #[test]
    fn a_low_battery_alarm_is_priority_4() {
        assert_eq!(
            priority(&decide(Risk::Critical, alarm(AlarmKind::LowBattery))),
            (AlertKind::LowBattery, 4)
        );
    }

    #[test]
    fn a_heartbeat_below_15_percent_is_priority_4_unless_charging() {
        let low = Trigger::Heartbeat {
            battery: 14,
            charging: false,
        };
        assert_eq!(
            priority(&decide(Risk::Low, low)),
            (AlertKind::LowBattery, 4)
        );
        let charging = Trigger::Heartbeat {
            battery: 14,
            charging: true,
        };
        assert_eq!(decide(Risk::Low, charging), Decision::Nothing);
        let fine = Trigger::Heartbeat {
            battery: 15,
            charging: false,
        };
        assert_eq!(decide(Risk::Low, fine), Decision::Nothing);
    }

    #[test]
    fn repeated_bad_signatures_are_priority_2() {
        let d = decide(Risk::Low, Trigger::BadSignatures { count: 3 });
        assert_eq!(priority(&d), (AlertKind::BadSignatures, 2));
    }

    #[test]
    fn many_missing_messages_are_a_priority_4_technical_alert() {
        let d = decide(Risk::Critical, Trigger::MessagesMissing { count: 20 });
        assert_eq!(priority(&d), (AlertKind::MessagesMissing, 4));
    }

    #[test]
    fn an_alarm_that_arrived_late_says_so_and_keeps_its_priority() {
        let d = arrived_late(decide(Risk::Low, alarm(AlarmKind::Panic)), 0);
        assert_eq!(priority(&d), (AlertKind::Panic, 1));
        let Decision::Raise { trigger, .. } = d else {
            panic!()
        };
        assert_eq!(trigger[0].code, "panic_pressed");
        assert_eq!(trigger[1].code, "arrived_late");
        assert_eq!(
            arrived_late(Decision::MarkCancel, 0),
            Decision::MarkCancel,
            "only an alert has reasons to add to"
        );
    }

    #[test]
    fn a_silent_device_is_priority_3_or_2_on_a_high_or_critical_risk_case() {
        let silent = Trigger::Silent {
            last_heard: 0,
            interval_s: 60,
            grace_s: 30,
        };
        for (risk, p) in [
            (Risk::Low, 3),
            (Risk::Medium, 3),
            (Risk::High, 2),
            (Risk::Critical, 2),
        ] {
            assert_eq!(
                priority(&decide(risk, silent.clone())),
                (AlertKind::Silent, p)
            );
        }
    }

    #[test]
    fn a_test_raises_no_alert_and_is_recorded() {
        assert_eq!(
            decide(Risk::High, alarm(AlarmKind::Test)),
            Decision::RecordTest
        );
    }

    #[test]
    fn a_cancel_only_marks_the_open_alert() {
        assert_eq!(
            decide(Risk::High, alarm(AlarmKind::Cancel)),
            Decision::MarkCancel
        );
    }

    #[test]
    fn the_reasons_of_a_panic_start_with_the_trigger_then_the_case() {
        let Decision::Raise {
            trigger, context, ..
        } = decide(Risk::High, alarm(AlarmKind::Panic))
        else {
            panic!()
        };
        assert_eq!(
            trigger,
            vec![Reason::new("panic_pressed", "Panic button pressed")]
        );
        assert_eq!(context[0].text, "Case 2026-4711: risk level high");
        assert!(context[1].text.contains("Erik Nilsson"));
    }

    fn tag_context() -> DeviceContext {
        let mut ctx = context(Risk::High);
        ctx.kind = DeviceKind::Tag;
        ctx.device_id = "tag-1".into();
        ctx.orders[0].tag_device_id = Some("tag-1".into());
        ctx.orders[0].zones = vec![Zone {
            name: "Home".into(),
            area: Area::Circle {
                centre: HOME,
                radius_m: 200.0,
            },
        }];
        ctx
    }

    #[test]
    fn a_tag_inside_an_exclusion_zone_of_its_order_is_priority_1() {
        let p = Position::new(HOME.0, HOME.1, None).unwrap();
        let d = triage(
            &PolicyConfig::default(),
            &tag_context(),
            &Trigger::Position(p),
            1_000,
            &[],
        );
        assert_eq!(priority(&d), (AlertKind::TagInZone, 1));
    }

    #[test]
    fn a_tag_within_500_m_of_the_protected_persons_device_is_priority_1() {
        let far_from_home = Position::new(59.40, 18.10, None).unwrap();
        let near = Position::new(59.4030, 18.10, None).unwrap();
        let positions = vec![("dev-001".to_owned(), near)];
        let d = triage(
            &PolicyConfig::default(),
            &tag_context(),
            &Trigger::Position(far_from_home),
            1_000,
            &positions,
        );
        assert_eq!(priority(&d), (AlertKind::TagNear, 1));
    }

    #[test]
    fn a_tag_far_from_zones_and_devices_raises_nothing() {
        let far = Position::new(59.40, 18.10, None).unwrap();
        let positions = vec![(
            "dev-001".to_owned(),
            Position::new(59.50, 18.10, None).unwrap(),
        )];
        let d = triage(
            &PolicyConfig::default(),
            &tag_context(),
            &Trigger::Position(far),
            1_000,
            &positions,
        );
        assert_eq!(d, Decision::Nothing);
    }

    #[test]
    fn a_panic_from_a_tag_raises_nothing_but_its_tamper_does() {
        let ctx = tag_context();
        let policy = PolicyConfig::default();
        assert_eq!(
            triage(&policy, &ctx, &alarm(AlarmKind::Panic), 1_000, &[]),
            Decision::Nothing
        );
        assert_eq!(
            priority(&triage(
                &policy,
                &ctx,
                &alarm(AlarmKind::Tamper),
                1_000,
                &[]
            )),
            (AlertKind::Tamper, 1)
        );
    }

    #[test]
    fn a_position_from_an_alarm_device_raises_nothing() {
        let p = Position::new(HOME.0, HOME.1, None).unwrap();
        assert_eq!(decide(Risk::High, Trigger::Position(p)), Decision::Nothing);
    }
}
