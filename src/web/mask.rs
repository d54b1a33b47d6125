//! What leaves the API of a protected person's case: the one place where persons, cases,
//! orders and alerts become the views every endpoint and the live stream send.
//!
//! A person with a protected identity is kept from view unless the caller states a reason,
//! which is logged (see `persons::reveal`); for an investigator, every person is
//! (`Actor::needs_reason`). Protected with them is everything that points to
//! them: their name, phone and address; the names and phones of their relatives; the
//! response plan (free text: "call Anna on her mobile"); the geometry of the zones of their
//! orders (the "Home" circle is centred on the address); the distances from an alarm to the
//! address and to the zones (a few of them, with the positions, locate the address); and,
//! once an alert is resolved, its position and every reason that places it. An officer
//! still sees what sending help needs: the open alarm's position, the zone names and that
//! an alarm is inside one, the restrained person, the risk.
//!
//! Every view is built here, from a [`Sight`]: no endpoint builds its own, so a list cannot
//! show what its detail masks.

use crate::app::Actor;
use crate::directory::Index;
use crate::domain::geo::zone_to_geojson;
use crate::domain::place::{from_nearest_zone, nearest_place, Sweref99Tm, Vector};
use crate::domain::{rfc3339, Address, Alert, AlertState, Area, Assessment, Case, Order, Person};
use crate::protocol::Feedback;

use super::alerts::{AlertOut, LocationOut};
use super::cases::{AssessmentOut, CaseOut};
use super::orders::{OrderOut, ZoneOut};
use super::persons::PersonOut;

pub use crate::app::persons::MASK;

/// What one request may see of one case's protected data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sight {
    /// Not a protected person's, or the caller stated a reason (and it was logged).
    Full,
    /// A protected person's, and no reason was stated.
    Masked,
}

impl Sight {
    pub fn of(protected: bool, reason_stated: bool) -> Sight {
        if protected && !reason_stated {
            Sight::Masked
        } else {
            Sight::Full
        }
    }

    /// For views sent without a reason (lists, the live stream, the answers to changes),
    /// when the in-memory index says whose the case is. A case the index does not know yet
    /// (registered a moment ago on another instance) counts as protected.
    pub fn unrevealed(index: &Index, case_id: Option<&str>) -> Sight {
        Sight::of(index.case_is_protected(case_id), false)
    }

    /// As [`Sight::unrevealed`], for one actor: an investigator sees no one's details
    /// without a reason (`Actor::needs_reason`). A view without a case points to nobody.
    pub fn unrevealed_to(actor: &Actor, index: &Index, case_id: Option<&str>) -> Sight {
        let protected = index.case_is_protected(case_id);
        Sight::of(case_id.is_some() && actor.needs_reason(protected), false)
    }

    pub fn masked(self) -> bool {
        self == Sight::Masked
    }
}

/// Masked whenever the sight is: a protected person's without a reason, or anyone's for an
/// investigator without one.
pub fn person(p: &Person, sight: Sight) -> PersonOut {
    let masked = sight.masked();
    PersonOut {
        id: p.id.clone(),
        name: if masked { MASK.into() } else { p.name.clone() },
        phone: if masked { None } else { p.phone.clone() },
        address: if masked { None } else { p.address.clone() },
        protected_identity: p.protected_identity,
        masked,
        region: p.region.clone(),
    }
}

/// Relatives point to the protected person, and the response plan names them and the
/// places to go: both are withheld with the person.
pub fn case(c: &Case, sight: Sight) -> CaseOut {
    let masked = sight.masked();
    let mut relatives = c.relatives.clone();
    if masked {
        for r in &mut relatives {
            r.name = MASK.into();
            r.phone = None;
        }
    }
    CaseOut {
        id: c.id.clone(),
        reference: c.reference.clone(),
        person_id: c.person_id.clone(),
        risk: c.risk,
        region: c.region.clone(),
        response_plan: if masked {
            None
        } else {
            c.response_plan.clone()
        },
        relatives,
        masked,
        closed_at: c.closed_at.map(rfc3339),
    }
}

