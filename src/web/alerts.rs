//! Alerts: the queue duty officers work, one alert's detail, acknowledging and resolving.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::cases::CaseOut;
use super::devices::{device_out, DeviceOut};
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::mask::{self, Sight};
use super::orders::OrderOut;
use super::persons::{reveal, AlertRevealQuery, PersonOut};
use super::AppState;
use crate::app::alerts;
use crate::directory::Index;
use crate::domain::{now_ms, Alert, AlertState, Outcome, Position, Risk};
use crate::store::{HistoryEntry, Role};

#[derive(Serialize, ToSchema, Clone)]
pub struct AlertOut {
    pub id: i64,
    pub priority: u8,
    pub kind: crate::domain::AlertKind,
    pub state: AlertState,
    pub case_id: Option<String>,
    pub case_reference: Option<String>,
    pub risk: Option<Risk>,
    pub region: Option<String>,
    pub device_id: Option<String>,
    pub first_at: String,
    pub last_at: String,
    pub count: i64,
    pub position: Option<Position>,
    /// Why this priority, in English words, in order: what happened, then the case, the
    /// orders in force and where the position lies.
    pub reasons: Vec<String>,
    /// The same reasons with a code and their facts, for a client that words them itself.
    pub reason_details: Vec<crate::domain::Reason>,
    /// What the holder's device has been told about this alarm (`received`, `accepted`,
    /// `resolved`); absent when no device message opened the alert.
    #[schema(value_type = Option<String>, example = "received")]
    pub feedback: Option<&'static str>,
    /// The position and the reasons that place it are withheld: a resolved alert of a
    /// person with a protected identity is position history. `?reason=` on the detail
    /// shows them (and is logged).
    pub position_masked: bool,
    /// Reasons were withheld: for a protected person without a reason, the distances from
    /// the position to the registered address and to the zones around it (which, over a
    /// few alarms, would locate the address); once resolved, every reason that places it.
    pub reasons_masked: bool,
    pub overdue: bool,
    /// For a silence alert: the device has been heard again for two intervals.
    pub back_online: bool,
    pub cancel_pressed: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub outcome: Option<Outcome>,
    /// The nearest listed town or district to the position (offline, GeoNames), and how
    /// far and which way the position lies from it; absent without a position, abroad or
    /// more than 50 km from every listed place.
    pub place: Option<crate::domain::place::NearestPlace>,
    /// From the registered address to the position, e.g. 1500 m W: "1.5 km W of home".
    /// Absent without a position or an address on file, and withheld for a protected
    /// person (the position plus this is the address; docs/location.md).
    pub from_home: Option<crate::domain::place::Vector>,
}

