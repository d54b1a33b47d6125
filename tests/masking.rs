//! A protected person's data leaves the API only for a stated, logged reason: every
//! endpoint that returns a person, a case, an order or an alert is walked, the live stream
//! included, as officers and coordinators of the region would call it.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use vakt::store::Role;

/// Where the alarm is raised: inside the "Home" circle, away from the address itself.
const ALARM: (f64, f64) = (HOME.0 + 0.002, HOME.1 + 0.003);
const PLAN: &str = "Call Anna on her mobile, then send a patrol";

/// What points to the protected person, in any form an endpoint could send it.
const PROTECTED: [&str; 15] = [
    "Anna",
    "Lindqvist",
    "123 45 67",
    "Drottninggatan",
    "59.3366", // the address's latitude
    "Karin",
    "765 43 21",
    "her mobile",
    "\"coordinates\"", // zone geometry
    "\"radius_m\"",
    "distance_to_address",
    "distance_to_zone",
    "from the registered address",
    // The way from home: with the position, it is the address (docs/location.md).
    "\"from_home\":{",
    "\"measures_masked\":false",
];

/// What a resolved alert's position history would give away besides.
const PROTECTED_ONCE_RESOLVED: [&str; 6] = [
    "59.3386",
    "18.0642",
    "inside_zone",
    "Position is",
    // Named or projected, a position is still one.
    "\"place\":{",
    "sweref99tm",
];

struct Seeded {
    person: String,
    case: String,
    order: String,
    device: String,
}

async fn seed(app: &TestApp) -> (Seeded, IssuedDevice) {
    let d = app.issued_device("Stockholm").await;
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({
            "response_plan": PLAN,
            "relatives": [{"name": "Karin Lindqvist", "relation": "sister", "phone": "+46 70 765 43 21"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let orders = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}/orders?reason=setting-up", d.case_id),
        )
        .await;
    let seeded = Seeded {
        person: d.person_id.clone(),
        case: d.case_id.clone(),
        order: orders[0]["id"].as_str().unwrap().to_owned(),
        device: d.id.clone(),
    };
    (seeded, d)
}

fn assert_nothing_protected(what: &str, body: &str, resolved: bool) {
    for secret in PROTECTED {
        assert!(
            !body.contains(secret),
            "{what} sent {secret} without a reason: {body}"
        );
    }
    if resolved {
        for secret in PROTECTED_ONCE_RESOLVED {
            assert!(
                !body.contains(secret),
                "{what} sent {secret} of a resolved alert: {body}"
            );
        }
    }
}

async fn text(resp: reqwest::Response, what: &str) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "{what} gave {status}: {body}");
    body
}

/// Every reading endpoint of the person, case, orders, alert and devices, without a reason.
async fn walk_reads(
    app: &TestApp,
    client: &reqwest::Client,
    s: &Seeded,
    alert: i64,
    resolved: bool,
    walked: &mut BTreeSet<String>,
) {
    let mut paths = vec![
        (
            "GET /api/persons/{id}",
            format!("/api/persons/{}", s.person),
        ),
        ("GET /api/cases", "/api/cases".to_owned()),
        ("GET /api/cases/{id}", format!("/api/cases/{}", s.case)),
        (
            "GET /api/cases/{id}/orders",
            format!("/api/cases/{}/orders", s.case),
        ),
        ("GET /api/orders/{id}", format!("/api/orders/{}", s.order)),
        ("GET /api/alerts", "/api/alerts".to_owned()),
        (
            "GET /api/alerts",
            "/api/alerts?state=open,acknowledged,resolved".to_owned(),
        ),
        ("GET /api/alerts/{id}", format!("/api/alerts/{alert}")),
        ("GET /api/devices", "/api/devices".to_owned()),
        (
            "GET /api/devices/{id}",
            format!("/api/devices/{}", s.device),
        ),
        ("GET /api/status", "/api/status".to_owned()),
    ];
    let coordinator = client
        .get(app.url("/api/persons"))
        .send()
        .await
        .unwrap()
        .status()
        != 403;
    if coordinator {
        paths.push(("GET /api/persons", "/api/persons".to_owned()));
    }
    for (op, path) in paths {
        let body = text(client.get(app.url(&path)).send().await.unwrap(), &path).await;
        assert!(
            body.contains(&s.case) || !path.contains("case"),
            "{path} shows the case: {body}"
        );
        assert_nothing_protected(&path, &body, resolved);
        walked.insert(op.to_owned());
    }
}

