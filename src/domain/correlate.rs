//! Correlation: what an officer needs to know about a device's message, in plain words.
//!
//! Works on the in-memory context of an issued device (its case, the case's orders and
//! zones, the registered address); it never touches the database.

use super::geo::{self, Relation};
use super::{rfc3339, Address, Case, DeviceKind, Millis, Order, Position, Reason, Zone};

/// Everything known about an issued device that correlation and triage need.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    pub device_id: String,
    pub kind: DeviceKind,
    pub case: Case,
    /// The protected person's registered address, when one is on file.
    pub address: Option<Address>,
    /// Every order of the case; which are in force is decided per message.
    pub orders: Vec<Order>,
}

impl DeviceContext {
    pub fn orders_in_force(&self, at: Millis) -> impl Iterator<Item = &Order> {
        self.orders.iter().filter(move |o| o.in_force_at(at))
    }

    /// For a tag: the order that binds the restrained person wearing it.
    pub fn tag_order(&self, at: Millis) -> Option<&Order> {
        self.orders_in_force(at)
            .find(|o| o.tag_device_id.as_deref() == Some(self.device_id.as_str()))
    }
}

/// A position placed among the zones of the orders in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Names of the zones the position lies in.
    pub inside: Vec<String>,
    /// The nearest zone it is outside of, and how far from its edge.
    pub nearest_outside: Option<(String, f64)>,
    pub from_address_m: Option<f64>,
}

pub fn place<'a>(
    zones: impl Iterator<Item = &'a Zone>,
    address: Option<&Address>,
    p: Position,
) -> Placement {
    let mut inside = Vec::new();
    let mut nearest: Option<(String, f64)> = None;
    for zone in zones {
        match geo::relate(&zone.area, (p.lat, p.lon)) {
            Relation::Inside => inside.push(zone.name.clone()),
            Relation::Outside(d) => {
                if nearest.as_ref().is_none_or(|(_, best)| d < *best) {
                    nearest = Some((zone.name.clone(), d));
                }
            }
        }
    }
    Placement {
        inside,
        nearest_outside: nearest,
        from_address_m: address.map(|a| geo::distance_m((p.lat, p.lon), (a.lat, a.lon))),
    }
}

/// The reasons correlation adds to an alert: the case's risk, every order in force with its
/// restrained person, and where the position lies.
pub fn reasons(ctx: &DeviceContext, position: Option<Position>, at: Millis) -> Vec<Reason> {
    let mut out = vec![case_risk(&ctx.case)];
    let in_force: Vec<&Order> = ctx.orders_in_force(at).collect();
    if in_force.is_empty() {
        out.push(Reason::new(
            "no_order_in_force",
            "No restraining order in force",
        ));
    }
    for order in &in_force {
        let r = &order.restrained;
        let until = &rfc3339(order.valid_to)[..10];
        let mut text = format!(
            "Restraining order ({}) in force until {until}: restrained person {}",
            order.kind.as_str(),
            r.name
        );
        for extra in [&r.description, &r.vehicle].into_iter().flatten() {
            text.push_str(", ");
            text.push_str(extra);
        }
        out.push(
            Reason::new("order_in_force", text)
                .with("order_kind", order.kind.as_str())
                .with("valid_to", rfc3339(order.valid_to))
                .with("restrained", r.name.as_str())
                .with("description", r.description.clone())
                .with("vehicle", r.vehicle.clone()),
        );
    }
    match position {
        None => out.push(Reason::new("no_position", "No position in the message")),
        Some(p) => {
            let placement = place(
                in_force.iter().flat_map(|o| o.zones.iter()),
                ctx.address.as_ref(),
                p,
            );
            for name in &placement.inside {
                out.push(
                    Reason::new(
                        "inside_zone",
                        format!("Position is inside exclusion zone '{name}'"),
                    )
                    .with("zone", name.as_str()),
                );
            }
            if placement.inside.is_empty() {
                if let Some((name, d)) = &placement.nearest_outside {
                    out.push(
                        Reason::new(
                            "distance_to_zone",
                            format!(
                                "Position is {} from exclusion zone '{name}'",
                                geo::describe_distance(*d)
                            ),
                        )
                        .with("zone", name.as_str())
                        .with("distance_m", d.round() as i64),
                    );
                }
            }
            if let Some(d) = placement.from_address_m {
                out.push(
                    Reason::new(
                        "distance_to_address",
                        format!(
                            "Position is {} from the registered address",
                            geo::describe_distance(d)
                        ),
                    )
                    .with("distance_m", d.round() as i64),
                );
            }
        }
    }
    out
}