/// Where an alert's position lies, in the words and numbers an officer passes on.
#[derive(Serialize, ToSchema)]
pub struct LocationOut {
    /// WGS84 degrees, as the device reported.
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<u32>,
    pub sweref99tm: crate::domain::place::Sweref99Tm,
    pub place: Option<crate::domain::place::NearestPlace>,
    /// From the registered address to the position; absent without an address, and
    /// withheld for a protected person without a stated reason (`measures_masked`).
    pub from_home: Option<crate::domain::place::Vector>,
    /// The zone of an order in force the position is inside of, or else the nearest one.
    pub from_nearest_zone: Option<crate::domain::place::FromZone>,
    /// The way from the address and the distance to the zone were withheld: with the
    /// position they would give the protected address away. `?reason=` shows them.
    pub measures_masked: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct AlertQuery {
    /// `open`, `acknowledged` or `resolved`; several separated by commas. Default: open and
    /// acknowledged.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = [AlertOut], description = "In queue order: priority, then oldest first"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_alerts(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<Vec<AlertOut>>> {
    let actor = caller.actor();
    let alerts = alerts::queue(&s.app(), &actor, q.state.as_deref()).await?;
    let index = s.directory.snapshot();
    Ok(Json(
        alerts
            .iter()
            .map(|a| {
                mask::alert(
                    a,
                    &index,
                    Sight::unrevealed_to(&actor, &index, a.case_id.as_deref()),
                )
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct AlertDetail {
    pub alert: AlertOut,
    pub case: Option<CaseOut>,
    pub person: Option<PersonOut>,
    pub device: Option<DeviceOut>,
    pub orders: Vec<OrderOut>,
    pub history: Vec<HistoryEntry>,
    /// Other unresolved alerts of the same case (e.g. a second device).
    pub linked_alert_ids: Vec<i64>,
    /// Where the position lies; absent when there is none or it is withheld.
    pub location: Option<LocationOut>,
}

async fn alert_in_region(s: &AppState, caller: &Caller, id: i64) -> ApiResult<Alert> {
    Ok(alerts::in_region(&s.app(), &caller.actor(), id).await?)
}

#[utoipa::path(get, path = "/api/alerts/{id}", tag = "alerts", params(("id" = i64, Path), AlertRevealQuery),
    responses((status = 200, body = AlertDetail), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn get_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<AlertRevealQuery>,
) -> ApiResult<Json<AlertDetail>> {
    caller.require(&[Role::Officer, Role::Coordinator, Role::Investigator])?;
    let alert = alert_in_region(&s, &caller, id).await?;
    let reason = alert_reveal_reason(&caller, &alert, &q)?;
    let index = s.directory.snapshot();
    let case = match &alert.case_id {
        Some(id) => Some(s.store.case(id).await?),
        None => None,
    };
    // An alert without a case points to nobody: there is nothing to withhold.
    let mut sight = Sight::Full;
    let mut home = None;
    let person = match &case {
        Some(c) => {
            let p = s.store.person(&c.person_id).await?;
            sight = reveal(&s, &caller, reason.as_deref(), &p, Some(&c.id), true).await?;
            home = p.address.clone();
            Some(mask::person(&p, sight))
        }
        None => None,
    };
    let now = now_ms();
    let orders = match &case {
        Some(c) => s
            .store
            .orders_of_case(&c.id)
            .await?
            .into_iter()
            .filter(|o| o.in_force_at(now))
            .collect(),
        None => Vec::new(),
    };
    let device = match &alert.device_id {
        Some(d) => s
            .store
            .device(d)
            .await
            .ok()
            .map(|d| device_out(&s, &d, now)),
        None => None,
    };
    let linked = match &alert.case_id {
        Some(case_id) => s
            .store
            .alerts(&[AlertState::Open, AlertState::Acknowledged])
            .await?
            .into_iter()
            .filter(|a| a.case_id.as_deref() == Some(case_id) && a.id != alert.id)
            .map(|a| a.id)
            .collect(),
        None => Vec::new(),
    };
    s.store
        .audit(
            Some(&caller.username),
            "alert_viewed",
            Some(&alert.id.to_string()),
            alert.case_id.as_deref(),
            None,
            now,
        )
        .await?;
    let alert_out = mask::alert(&alert, &index, sight);
    Ok(Json(AlertDetail {
        history: s.store.alert_history(alert.id).await?,
        location: mask::location(&alert_out, home.as_ref(), &orders, sight),
        alert: alert_out,
        case: case.as_ref().map(|c| mask::case(c, sight)),
        person,
        device,
        orders: orders.iter().map(|o| mask::order(o, sight, now)).collect(),
        linked_alert_ids: linked,
    }))
}

/// The street address at an alert's position, from the configured geocoder.
#[derive(Serialize, ToSchema)]
pub struct StreetAddressOut {
    /// `found`; `none` (the geocoder knows no address there); `unavailable` (no answer
    /// within 2 s); `not_configured` (no `geocoder_url`); `no_position` (the alert has
    /// none, or it is withheld).
    #[schema(value_type = String, example = "found")]
    pub status: &'static str,
    pub text: Option<String>,
}

/// Asked by the console after it has shown the detail, so a slow or absent geocoder never
/// holds up an alert; the position is the one the list shows (a resolved protected
/// person's is withheld, and so is its address).
#[utoipa::path(get, path = "/api/alerts/{id}/street-address", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = StreetAddressOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn street_address(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<StreetAddressOut>> {
    caller.require(&[Role::Officer, Role::Coordinator, Role::Investigator])?;
    let alert = alert_in_region(&s, &caller, id).await?;
    let out = |status, text| Ok(Json(StreetAddressOut { status, text }));
    let index = s.directory.snapshot();
    let sight = Sight::unrevealed_to(&caller.actor(), &index, alert.case_id.as_deref());
    let Some(p) = mask::alert(&alert, &index, sight).position else {
        return out("no_position", None);
    };
    let Some(geocoder) = &s.geocoder else {
        return out("not_configured", None);
    };
    match geocoder.street_address(p.lat, p.lon).await {
        crate::geocode::Lookup::Found(text) => out("found", Some(text)),
        crate::geocode::Lookup::NoAddress => out("none", None),
        crate::geocode::Lookup::Unavailable => out("unavailable", None),
    }
}

/// The reason an alert's detail is asked with: the caller's own words, or, for the officer
/// handling the alert (`?handling=true`), one the server words after checking that the
/// caller is the one who acknowledged it. A client never supplies the handling reason.
fn alert_reveal_reason(
    caller: &Caller,
    alert: &Alert,
    q: &AlertRevealQuery,
) -> ApiResult<Option<String>> {
    if q.handling != Some(true) {
        return Ok(q.reason.clone());
    }
    if q.reason.as_deref().is_some_and(|r| !r.trim().is_empty()) {
        return Err(ApiError::invalid(
            "handling",
            "either a reason or handling, not both",
        ));
    }
    mask::handling_reason(alert, &caller.username)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "handling",
                "only the officer who acknowledged this alert, while it is acknowledged, reveals by handling it; state a reason instead",
            )
        })
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/api/alerts/{id}/ack", tag = "alerts", params(("id" = i64, Path)), request_body = Option<AckRequest>,
    responses((status = 200, body = AlertOut), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn ack_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AlertOut>> {
    let (ctx, actor) = (s.app(), caller.actor());
    // Who may handle it is told before what is wrong with the body.
    alerts::to_handle(&ctx, &actor, id).await?;
    // The body is optional: an empty one acknowledges without a note.
    let req: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        super::json::parse(&body)?
    };
    let alert = alerts::acknowledge(&ctx, &actor, id, req.note.as_deref()).await?;
    Ok(Json(unrevealed_alert(&alert, &s.directory.snapshot())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub outcome: Outcome,
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/api/alerts/{id}/resolve", tag = "alerts", params(("id" = i64, Path)), request_body = ResolveRequest,
    responses((status = 200, body = AlertOut), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn resolve_alert(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Body(req): Body<ResolveRequest>,
) -> ApiResult<Json<AlertOut>> {
    let alert = alerts::resolve(
        &s.app(),
        &caller.actor(),
        id,
        req.outcome,
        req.note.as_deref(),
    )
    .await?;
    Ok(Json(unrevealed_alert(&alert, &s.directory.snapshot())))
}

/// An alert as sent without a stated reason: lists, answers to changes, the live stream.
pub fn unrevealed_alert(a: &Alert, index: &Index) -> AlertOut {
    mask::alert(a, index, Sight::unrevealed(index, a.case_id.as_deref()))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(super::sse::stream))
        .routes(routes!(get_alert))
        .routes(routes!(ack_alert))
        .routes(routes!(resolve_alert))
        .routes(routes!(street_address))
}
