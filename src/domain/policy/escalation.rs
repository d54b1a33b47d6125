//! What time does to alerts and orders: an alert nobody acknowledged in time is flagged
//! overdue and raised, and an order about to end is brought to the case's officers. The same
//! [`Decision`] as a device's trigger, so every alert the backend opens or raises on its own
//! is decided here.

use super::Decision;
use crate::domain::correlate;
use crate::domain::{rfc3339, Alert, AlertKind, AlertState, Case, Millis, Order, Priority, Reason};

/// How long an open alert of priority 1, 2 and 3 may wait for an officer to acknowledge it;
/// priority 4 has no deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverdueAfter {
    pub p1_s: u64,
    pub p2_s: u64,
    pub p3_s: u64,
}

/// An open alert past its deadline: flagged overdue once, priority 2 raised to 1 and
/// priority 3 to 2, so the console announces it again.
pub fn overdue(after: OverdueAfter, alert: &Alert, now: Millis) -> Decision {
    if alert.state != AlertState::Open || alert.overdue {
        return Decision::Nothing;
    }
    let (limit_s, raised) = match alert.priority.get() {
        1 => (after.p1_s, Priority::P1),
        2 => (after.p2_s, Priority::P1),
        3 => (after.p3_s, Priority::P2),
        _ => return Decision::Nothing,
    };
    if now - alert.first_at < limit_s as Millis * 1000 {
        return Decision::Nothing;
    }
    let raised_to = (raised != alert.priority).then(|| raised.get());
    let note = Reason::new(
        "not_acknowledged",
        format!(
            "not acknowledged within {limit_s} s{}",
            raised_to
                .map(|p| format!("; priority raised to {p}"))
                .unwrap_or_default()
        ),
    )
    .with("limit_s", limit_s)
    .with("raised_to", raised_to);
    Decision::Escalate {
        priority: raised,
        note,
    }
}

/// An order in force, with zones, that ends within `within_days` of an open case: one
/// priority-4 alert, so nobody is surprised that its zones stop counting.
pub fn order_ending(order: &Order, case: &Case, within_days: u64, now: Millis) -> Decision {
    let horizon = now + within_days as Millis * 24 * 3600 * 1000;
    let due = order.in_force_at(now)
        && order.valid_to <= horizon
        && !order.zones.is_empty()
        && case.closed_at.is_none();
    if !due {
        return Decision::Nothing;
    }
    Decision::Raise {
        kind: AlertKind::OrderEnding,
        priority: Priority::P4,
        position: None,
        trigger: vec![Reason::new(
            "order_ending",
            format!(
                "Restraining order ({}) against {} ends {}; its exclusion zones stop counting then",
                order.kind.as_str(),
                order.restrained.name,
                &rfc3339(order.valid_to)[..16].replace('T', " ")
            ),
        )
        .with("order_kind", order.kind.as_str())
        .with("restrained", order.restrained.name.as_str())
        .with("valid_to", rfc3339(order.valid_to))],
        context: vec![correlate::case_risk(case)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::correlate::tests::context;
    use crate::domain::Risk;

    const S: Millis = 1000;
    const DAY: Millis = 24 * 3600 * S;
    const AFTER: OverdueAfter = OverdueAfter {
        p1_s: 30,
        p2_s: 120,
        p3_s: 600,
    };

    fn open_alert(priority: u8, first_at: Millis) -> Alert {
        Alert::open_panic(1, Priority::new(priority).unwrap(), first_at)
    }

    /// The priority it is raised to and the note's words, or `None` for no escalation.
    fn escalation(d: Decision) -> Option<(u8, String)> {
        match d {
            Decision::Escalate { priority, note } => Some((priority.get(), note.text)),
            Decision::Nothing => None,
            other => panic!("not an escalation: {other:?}"),
        }
    }

    /// The priority raised to and the note, when escalated.
    type Escalated = Option<(u8, &'static str)>;

    #[test]
    fn an_unacknowledged_alert_is_overdue_at_its_prioritys_deadline_and_raised() {
        #[rustfmt::skip]
        let table: &[(&str, u8, Millis, Escalated)] = &[
            ("priority 1 before 30 s", 1, 29 * S, None),
            ("priority 1 at 30 s", 1, 30 * S, Some((1, "not acknowledged within 30 s"))),
            ("priority 2 before 2 min", 2, 119 * S, None),
            ("priority 2 at 2 min, raised to 1", 2, 120 * S,
                Some((1, "not acknowledged within 120 s; priority raised to 1"))),
            ("priority 3 at 10 min, raised to 2", 3, 600 * S,
                Some((2, "not acknowledged within 600 s; priority raised to 2"))),
            ("priority 4 never", 4, 365 * DAY, None),
        ];
        for (name, priority, waited, want) in table {
            let got = escalation(overdue(AFTER, &open_alert(*priority, 0), *waited));
            let want = want.map(|(p, text)| (p, text.to_owned()));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn an_alert_already_overdue_or_acknowledged_is_not_escalated_again() {
        let mut flagged = open_alert(1, 0);
        flagged.overdue = true;
        assert_eq!(overdue(AFTER, &flagged, DAY), Decision::Nothing);
        let mut acknowledged = open_alert(1, 0);
        acknowledged.state = AlertState::Acknowledged;
        assert_eq!(overdue(AFTER, &acknowledged, DAY), Decision::Nothing);
    }

    #[test]
    fn an_order_in_force_with_zones_ending_within_the_days_raises_a_priority_4_reminder() {
        let ctx = context(Risk::High);
        let order = &ctx.orders[0];
        let now = order.valid_to - 3 * DAY;
        let Decision::Raise {
            kind,
            priority,
            trigger,
            context,
            ..
        } = order_ending(order, &ctx.case, 7, now)
        else {
            panic!("no reminder")
        };
        assert_eq!((kind, priority), (AlertKind::OrderEnding, Priority::P4));
        assert_eq!(trigger[0].code, "order_ending");
        assert!(
            trigger[0].text.contains("Erik Nilsson"),
            "{}",
            trigger[0].text
        );
        assert_eq!(context, vec![correlate::case_risk(&ctx.case)]);
    }

    #[test]
    fn an_order_far_from_its_end_ended_without_zones_or_of_a_closed_case_raises_nothing() {
        let ctx = context(Risk::High);
        let order = &ctx.orders[0];
        let soon = order.valid_to - 3 * DAY;
        let mut no_zones = order.clone();
        no_zones.zones.clear();
        let mut closed = ctx.case.clone();
        closed.closed_at = Some(0);
        #[rustfmt::skip]
        let table: &[(&str, &Order, &Case, Millis)] = &[
            ("ends in more than 7 days", order, &ctx.case, order.valid_to - 8 * DAY),
            ("has ended", order, &ctx.case, order.valid_to),
            ("has no zones", &no_zones, &ctx.case, soon),
            ("its case is closed", order, &closed, soon),
        ];
        for (name, order, case, now) in table {
            assert_eq!(
                order_ending(order, case, 7, *now),
                Decision::Nothing,
                "{name}"
            );
        }
    }
}