/// An assessment's factors and summary speak of the protected person's life ("has moved to
/// her sister's", "works nights at the hospital"): withheld with the person. The method, the
/// risk and the dates stay, as the case's risk does.
pub fn assessment(a: &Assessment, sight: Sight) -> AssessmentOut {
    let masked = sight.masked();
    AssessmentOut {
        id: a.id,
        case_id: a.case_id.clone(),
        method: a.method,
        risk: a.risk,
        previous_risk: a.previous_risk,
        factors: if masked {
            Vec::new()
        } else {
            a.factors.clone()
        },
        summary: if masked { None } else { a.summary.clone() },
        next_review: a.next_review.map(|d| d.to_string()),
        assessed_by: a.assessed_by.clone(),
        assessed_at: rfc3339(a.assessed_at),
        masked,
    }
}

/// Zones keep their names and shapes, which an officer needs to read "inside zone Home";
/// where they lie is withheld.
pub fn order(o: &Order, sight: Sight, now: crate::domain::Millis) -> OrderOut {
    let masked = sight.masked();
    OrderOut {
        id: o.id.clone(),
        case_id: o.case_id.clone(),
        kind: o.kind,
        restrained: o.restrained.clone(),
        valid_from: rfc3339(o.valid_from),
        valid_to: rfc3339(o.valid_to),
        zones: o
            .zones
            .iter()
            .map(|z| {
                let shape = match z.area {
                    Area::Polygon(_) => "polygon",
                    Area::Circle { .. } => "circle",
                };
                if masked {
                    return ZoneOut {
                        name: z.name.clone(),
                        shape,
                        geometry: None,
                        radius_m: None,
                        masked: true,
                    };
                }
                let (geometry, radius_m) = zone_to_geojson(z);
                ZoneOut {
                    name: z.name.clone(),
                    shape,
                    geometry: Some(geometry),
                    radius_m,
                    masked: false,
                }
            })
            .collect(),
        zones_masked: masked && !o.zones.is_empty(),
        tag_device_id: o.tag_device_id.clone(),
        in_force: o.in_force_at(now),
    }
}

/// Reasons that measure a position against the protected address or the zones around it:
/// with the alarm's position, a few of them locate the address.
const MEASURING_REASONS: [&str; 2] = ["distance_to_zone", "distance_to_address"];

/// Reasons that say where a position lies; withheld with the position of a resolved alert.
const PLACING_REASONS: [&str; 3] = ["inside_zone", "distance_to_zone", "distance_to_address"];

/// An open or acknowledged alert always shows where the alarm came from: the officer needs
/// it to send help. Once resolved, it is only where the protected person was, and is kept
/// from view like their address.
pub fn alert(a: &Alert, index: &Index, sight: Sight) -> AlertOut {
    let case = a.case_id.as_ref().and_then(|id| index.cases.get(id));
    let mut out = AlertOut {
        id: a.id,
        priority: a.priority.get(),
        kind: a.kind,
        state: a.state,
        case_id: a.case_id.clone(),
        case_reference: case.map(|c| c.reference.clone()),
        risk: case.map(|c| c.risk),
        region: a.region.clone(),
        device_id: a.device_id.clone(),
        first_at: rfc3339(a.first_at),
        last_at: rfc3339(a.last_at),
        count: a.count,
        position: a.position,
        reasons: Vec::new(),
        reason_details: a.reasons.clone(),
        feedback: feedback_told(a).map(Feedback::as_str),
        position_masked: false,
        reasons_masked: false,
        overdue: a.overdue,
        back_online: a.back_online,
        cancel_pressed: a.cancel_pressed,
        acknowledged_by: a.acknowledged_by.clone(),
        acknowledged_at: a.acknowledged_at.map(rfc3339),
        resolved_by: a.resolved_by.clone(),
        resolved_at: a.resolved_at.map(rfc3339),
        outcome: a.outcome,
        place: None,
        from_home: None,
    };
    if sight.masked() {
        let withheld: &[&str] = if a.state == AlertState::Resolved {
            out.position = None;
            out.position_masked = true;
            &PLACING_REASONS
        } else {
            &MEASURING_REASONS
        };
        let before = out.reason_details.len();
        out.reason_details
            .retain(|r| !withheld.contains(&r.code.as_str()));
        out.reasons_masked = out.reason_details.len() != before;
    }
    out.reasons = out.reason_details.iter().map(|r| r.text.clone()).collect();
    // Named from the position as sent: a withheld position names no place either.
    out.place = out.position.and_then(|p| nearest_place((p.lat, p.lon)));
    if !sight.masked() {
        out.from_home = out
            .position
            .zip(registered_address(a, index))
            .map(|(p, h)| Vector::between((h.lat, h.lon), (p.lat, p.lon)));
    }
    out
}

