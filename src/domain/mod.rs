//! The police's world as plain data: persons, cases, orders, zones, devices, alerts, and the
//! pure rules over them (geo, correlation, and the alert policy).

pub mod correlate;
pub mod geo;
pub mod place;
pub mod policy;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Milliseconds since the Unix epoch, UTC; the one clock unit inside the backend.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 UTC with milliseconds, as the API speaks.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Risk level from the structured threat and risk assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Risk> {
        Some(match s {
            "low" => Risk::Low,
            "medium" => Risk::Medium,
            "high" => Risk::High,
            "critical" => Risk::Critical,
            _ => return None,
        })
    }
    /// High and critical cases get a faster answer to technical alarms and silence.
    pub fn is_elevated(self) -> bool {
        self >= Risk::High
    }
}

/// Alert priority: 1 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(u8);

impl Priority {
    pub const P1: Priority = Priority(1);
    pub const P2: Priority = Priority(2);
    pub const P3: Priority = Priority(3);
    pub const P4: Priority = Priority(4);

    pub fn new(n: u8) -> Option<Priority> {
        (1..=4).contains(&n).then_some(Priority(n))
    }
    pub fn get(self) -> u8 {
        self.0
    }
    /// The more urgent of two priorities.
    pub fn most_urgent(self, other: Priority) -> Priority {
        Priority(self.0.min(other.0))
    }
}

impl TryFrom<u8> for Priority {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Priority::new(n).ok_or_else(|| format!("priority {n} is not 1 to 4"))
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

/// A WGS84 position in decimal degrees, checked to be on the globe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
    /// Accuracy radius in metres (68 %), when the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_m: Option<u32>,
}

