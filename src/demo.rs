//! `vakt demo`: seeded regions, cases, orders with zones around real Swedish addresses,
//! devices, and a simulated fleet (firmware-sim, a real MQTT client) that raises alarms.

use std::time::Duration;

use crate::app::cases::{self, NewCase};
use crate::app::devices::{self, IssueRequest, NewDevice};
use crate::app::orders::{self, NewOrder, RestrainedIn, ZoneIo};
use crate::app::persons::{self, NewPerson};
use crate::app::users;
use crate::app::{Actor, AppError, Ctx};
use crate::domain::{
    now_ms, rfc3339, Address, Area, DeviceKind, DeviceStatus, OrderKind, Risk, Zone,
};
use crate::store::Role;

const DAY_MS: i64 = 24 * 3600 * 1000;

struct DemoCase {
    reference: &'static str,
    person: &'static str,
    protected: bool,
    address: (&'static str, f64, f64),
    region: &'static str,
    risk: Risk,
    plan: &'static str,
    restrained: (&'static str, &'static str, Option<&'static str>),
    kind: OrderKind,
    /// Where the restrained person is usually to be found (for a tag, if any).
    restrained_at: (f64, f64),
}

const CASES: &[DemoCase] = &[
    DemoCase {
        reference: "DEMO-2026-0101",
        person: "Anna Lindqvist",
        protected: true,
        address: ("Drottninggatan 71, 111 36 Stockholm", 59.3366, 18.0612),
        region: "Stockholm",
        risk: Risk::High,
        plan: "Send a patrol at once. Call Anna on her mobile; if no answer, call her sister (relative on file).",
        restrained: ("Mikael Berg", "about 185 cm, short dark hair, often a grey hooded jacket", Some("black Volvo V70, ABC 123")),
        kind: OrderKind::Extended,
        restrained_at: (59.3121, 18.0739),
    },
    DemoCase {
        reference: "DEMO-2026-0102",
        person: "Sara Nilsson",
        protected: false,
        address: ("Kungsportsavenyen 10, 411 36 Göteborg", 57.7009, 11.9743),
        region: "Väst",
        risk: Risk::Medium,
        plan: "Call Sara first; send a patrol if she does not answer within one minute.",
        restrained: ("Johan Ek", "about 175 cm, beard, glasses", None),
        kind: OrderKind::ContactBan,
        restrained_at: (57.7210, 11.9390),
    },
    DemoCase {
        reference: "DEMO-2026-0103",
        person: "Leila Haddad",
        protected: true,
        address: ("Södra Förstadsgatan 20, 211 43 Malmö", 55.5985, 13.0040),
        region: "Syd",
        risk: Risk::Critical,
        plan: "Send the nearest patrol at once, blue lights. The restrained person wears an electronic tag.",
        restrained: ("Peter Holm", "about 190 cm, shaved head, tattoo on the left hand", Some("white VW Transporter, XYZ 789")),
        kind: OrderKind::SpecialExtended,
        restrained_at: (55.5700, 12.9900),
    },
    DemoCase {
        reference: "DEMO-2026-0104",
        person: "Eva Johansson",
        protected: false,
        address: ("Svartbäcksgatan 8, 753 20 Uppsala", 59.8610, 17.6389),
        region: "Mitt",
        risk: Risk::Low,
        plan: "Call Eva; send a patrol if the call-back fails.",
        restrained: ("Lars Öberg", "about 170 cm, grey hair", None),
        kind: OrderKind::ContactBan,
        restrained_at: (59.8400, 17.6500),
    },
];

/// One demo login.
pub struct DemoLogin {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// A device the simulated fleet plays.
pub struct DemoDevice {
    pub id: String,
    pub key_hex: String,
    pub home: (f64, f64),
}

/// Seeds the demo data (once; a second run reuses it) and sets fresh passwords for the demo
/// logins.
pub async fn seed(ctx: &Ctx) -> Result<(Vec<DemoLogin>, Vec<DemoDevice>), AppError> {
    let (store, vault) = (&ctx.store, ctx.directory.vault());
    let now = now_ms();
    // The demo acts as an operator would: its records are on the audit trail. Its logins
    // get fresh passwords on every start.
    let operator = &Actor::Operator;
    let mut logins = Vec::new();
    for (username, role) in [
        ("officer", Role::Officer),
        ("coordinator", Role::Coordinator),
        ("admin", Role::Admin),
    ] {
        let password = users::reset_demo_login(ctx, operator, username, role).await?;
        logins.push(DemoLogin {
            username: username.into(),
            password,
            role,
        });
    }
    let existing = store.cases().await?;
    for (n, c) in CASES.iter().enumerate() {
        if existing.iter().any(|e| e.reference == c.reference) {
            continue;
        }
        let person = persons::register(
            ctx,
            operator,
            NewPerson {
                name: c.person.into(),
                phone: Some(format!("+46 70 000 00 0{n}")),
                address: Some(Address {
                    text: c.address.0.into(),
                    lat: c.address.1,
                    lon: c.address.2,
                }),
                protected_identity: c.protected,
                region: Some(c.region.into()),
            },
        )
        .await?;
        let case = cases::open(
            ctx,
            operator,
            NewCase {
                reference: c.reference.into(),
                person_id: person.id.clone(),
                risk: c.risk,
                region: Some(c.region.into()),
                response_plan: Some(c.plan.into()),
                relatives: vec![crate::domain::Relative {
                    name: "Maria (sister)".into(),
                    relation: Some("sister".into()),
                    phone: Some(format!("+46 70 000 01 0{n}")),
                }],
            },
        )
        .await?;
        let home = (c.address.1, c.address.2);
        let tag_id = (c.kind == OrderKind::SpecialExtended).then(|| format!("demo-tag-{n}"));
        if let Some(tag) = &tag_id {
            add_device(ctx, tag, DeviceKind::Tag).await?;
        }
        let zones = [
            Zone {
                name: "Home".into(),
                area: Area::Circle {
                    centre: home,
                    radius_m: 300.0,
                },
            },
            Zone {
                name: "Workplace".into(),
                area: Area::Polygon(vec![
                    (home.0 + 0.010, home.1 + 0.010),
                    (home.0 + 0.010, home.1 + 0.018),
                    (home.0 + 0.015, home.1 + 0.018),
                    (home.0 + 0.015, home.1 + 0.010),
                ]),
            },
        ];
        let order = NewOrder {
            kind: c.kind,
            restrained: RestrainedIn {
                name: c.restrained.0.into(),
                description: Some(c.restrained.1.into()),
                vehicle: c.restrained.2.map(Into::into),
                photo_ref: None,
            },
            valid_from: rfc3339(now - 30 * DAY_MS),
            valid_to: rfc3339(now + 335 * DAY_MS),
            zones: zones.iter().map(ZoneIo::of).collect(),
            tag_device_id: tag_id.clone(),
        };
        orders::create(ctx, operator, &case.id, order).await?;
        let alarm_id = format!("demo-alarm-{n}");
        add_device(ctx, &alarm_id, DeviceKind::Alarm).await?;
        for device in std::iter::once(&alarm_id).chain(&tag_id) {
            let issue = IssueRequest {
                case_id: case.id.clone(),
                holder_person_id: person.id.clone(),
            };
            devices::issue(ctx, operator, device, &issue).await?;
        }
    }
    let mut devices = Vec::new();
    let cases = store.cases().await?;
    for d in store.devices().await? {
        let Some(demo) = CASES
            .iter()
            .enumerate()
            .find(|(n, _)| d.id.ends_with(&format!("-{n}")) && d.id.starts_with("demo-"))
        else {
            continue;
        };
        if d.status != DeviceStatus::Issued
            || !cases.iter().any(|c| Some(&c.id) == d.case_id.as_ref())
        {
            continue;
        }
        let home = if d.kind == DeviceKind::Tag {
            demo.1.restrained_at
        } else {
            (demo.1.address.1, demo.1.address.2)
        };
        let Ok(key) = vault.open(&d.key_hex, &d.id) else {
            continue;
        };
        devices.push(DemoDevice {
            id: d.id,
            key_hex: key.to_hex(),
            home,
        });
    }
    Ok((logins, devices))
}

async fn add_device(ctx: &Ctx, id: &str, kind: DeviceKind) -> Result<(), AppError> {
    let req = NewDevice {
        id: id.into(),
        kind,
        model: Some("Demo larmpaket".into()),
        hb_interval_s: None,
        supervision_class: None,
    };
    // The key is read back from the store with the others, for the simulated fleet.
    devices::add(ctx, &Actor::Operator, &req).await?;
    Ok(())
}

/// Runs the simulated fleet until `stop` says so: heartbeats every 30 s, an alarm about
/// every 30 s somewhere in the fleet, positions now and then.
pub async fn run_fleet(
    host: String,
    port: u16,
    devices: Vec<DemoDevice>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let fleet: Vec<firmware_sim::FleetDevice> = devices
        .into_iter()
        .filter_map(|d| {
            Some(firmware_sim::FleetDevice {
                key: d.key_hex.parse().ok()?,
                id: d.id,
                home: Some(d.home),
            })
        })
        .collect();
    let mut config = firmware_sim::FleetConfig::new(host, port, fleet);
    config.heartbeat = Duration::from_secs(30);
    config.alarm_every = Some(Duration::from_secs(30));
    config.position_every = Some(Duration::from_secs(120));
    config.stop = Some(stop);
    if let Err(e) = firmware_sim::run_fleet(config).await {
        tracing::error!(error = %e, "demo fleet stopped");
    }
}