/// The address the alert's device was issued under, from the in-memory index: rows and
/// the stream are built without a query. A device since returned has none there; the
/// detail still reads it from the store.
fn registered_address<'a>(a: &Alert, index: &'a Index) -> Option<&'a Address> {
    let ctx = index
        .devices
        .get(a.device_id.as_deref()?)?
        .context
        .as_ref()?;
    if a.case_id.as_deref() != Some(ctx.case.id.as_str()) {
        return None;
    }
    ctx.address.as_ref()
}

/// Where an alert's position lies, for the detail: coordinates in both systems, the
/// nearest place, and the way from the registered address and from the nearest zone.
///
/// For a protected person without a stated reason the way from the address and the
/// zones' distances are withheld, like the `distance_to_*` reasons: the position plus
/// a distance and a bearing is the address itself, to the metre. The officer still sees
/// the position, the place, the zone's name and whether the alarm is inside it, which
/// is what sending a patrol needs; stating a reason (logged) shows the rest.
pub fn location(
    alert: &AlertOut,
    home: Option<&Address>,
    orders: &[Order],
    sight: Sight,
) -> Option<LocationOut> {
    let p = alert.position?;
    let at = (p.lat, p.lon);
    let masked = sight.masked();
    let mut from_nearest_zone = from_nearest_zone(orders.iter().flat_map(|o| o.zones.iter()), at);
    let mut measures_masked = false;
    if masked {
        if let Some(z) = from_nearest_zone.as_mut().filter(|z| !z.inside) {
            z.distance_m = None;
            z.bearing_deg = None;
            z.compass = None;
            measures_masked = true;
        }
        measures_masked |= home.is_some();
    }
    Some(LocationOut {
        lat: p.lat,
        lon: p.lon,
        accuracy_m: p.acc_m,
        sweref99tm: Sweref99Tm::of(p),
        place: alert.place.clone(),
        from_home: home
            .filter(|_| !masked)
            .map(|h| Vector::between((h.lat, h.lon), at)),
        from_nearest_zone,
        measures_masked,
    })
}

/// The officer who acknowledged an alert is the one calling the person its response plan
/// names: for them the reveal needs no typed reason, the server words it. Only while the
/// alert is acknowledged: once resolved, nobody is handling it any more.
pub fn handling_reason(a: &Alert, username: &str) -> Option<String> {
    (a.state == AlertState::Acknowledged && a.acknowledged_by.as_deref() == Some(username))
        .then(|| format!("handling alert {}", a.id))
}