/// Every operation the API document lists as answering with a person, case, order or
/// alert: a new one must be walked here too.
async fn operations_returning_protected_views(app: &TestApp) -> BTreeSet<String> {
    let doc = app.get(&app.anonymous, "/api/openapi.json").await;
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].to_string();
            let returns = [
                "PersonOut",
                "CaseOut",
                "CaseDetail",
                "OrderOut",
                "AlertOut",
                "AlertDetail",
            ]
            .iter()
            .any(|schema| responses.contains(&format!("/{schema}\"")));
            if returns {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops.insert("GET /api/alerts/stream".into());
    ops
}

/// The live stream as `client` sees it, collected as it arrives.
fn collect_stream(
    app: &TestApp,
    client: &reqwest::Client,
) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(String::new()));
    let req = client.get(app.url("/api/alerts/stream")).send();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let resp = req.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    (seen, task)
}

#[tokio::test]
async fn nothing_of_a_protected_person_leaves_any_endpoint_or_the_stream_without_a_reason_and_a_reason_shows_it_and_is_logged(
) {
    let app = TestApp::start().await;
    let officer = app
        .client_for("officer.sthlm", Role::Officer, Some("Stockholm"))
        .await;
    let coordinator = app
        .client_for("coordinator.sthlm", Role::Coordinator, Some("Stockholm"))
        .await;
    let (s, d) = seed(&app).await;
    let (streamed, stream_task) = collect_stream(&app, &officer);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let device = app.connect(&d).await;
    let fix = firmware_sim::Fix::from_degrees(ALARM.0, ALARM.1, 12).unwrap();
    device.alarm("panic", Some(fix), None).await.unwrap();
    let open = app.wait_for_alert(&d.id, |_| true).await;
    let alert = open["id"].as_i64().unwrap();
    assert!(
        open["position"]["lat"].is_number(),
        "the open alarm's position sends help"
    );
    assert_eq!(
        open["reasons_masked"], true,
        "the distance to the address is withheld"
    );
    assert!(open["reasons"]
        .to_string()
        .contains("inside exclusion zone 'Home'"));

    let mut walked = BTreeSet::new();
    for client in [&officer, &coordinator] {
        walk_reads(&app, client, &s, alert, false, &mut walked).await;
    }

    // The answers to changes are views too.
    let body = text(
        officer
            .post(app.url(&format!("/api/alerts/{alert}/ack")))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        "ack",
    )
    .await;
    assert_nothing_protected("ack", &body, false);
    walked.insert("POST /api/alerts/{id}/ack".into());
    let body = text(
        coordinator
            .patch(app.url(&format!("/api/cases/{}", s.case)))
            .json(&json!({"risk": "critical"}))
            .send()
            .await
            .unwrap(),
        "case change",
    )
    .await;
    assert_nothing_protected("PATCH /api/cases/{id}", &body, false);
    walked.insert("PATCH /api/cases/{id}".into());
    let body = text(
        coordinator
            .patch(app.url(&format!("/api/orders/{}", s.order)))
            .json(&json!({"restrained": {"name": "Mikael Berg", "vehicle": "Red Volvo"}}))
            .send()
            .await
            .unwrap(),
        "order change",
    )
    .await;
    assert_nothing_protected("PATCH /api/orders/{id}", &body, false);
    assert!(body.contains("\"zones_masked\":true"), "{body}");
    walked.insert("PATCH /api/orders/{id}".into());

    let body = text(
        officer
            .post(app.url(&format!("/api/alerts/{alert}/resolve")))
            .json(&json!({"outcome": "false_alarm"}))
            .send()
            .await
            .unwrap(),
        "resolve",
    )
    .await;
    assert_nothing_protected("resolve", &body, true);
    walked.insert("POST /api/alerts/{id}/resolve".into());
    for client in [&officer, &coordinator] {
        walk_reads(&app, client, &s, alert, true, &mut walked).await;
    }

    // The stream carried the alert open, acknowledged and resolved, and nothing protected.
    wait_for(
        "the resolved alert on the stream",
        Duration::from_secs(5),
        || {
            let done = streamed.lock().unwrap().contains("\"state\":\"resolved\"");
            async move { done }
        },
    )
    .await;
    stream_task.abort();
    let streamed = streamed.lock().unwrap().clone();
    assert!(
        streamed.contains("\"state\":\"open\"") && streamed.contains("\"state\":\"acknowledged\"")
    );
    assert_nothing_protected("the live stream", &streamed, false);
    let resolved_event = streamed
        .split("\n\n")
        .find(|e| e.contains("\"state\":\"resolved\""))
        .unwrap();
    assert_nothing_protected("the live stream's resolved alert", resolved_event, true);
    walked.insert("GET /api/alerts/stream".into());

    // With a reason, each detail shows what it withheld, and says who asked and why.
    let revealing = [
        (
            "person",
            format!("/api/persons/{}", s.person),
            vec!["Anna Lindqvist", "Drottninggatan", "59.3366"],
        ),
        (
            "case",
            format!("/api/cases/{}", s.case),
            vec![
                "Anna Lindqvist",
                "Karin Lindqvist",
                "765 43 21",
                PLAN,
                "\"coordinates\"",
                "\"radius_m\"",
            ],
        ),
        (
            "orders",
            format!("/api/cases/{}/orders", s.case),
            vec!["\"coordinates\"", "\"radius_m\""],
        ),
        (
            "order",
            format!("/api/orders/{}", s.order),
            vec!["\"coordinates\"", "\"radius_m\""],
        ),
        (
            "alert",
            format!("/api/alerts/{alert}"),
            vec![
                "59.3386",
                "inside exclusion zone",
                "from the registered address",
                "Karin",
                PLAN,
                "\"coordinates\"",
                "\"from_home\":{",
                "sweref99tm",
            ],
        ),
    ];
    for (what, path, shown) in &revealing {
        let reason = format!("review of {what}");
        let url = app.url(&format!("{path}?reason={}", reason.replace(' ', "%20")));
        let body = text(officer.get(url).send().await.unwrap(), path).await;
        for s in shown {
            assert!(body.contains(s), "{path} with a reason lacks {s}: {body}");
        }
    }
    let audit = app.get(&app.admin, "/api/audit?user=officer.sthlm").await;
    for (what, _, _) in &revealing {
        let reason = format!("review of {what}");
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "person_revealed"
                    && e["actor"] == "officer.sthlm"
                    && e["detail"] == reason.as_str()),
            "no audit entry for {reason}: {audit}"
        );
    }

    // Closing answers with the case, masked like the rest.
    let body = text(
        coordinator
            .post(app.url(&format!("/api/cases/{}/close", s.case)))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        "close",
    )
    .await;
    assert_nothing_protected("POST /api/cases/{id}/close", &body, false);
    walked.insert("POST /api/cases/{id}/close".into());

    // Creating answers with what the request held; nothing else leaves there.
    for echo in [
        "POST /api/persons",
        "POST /api/cases",
        "POST /api/cases/{id}/orders",
    ] {
        walked.insert(echo.into());
    }
    let listed = operations_returning_protected_views(&app).await;
    assert!(
        listed.contains("GET /api/cases") && listed.contains("POST /api/alerts/{id}/ack"),
        "{listed:?}"
    );
    let missed: Vec<_> = listed.difference(&walked).collect();
    assert!(missed.is_empty(), "not walked: {missed:?}");
}