impl Position {
    pub fn new(lat: f64, lon: f64, acc_m: Option<u32>) -> Option<Position> {
        let ok = lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon);
        ok.then_some(Position { lat, lon, acc_m })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Address {
    pub text: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub protected_identity: bool,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub id: String,
    pub reference: String,
    pub person_id: String,
    pub risk: Risk,
    pub region: String,
    pub response_plan: Option<String>,
    /// People close to the protected person: who to call, who may also carry a device.
    pub relatives: Vec<Relative>,
    pub closed_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Relative {
    pub name: String,
    pub relation: Option<String>,
    pub phone: Option<String>,
}

/// The instrument a structured threat and risk assessment was made with. The names are the
/// instruments' own: PATRIARK (honour-related violence), SARA (spousal assault), SRA
/// (stalking); `other` for any other, and for a risk changed on the case without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AssessmentMethod {
    #[serde(rename = "PATRIARK")]
    Patriark,
    #[serde(rename = "SARA")]
    Sara,
    #[serde(rename = "SRA")]
    Sra,
    #[serde(rename = "other")]
    Other,
}

impl AssessmentMethod {
    pub const ALL: [AssessmentMethod; 4] = [
        AssessmentMethod::Patriark,
        AssessmentMethod::Sara,
        AssessmentMethod::Sra,
        AssessmentMethod::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentMethod::Patriark => "PATRIARK",
            AssessmentMethod::Sara => "SARA",
            AssessmentMethod::Sra => "SRA",
            AssessmentMethod::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<AssessmentMethod> {
        AssessmentMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A day of the calendar (`YYYY-MM-DD`), as a review date is given; days are UTC days.
pub type Day = chrono::NaiveDate;

/// The UTC day `ms` falls on.
pub fn day_of(ms: Millis) -> Day {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// One structured threat and risk assessment of a case. Kept as history: a new assessment
/// is a new one, never a change of an old one; the case's risk is the latest one's.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub id: i64,
    pub case_id: String,
    pub method: AssessmentMethod,
    pub risk: Risk,
    /// The case's risk before this assessment.
    pub previous_risk: Risk,
    /// The risk factors considered, each in a few words.
    pub factors: Vec<String>,
    pub summary: Option<String>,
    /// When it must be assessed again; `None` only for a risk changed on the case without
    /// an assessment before any assessment gave a date.
    pub next_review: Option<Day>,
    /// `None`: an operator at the command line.
    pub assessed_by: Option<String>,
    pub assessed_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    ContactBan,
    Extended,
    SpecialExtended,
    SharedResidence,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::ContactBan => "contact_ban",
            OrderKind::Extended => "extended",
            OrderKind::SpecialExtended => "special_extended",
            OrderKind::SharedResidence => "shared_residence",
        }
    }
    pub fn parse(s: &str) -> Option<OrderKind> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Restrained {
    pub name: String,
    pub description: Option<String>,
    pub vehicle: Option<String>,
    pub photo_ref: Option<String>,
}

/// An exclusion zone: the restrained person must not be inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Area {
    /// Outer ring of (lat, lon), first point not repeated at the end.
    Polygon(Vec<(f64, f64)>),
    Circle {
        centre: (f64, f64),
        radius_m: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    pub area: Area,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub case_id: String,
    pub kind: OrderKind,
    pub restrained: Restrained,
    pub valid_from: Millis,
    pub valid_to: Millis,
    pub zones: Vec<Zone>,
    pub tag_device_id: Option<String>,
}

impl Order {
    /// Only orders valid at the moment of the message count.
    pub fn in_force_at(&self, t: Millis) -> bool {
        self.valid_from <= t && t < self.valid_to
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Carried by the protected person or a relative.
    Alarm,
    /// Worn by a restrained person under a special extended order.
    Tag,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Alarm => "alarm",
            DeviceKind::Tag => "tag",
        }
    }
    pub fn parse(s: &str) -> Option<DeviceKind> {
        Some(match s {
            "alarm" => DeviceKind::Alarm,
            "tag" => DeviceKind::Tag,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    InStock,
    Issued,
    Returned,
    Lost,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::InStock => "in_stock",
            DeviceStatus::Issued => "issued",
            DeviceStatus::Returned => "returned",
            DeviceStatus::Lost => "lost",
        }
    }
    pub fn parse(s: &str) -> Option<DeviceStatus> {
        Some(match s {
            "in_stock" => DeviceStatus::InStock,
            "issued" => DeviceStatus::Issued,
            "returned" => DeviceStatus::Returned,
            "lost" => DeviceStatus::Lost,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Panic,
    Fall,
    Tamper,
    PowerLoss,
    LowBattery,
    Silent,
    BadSignatures,
    TagInZone,
    TagNear,
    OrderEnding,
    MessagesMissing,
    ReviewDue,
}

impl AlertKind {
    /// Every kind, in the order declared: `kind as usize` is its place here (the metrics
    /// count by it).
    pub const ALL: [AlertKind; 12] = [
        AlertKind::Panic,
        AlertKind::Fall,
        AlertKind::Tamper,
        AlertKind::PowerLoss,
        AlertKind::LowBattery,
        AlertKind::Silent,
        AlertKind::BadSignatures,
        AlertKind::TagInZone,
        AlertKind::TagNear,
        AlertKind::OrderEnding,
        AlertKind::MessagesMissing,
        AlertKind::ReviewDue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Panic => "panic",
            AlertKind::Fall => "fall",
            AlertKind::Tamper => "tamper",
            AlertKind::PowerLoss => "power_loss",
            AlertKind::LowBattery => "low_battery",
            AlertKind::Silent => "silent",
            AlertKind::BadSignatures => "bad_signatures",
            AlertKind::TagInZone => "tag_in_zone",
            AlertKind::TagNear => "tag_near",
            AlertKind::OrderEnding => "order_ending",
            AlertKind::MessagesMissing => "messages_missing",
            AlertKind::ReviewDue => "review_due",
        }
    }
    pub fn parse(s: &str) -> Option<AlertKind> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<AlertState> {
        Some(match s {
            "open" => AlertState::Open,
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    PoliceDispatched,
    FalseAlarm,
    Technical,
    Test,
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::PoliceDispatched => "police_dispatched",
            Outcome::FalseAlarm => "false_alarm",
            Outcome::Technical => "technical",
            Outcome::Test => "test",
            Outcome::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Outcome> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One reason behind an alert's priority. The `code` and its `values` let a console say it in
/// the officer's language; `text` says it in English for every other reader (API clients,
/// exports, logs), so an alert never depends on a translation table to be understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// What kind of reason, e.g. `panic_pressed`, `order_in_force`, `distance_to_address`.
    pub code: String,
    /// The reason's facts by name (distances in metres, times in RFC 3339, names as given).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The reason in English words.
    pub text: String,
}

impl Reason {
    pub fn new(code: &str, text: impl Into<String>) -> Reason {
        Reason {
            code: code.to_owned(),
            values: serde_json::Map::new(),
            text: text.into(),
        }
    }

    /// Adds one named fact; `None` adds nothing, so optional facts read naturally.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Reason {
        let value = value.into();
        if !value.is_null() {
            self.values.insert(name.to_owned(), value);
        }
        self
    }

    /// Reads a stored list. Alerts stored before reasons had codes hold plain sentences; they
    /// come back as code `text`, which every console shows as written.
    pub fn list_from_json(json: &str) -> Result<Vec<Reason>, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Coded(Reason),
            Plain(String),
        }
        let stored: Vec<Stored> = serde_json::from_str(json)?;
        Ok(stored
            .into_iter()
            .map(|s| match s {
                Stored::Coded(r) => r,
                Stored::Plain(text) => Reason::new("text", text),
            })
            .collect())
    }
}

/// What an officer sees and acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: i64,
    pub priority: Priority,
    pub kind: AlertKind,
    pub state: AlertState,
    pub case_id: Option<String>,
    pub device_id: Option<String>,
    pub region: Option<String>,
    pub first_at: Millis,
    pub last_at: Millis,
    pub count: i64,
    pub position: Option<Position>,
    pub reasons: Vec<Reason>,
    pub overdue: bool,
    /// A silent device heard again for two intervals; the alert stays until resolved.
    pub back_online: bool,
    pub cancel_pressed: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Millis>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<Millis>,
    pub outcome: Option<Outcome>,
    /// The alarm message that opened it, so feedback can name it to the device.
    pub origin: Option<(u32, u32)>,
}

#[cfg(test)]
impl Alert {
    /// An open panic alert of no case or device, for a test to change what it is about.
    pub fn open_panic(id: i64, priority: Priority, first_at: Millis) -> Alert {
        Alert {
            id,
            priority,
            kind: AlertKind::Panic,
            state: AlertState::Open,
            case_id: None,
            device_id: None,
            region: None,
            first_at,
            last_at: first_at,
            count: 1,
            position: None,
            reasons: Vec::new(),
            overdue: false,
            back_online: false,
            cancel_pressed: false,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            outcome: None,
            origin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_alert_kinds_holds_each_kind_at_its_own_place() {
        for (i, kind) in AlertKind::ALL.into_iter().enumerate() {
            // A new kind fails to compile here until it is in the list too.
            match kind {
                AlertKind::Panic
                | AlertKind::Fall
                | AlertKind::Tamper
                | AlertKind::PowerLoss
                | AlertKind::LowBattery
                | AlertKind::Silent
                | AlertKind::BadSignatures
                | AlertKind::TagInZone
                | AlertKind::TagNear
                | AlertKind::OrderEnding
                | AlertKind::MessagesMissing
                | AlertKind::ReviewDue => assert_eq!(kind as usize, i),
            }
        }
    }

    #[test]
    fn priority_one_is_the_most_urgent() {
        assert_eq!(Priority::P2.most_urgent(Priority::P1), Priority::P1);
        assert!(Priority::new(0).is_none() && Priority::new(5).is_none());
    }

    #[test]
    fn an_order_counts_from_its_start_until_its_end() {
        let o = Order {
            id: "o".into(),
            case_id: "c".into(),
            kind: OrderKind::ContactBan,
            restrained: Restrained {
                name: "X".into(),
                description: None,
                vehicle: None,
                photo_ref: None,
            },
            valid_from: 100,
            valid_to: 200,
            zones: vec![],
            tag_device_id: None,
        };
        assert!(
            !o.in_force_at(99) && o.in_force_at(100) && o.in_force_at(199) && !o.in_force_at(200)
        );
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = 1_764_320_000_123;
        assert_eq!(rfc3339(t), "2025-11-28T08:53:20.123Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }
}