/// The device is answered on every change of an alarm it raised (docs/protocol.md, section 9
/// "Feedback: `ack`"): `received` once stored, `accepted` at acknowledge, `resolved` at resolve.
fn feedback_told(a: &Alert) -> Option<Feedback> {
    a.origin?;
    Some(match a.state {
        AlertState::Open => Feedback::Received,
        AlertState::Acknowledged => Feedback::Accepted,
        AlertState::Resolved => Feedback::Resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, OrderKind, Relative, Restrained, Risk, Zone};

    fn protected_case() -> (Person, Case, Order) {
        let p = Person {
            id: "p1".into(),
            name: "Anna Lindqvist".into(),
            phone: Some("+46 70 123 45 67".into()),
            address: Some(Address {
                text: "Drottninggatan 71".into(),
                lat: 59.3366,
                lon: 18.0612,
            }),
            protected_identity: true,
            region: Some("Stockholm".into()),
        };
        let c = Case {
            id: "c1".into(),
            reference: "2026-1".into(),
            person_id: "p1".into(),
            risk: Risk::High,
            region: "Stockholm".into(),
            response_plan: Some("Call Anna on her mobile".into()),
            relatives: vec![Relative {
                name: "Karin".into(),
                relation: Some("sister".into()),
                phone: Some("+46 70 765 43 21".into()),
            }],
            closed_at: None,
        };
        let o = Order {
            id: "o1".into(),
            case_id: "c1".into(),
            kind: OrderKind::ContactBan,
            restrained: Restrained {
                name: "Mikael Berg".into(),
                description: None,
                vehicle: None,
                photo_ref: None,
            },
            valid_from: 0,
            valid_to: i64::MAX / 2,
            zones: vec![Zone {
                name: "Home".into(),
                area: Area::Circle {
                    centre: (59.3366, 18.0612),
                    radius_m: 300.0,
                },
            }],
            tag_device_id: None,
        };
        (p, c, o)
    }

    #[test]
    fn a_masked_view_of_a_protected_case_holds_nothing_that_points_to_the_person() {
        let (p, c, o) = protected_case();
        let text = serde_json::to_string(&(
            person(&p, Sight::Masked),
            case(&c, Sight::Masked),
            order(&o, Sight::Masked, 0),
        ))
        .unwrap();
        for secret in [
            "Anna",
            "123 45 67",
            "Drottninggatan",
            "59.33",
            "18.06",
            "Karin",
            "765",
            "mobile",
            "300",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("Home") && text.contains("circle") && text.contains("Mikael"));
    }

    #[test]
    fn a_full_view_shows_what_was_registered() {
        let (p, c, o) = protected_case();
        let text = serde_json::to_string(&(
            person(&p, Sight::Full),
            case(&c, Sight::Full),
            order(&o, Sight::Full, 0),
        ))
        .unwrap();
        for shown in [
            "Anna",
            "Drottninggatan",
            "Karin",
            "765",
            "mobile",
            "300",
            "59.3366",
        ] {
            assert!(text.contains(shown), "{shown} missing: {text}");
        }
    }

    #[test]
    fn only_the_officer_who_acknowledged_an_alert_is_handling_it_and_only_until_it_is_resolved() {
        let mut a = crate::domain::Alert {
            case_id: Some("c1".into()),
            ..crate::domain::Alert::open_panic(7, crate::domain::Priority::P1, 0)
        };
        assert_eq!(
            handling_reason(&a, "officer1"),
            None,
            "open: nobody handles it"
        );
        a.state = AlertState::Acknowledged;
        a.acknowledged_by = Some("officer1".into());
        assert_eq!(
            handling_reason(&a, "officer1").as_deref(),
            Some("handling alert 7")
        );
        assert_eq!(handling_reason(&a, "officer2"), None);
        a.state = AlertState::Resolved;
        assert_eq!(handling_reason(&a, "officer1"), None);
    }

    #[test]
    fn only_a_protected_person_without_a_reason_is_masked() {
        assert_eq!(Sight::of(true, false), Sight::Masked);
        assert_eq!(Sight::of(true, true), Sight::Full);
        assert_eq!(Sight::of(false, false), Sight::Full);
    }
}