#[tokio::test]
async fn a_list_shows_a_protected_case_exactly_as_its_detail_does_without_a_reason() {
    let app = TestApp::start().await;
    let (s, _) = seed(&app).await;
    let listed = app.get(&app.officer, "/api/cases").await;
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == s.case.as_str())
        .unwrap()
        .clone();
    let mut detail = app
        .get(&app.officer, &format!("/api/cases/{}", s.case))
        .await;
    for member in ["person", "orders", "devices"] {
        detail.as_object_mut().unwrap().remove(member);
    }
    assert_eq!(listed, detail);
    assert_eq!(listed["masked"], true);
    assert!(listed["response_plan"].is_null());
    assert_eq!(listed["relatives"][0]["name"], "***");
    assert_eq!(listed["relatives"][0]["relation"], "sister");
}

#[tokio::test]
async fn a_masked_case_sent_back_unchanged_cannot_overwrite_the_relatives_it_withheld() {
    let app = TestApp::start().await;
    let (s, _) = seed(&app).await;
    let masked = app
        .get(&app.coordinator, &format!("/api/cases/{}", s.case))
        .await;
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", s.case)))
        .json(&json!({"relatives": masked["relatives"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "relatives[0].name");
    let kept = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}?reason=check", s.case),
        )
        .await;
    assert_eq!(kept["relatives"][0]["name"], "Karin Lindqvist");
}

#[tokio::test]
async fn an_unprotected_persons_case_shows_its_plan_zones_and_distances_without_a_reason() {
    let app = TestApp::start().await;
    let person: Value = app
        .post(&app.coordinator, "/api/persons", json!({
            "name": "Per Holm", "address": {"text": "Storgatan 1", "lat": HOME.0, "lon": HOME.1},
            "region": "Stockholm"
        }))
        .await;
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({
                "reference": unique("2026"), "person_id": person["id"], "risk": "high",
                "region": "Stockholm", "response_plan": "Call Per",
                "relatives": [{"name": "Lena Holm", "phone": "+46 70 1"}]
            }),
        )
        .await;
    let _: Value = app
        .post(&app.coordinator, &format!("/api/cases/{}/orders", case["id"].as_str().unwrap()), json!({
            "kind": "contact_ban", "restrained": {"name": "X"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0]}, "radius_m": 300}]
        }))
        .await;
    let detail = app
        .get(
            &app.officer,
            &format!("/api/cases/{}", case["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(detail["masked"], false);
    assert_eq!(detail["response_plan"], "Call Per");
    assert_eq!(detail["relatives"][0]["name"], "Lena Holm");
    assert_eq!(detail["orders"][0]["zones"][0]["radius_m"], 300.0);
    assert_eq!(detail["orders"][0]["zones_masked"], false);
}

#[tokio::test]
async fn the_officer_who_acknowledged_an_alert_reveals_its_person_without_a_typed_reason_and_it_is_logged_while_another_officer_cannot(
) {
    let app = TestApp::start().await;
    let handling = app
        .client_for("officer.handling", Role::Officer, Some("Stockholm"))
        .await;
    let other = app
        .client_for("officer.other", Role::Officer, Some("Stockholm"))
        .await;
    let (_, d) = seed(&app).await;
    let device = app.connect(&d).await;
    let fix = firmware_sim::Fix::from_degrees(ALARM.0, ALARM.1, 12).unwrap();
    device.alarm("panic", Some(fix), None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await["id"]
        .as_i64()
        .unwrap();
    let detail = |client: &reqwest::Client, query: &str| {
        client
            .get(app.url(&format!("/api/alerts/{alert}{query}")))
            .send()
    };

    // Open: nobody handles it yet, so nobody reveals by handling it.
    let resp = detail(&handling, "?handling=true").await.unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["field"], "handling");

    let resp = handling
        .post(app.url(&format!("/api/alerts/{alert}/ack")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let body = text(
        detail(&handling, "?handling=true").await.unwrap(),
        "handling",
    )
    .await;
    for shown in ["Anna Lindqvist", "Karin Lindqvist", PLAN] {
        assert!(
            body.contains(shown),
            "handling reveal lacks {shown}: {body}"
        );
    }

    // Another officer of the region, or a reason typed beside it, gets nothing more.
    for (client, query) in [
        (&other, "?handling=true"),
        (&handling, "?handling=true&reason=my%20own%20words"),
    ] {
        let resp = detail(client, query).await.unwrap();
        assert_eq!(resp.status(), 422, "{query}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["field"], "handling");
    }
    let body = text(detail(&other, "").await.unwrap(), "other").await;
    assert_nothing_protected("another officer's detail", &body, false);

    let audit = app.get(&app.admin, "/api/audit").await;
    let reveals: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "person_revealed" && e["actor"] != "coordinator")
        .map(|e| (e["actor"].clone(), e["detail"].clone()))
        .collect();
    assert_eq!(
        reveals,
        vec![(
            json!("officer.handling"),
            json!(format!("handling alert {alert}"))
        )],
        "{audit}"
    );

    // Resolved, it is handled no more.
    let resp = handling
        .post(app.url(&format!("/api/alerts/{alert}/resolve")))
        .json(&json!({"outcome": "false_alarm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = detail(&handling, "?handling=true").await.unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn an_investigator_sees_no_persons_details_without_a_reason_and_every_read_with_one_is_logged(
) {
    let app = TestApp::start().await;
    let investigator = app
        .client_for("utredare.sthlm", Role::Investigator, Some("Stockholm"))
        .await;
    // Not a protected identity: an officer sees all of it without a reason.
    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({
                "name": "Per Holm", "phone": "+46 70 555 12 34",
                "address": {"text": "Storgatan 1", "lat": HOME.0, "lon": HOME.1},
                "region": "Stockholm"
            }),
        )
        .await;
    let person_id = person["id"].as_str().unwrap();
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({
                "reference": unique("2026"), "person_id": person_id, "risk": "high",
                "region": "Stockholm", "response_plan": "Call Per",
                "relatives": [{"name": "Lena Holm", "phone": "+46 70 1"}]
            }),
        )
        .await;
    let case_id = case["id"].as_str().unwrap();
    let _: Value = app
        .post(&app.coordinator, &format!("/api/cases/{case_id}/orders"), json!({
            "kind": "contact_ban", "restrained": {"name": "X"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0]}, "radius_m": 300}]
        }))
        .await;

    // Without a reason: nothing that points to the person, in lists as in details.
    for path in [
        format!("/api/persons/{person_id}"),
        "/api/persons".to_owned(),
        format!("/api/cases/{case_id}"),
        "/api/cases".to_owned(),
        format!("/api/cases/{case_id}/orders"),
    ] {
        let body = text(
            investigator.get(app.url(&path)).send().await.unwrap(),
            &path,
        )
        .await;
        for secret in [
            "Per Holm",
            "555 12 34",
            "Storgatan",
            "Call Per",
            "Lena",
            "\"radius_m\"",
        ] {
            assert!(
                !body.contains(secret),
                "{path} sent {secret} without a reason: {body}"
            );
        }
    }
    let masked = app
        .get(&investigator, &format!("/api/persons/{person_id}"))
        .await;
    assert_eq!(masked["masked"], true);
    assert_eq!(masked["protected_identity"], false);

    // With a reason: all of it, and the reason is on the audit trail with the reader.
    let person = app
        .get(
            &investigator,
            &format!("/api/persons/{person_id}?reason=preliminary%20investigation%201"),
        )
        .await;
    assert_eq!(person["name"], "Per Holm");
    assert_eq!(person["masked"], false);
    let case = app
        .get(
            &investigator,
            &format!("/api/cases/{case_id}?reason=preliminary%20investigation%202"),
        )
        .await;
    assert_eq!(case["response_plan"], "Call Per");
    assert_eq!(case["person"]["name"], "Per Holm");
    assert_eq!(case["orders"][0]["zones"][0]["radius_m"], 300.0);

    let audit = app.get(&app.admin, "/api/audit?user=utredare.sthlm").await;
    let entries = audit.as_array().unwrap();
    for (reason, case) in [
        ("preliminary investigation 1", None),
        ("preliminary investigation 2", Some(case_id)),
    ] {
        assert!(
            entries.iter().any(|e| e["action"] == "person_revealed"
                && e["subject"] == person_id
                && e["detail"] == reason
                && e["case_id"].as_str() == case),
            "no audit entry for {reason}: {audit}"
        );
    }
    // The reads without a reason are on the trail too, as views.
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "person_viewed" && e["subject"] == person_id),
        "{audit}"
    );
}