/// The case and its risk level: the first context line of every alert of a case.
pub fn case_risk(case: &Case) -> Reason {
    Reason::new(
        "case_risk",
        format!("Case {}: risk level {}", case.reference, case.risk.as_str()),
    )
    .with("reference", case.reference.as_str())
    .with("risk", case.risk.as_str())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Area, OrderKind, Restrained, Risk};

    pub const HOME: (f64, f64) = (59.3326, 18.0649);

    pub fn context(risk: Risk) -> DeviceContext {
        DeviceContext {
            device_id: "dev-001".into(),
            kind: DeviceKind::Alarm,
            case: Case {
                id: "c1".into(),
                reference: "2026-4711".into(),
                person_id: "p1".into(),
                risk,
                region: "Stockholm".into(),
                response_plan: None,
                relatives: vec![],
                closed_at: None,
            },
            address: Some(Address {
                text: "Drottninggatan 1".into(),
                lat: HOME.0,
                lon: HOME.1,
            }),
            orders: vec![Order {
                id: "o1".into(),
                case_id: "c1".into(),
                kind: OrderKind::ContactBan,
                restrained: Restrained {
                    name: "Erik Nilsson".into(),
                    description: Some("tall, dark jacket".into()),
                    vehicle: Some("black Volvo ABC123".into()),
                    photo_ref: None,
                },
                valid_from: 0,
                valid_to: 2_000_000_000_000,
                zones: vec![Zone {
                    name: "Home".into(),
                    area: Area::Circle {
                        centre: HOME,
                        radius_m: 300.0,
                    },
                }],
                tag_device_id: None,
            }],
        }
    }

    #[test]
    fn reasons_name_the_risk_the_order_and_the_restrained_person() {
        let r = texts(reasons(&context(Risk::High), None, 1_000));
        assert_eq!(r[0], "Case 2026-4711: risk level high");
        assert!(r[1].contains("contact_ban") && r[1].contains("Erik Nilsson"));
        assert!(r[1].contains("black Volvo ABC123"));
        assert_eq!(r[2], "No position in the message");
    }

    #[test]
    fn a_position_near_home_is_inside_the_home_zone_and_near_the_address() {
        let p = Position::new(59.3330, 18.0649, Some(10)).unwrap();
        let r = texts(reasons(&context(Risk::High), Some(p), 1_000));
        assert!(r.contains(&"Position is inside exclusion zone 'Home'".to_owned()));
        assert!(r.contains(&"Position is 40 m from the registered address".to_owned()));
    }

    #[test]
    fn a_position_across_town_is_measured_from_the_nearest_zone() {
        let p = Position::new(59.3430, 18.0649, None).unwrap();
        let r = texts(reasons(&context(Risk::Low), Some(p), 1_000));
        assert!(
            r.iter()
                .any(|l| l == "Position is 860 m from exclusion zone 'Home'"),
            "{r:?}"
        );
    }

    #[test]
    fn an_expired_order_does_not_count() {
        let r = texts(reasons(&context(Risk::Low), None, 2_000_000_000_001));
        assert!(r.contains(&"No restraining order in force".to_owned()));
    }

    pub fn texts(reasons: Vec<Reason>) -> Vec<String> {
        reasons.into_iter().map(|r| r.text).collect()
    }

    #[test]
    fn every_reason_carries_a_code_and_its_facts_for_a_console_to_translate() {
        let p = Position::new(59.3330, 18.0649, Some(10)).unwrap();
        let r = reasons(&context(Risk::High), Some(p), 1_000);
        let codes: Vec<&str> = r.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "case_risk",
                "order_in_force",
                "inside_zone",
                "distance_to_address"
            ]
        );
        assert_eq!(r[0].values["risk"], "high");
        assert_eq!(r[1].values["restrained"], "Erik Nilsson");
        assert_eq!(r[1].values["order_kind"], "contact_ban");
        assert_eq!(r[2].values["zone"], "Home");
        assert_eq!(
            r[3].values["distance_m"], 44,
            "in whole metres; the words round to 40 m"
        );
    }

    #[test]
    fn reasons_stored_as_plain_sentences_still_read() {
        let r = Reason::list_from_json(r#"["Panic button pressed",{"code":"no_position","text":"No position in the message"}]"#).unwrap();
        assert_eq!(r[0], Reason::new("text", "Panic button pressed"));
        assert_eq!(r[1].code, "no_position");
    }
}
