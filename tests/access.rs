//! The role and region matrix, walked request by request: every endpoint is denied by
//! default, and another region's objects are not there.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use vakt::store::Role;

/// What a caller may get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Allowed: any status but 401, 403 and 404.
    Allowed,
    Unauthorized,
    Forbidden,
    /// Not there for this caller (another region's object).
    Hidden,
}
use Expect::*;

#[tokio::test]
async fn every_endpoint_answers_each_role_and_region_as_the_matrix_says() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await["id"]
        .as_i64()
        .unwrap();
    let orders = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}/orders", d.case_id),
        )
        .await;
    let order = orders[0]["id"].as_str().unwrap().to_owned();

    let anonymous = app.anonymous.clone();
    let officer = app.officer.clone();
    let coordinator = app.coordinator.clone();
    let admin = app.admin.clone();
    let far_officer = app
        .client_for("syd-officer", Role::Officer, Some("Syd"))
        .await;
    let far_coordinator = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let local_officer = app
        .client_for("sthlm-officer", Role::Officer, Some("Stockholm"))
        .await;
    let investigator = app
        .client_for("sthlm-investigator", Role::Investigator, Some("Stockholm"))
        .await;
    let far_investigator = app
        .client_for("syd-investigator", Role::Investigator, Some("Syd"))
        .await;
    let national_investigator = app
        .client_for("investigator", Role::Investigator, None)
        .await;
    // Whose password, second factor and tokens the admin rows change: nobody else's.
    let _ = app.client_for("matrix-target", Role::Officer, None).await;
    let callers: [(&str, &reqwest::Client); 10] = [
        ("anonymous", &anonymous),
        ("officer", &officer),
        ("local officer", &local_officer),
        ("far officer", &far_officer),
        ("coordinator", &coordinator),
        ("far coordinator", &far_coordinator),
        ("admin", &admin),
        ("investigator", &investigator),
        ("far investigator", &far_investigator),
        ("national investigator", &national_investigator),
    ];

    let case = &d.case_id;
    let person = &d.person_id;
    let dev = &d.id;
    let new_case = json!({"reference": unique("x"), "person_id": person, "risk": "low", "region": "Stockholm"});
    let new_person = json!({"name": "N N", "region": "Stockholm"});
    let new_device = json!({"id": unique("m")});
    let new_order = json!({"kind": "contact_ban", "restrained": {"name": "R"}, "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"});
    let next_review = (chrono::Utc::now().date_naive() + chrono::Duration::days(60)).to_string();
    let new_assessment = json!({"method": "SARA", "risk": "high", "factors": ["threats"], "next_review": next_review});
    // Columns: anonymous, officer, local officer, far officer, coordinator, far coordinator,
    // admin, investigator (Stockholm), far investigator (Syd), national investigator.
    let rows: Vec<(Method, String, Option<Value>, [Expect; 10])> = vec![
        (
            Method::GET,
            "/api/me".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::GET,
            "/api/alerts".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::GET,
            "/api/alerts/stream".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            format!("/api/alerts/{alert}"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::GET,
            "/api/status".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/cases".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::GET,
            format!("/api/cases/{case}"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::GET,
            format!("/api/cases/{case}/orders"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::GET,
            format!("/api/orders/{order}"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::POST,
            "/api/cases".into(),
            Some(new_case),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::PATCH,
            format!("/api/cases/{case}"),
            Some(json!({"risk": "high"})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            format!("/api/cases/{case}/assessments"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::POST,
            format!("/api/cases/{case}/assessments"),
            Some(new_assessment),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/cases/{case}/orders"),
            Some(new_order),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::PATCH,
            format!("/api/orders/{order}"),
            Some(json!({})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/persons".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::GET,
            format!("/api/persons/{person}"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::POST,
            "/api/persons".into(),
            Some(new_person),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/devices".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            format!("/api/devices/{dev}"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/devices".into(),
            Some(new_device),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::PATCH,
            format!("/api/devices/{dev}"),
            Some(json!({})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/audit".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/audit/verify".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/security-events".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/places/address-check".into(),
            Some(json!({"text": "Storgatan 1, Umeå", "lat": 63.8258, "lon": 20.263})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/regions".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::POST,
            "/api/regions".into(),
            Some(json!({"name": "Gränspolisen"})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::PATCH,
            "/api/regions/syd".into(),
            Some(json!({"retired": false})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/regions/syd/local-areas".into(),
            Some(json!({"name": "Malmö Hamn"})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::PATCH,
            "/api/regions/syd/local-areas/lund".into(),
            Some(json!({"retired": false})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/users".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/alerts/{alert}/ack"),
            Some(json!({})),
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::GET,
            "/api/console-config".into(),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
                Allowed,
            ],
        ),
        (
            Method::GET,
            format!("/api/alerts/{alert}/street-address"),
            None,
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
                Hidden,
                Allowed,
                Allowed,
                Hidden,
                Allowed,
            ],
        ),
        (
            Method::GET,
            "/api/users/matrix-target/tokens".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/users".into(),
            Some(
                json!({"username": unique("u"), "password": "a long enough password", "role": "officer"}),
            ),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/users/matrix-target/password".into(),
            Some(json!({"password": "another long password"})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            "/api/users/matrix-target/second-factor".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::DELETE,
            "/api/users/matrix-target/tokens".into(),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/devices/{dev}/issue"),
            Some(json!({"case_id": case, "holder_person_id": person})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                // 422: a case of another region is answered as a missing one.
                Allowed,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/devices/{dev}/rotate-key"),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        // The rows that end something come last: no row before them needs what they end.
        (
            Method::POST,
            format!("/api/alerts/{alert}/resolve"),
            Some(json!({"outcome": "test"})),
            [
                Unauthorized,
                Allowed,
                Allowed,
                Hidden,
                Forbidden,
                Forbidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/devices/{dev}/return"),
            Some(json!({"reason": "matrix"})),
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
        (
            Method::POST,
            format!("/api/cases/{case}/close"),
            None,
            [
                Unauthorized,
                Forbidden,
                Forbidden,
                Forbidden,
                Allowed,
                Hidden,
                Allowed,
                Forbidden,
                Forbidden,
                Forbidden,
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &rows {
        for ((who, client), want) in callers.iter().zip(expected) {
            let mut req = client.request(method.clone(), app.url(path));
            if let Some(b) = body {
                req = req.json(b);
            }
            if path.ends_with("/stream") {
                req = req.timeout(std::time::Duration::from_millis(500));
            }
            let got = match req.send().await {
                Ok(r) => match r.status().as_u16() {
                    401 => Unauthorized,
                    403 => Forbidden,
                    404 => Hidden,
                    _ => Allowed,
                },
                Err(e) if e.is_timeout() => Allowed,
                Err(e) => panic!("{method} {path}: {e}"),
            };
            if got != *want {
                wrong.push(format!(
                    "{method} {path} as {who}: got {got:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Status and problem body of an answer, for comparing two answers whole.
async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A person and an open case in `region`, made by the national coordinator.
async fn case_in(app: &TestApp, region: &str) -> (String, String) {
    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({"name": "P P", "region": region}),
        )
        .await;
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({"reference": unique("r"), "person_id": person["id"], "risk": "high", "region": region}),
        )
        .await;
    (
        person["id"].as_str().unwrap().to_owned(),
        case["id"].as_str().unwrap().to_owned(),
    )
}

async fn device_in_stock(app: &TestApp, kind: &str) -> String {
    let d: Value = app
        .post(
            &app.coordinator,
            "/api/devices",
            json!({"id": unique("stock"), "kind": kind}),
        )
        .await;
    d["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn issuing_to_another_regions_person_is_answered_like_issuing_to_nobody() {
    let app = TestApp::start().await;
    let syd = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let (_, syd_case) = case_in(&app, "Syd").await;
    let (stockholm_person, _) = case_in(&app, "Stockholm").await;
    let device = device_in_stock(&app, "alarm").await;
    let issue = |holder: String| {
        syd.post(app.url(&format!("/api/devices/{device}/issue")))
            .json(&json!({"case_id": syd_case, "holder_person_id": holder}))
            .send()
    };
    let theirs = answer(issue(stockholm_person).await.unwrap()).await;
    let nobody = answer(issue("p-does-not-exist".into()).await.unwrap()).await;
    assert_eq!(theirs.0, 422);
    assert_eq!(theirs, nobody, "the answers tell the ids apart");
    let d = app
        .get(&app.coordinator, &format!("/api/devices/{device}"))
        .await;
    assert_eq!(d["status"], "in_stock");
}

#[tokio::test]
async fn another_regions_issued_device_is_not_there_for_issuing_or_as_a_tag() {
    let app = TestApp::start().await;
    let syd = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let stockholm = app.issued_device("Stockholm").await;
    let (syd_person, syd_case) = case_in(&app, "Syd").await;
    let issue = |device: String| {
        syd.post(app.url(&format!("/api/devices/{device}/issue")))
            .json(&json!({"case_id": syd_case, "holder_person_id": syd_person}))
            .send()
    };
    let theirs = answer(issue(stockholm.id.clone()).await.unwrap()).await;
    let nothing = answer(issue("dev-does-not-exist".into()).await.unwrap()).await;
    assert_eq!(
        theirs.0, 404,
        "not a 409 that names the device's state: {theirs:?}"
    );
    assert_eq!(theirs, nothing);

    // A tag issued in Stockholm, named in a Syd order: as unknown as a missing one.
    let tag = device_in_stock(&app, "tag").await;
    let (holder, case) = (stockholm.person_id.clone(), stockholm.case_id.clone());
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{tag}/issue"),
            json!({"case_id": case, "holder_person_id": holder}),
        )
        .await;
    let order = |tag: String| {
        syd.post(app.url(&format!("/api/cases/{syd_case}/orders")))
            .json(
                &json!({"kind": "special_extended", "restrained": {"name": "R"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
                "tag_device_id": tag}),
            )
            .send()
    };
    let theirs = answer(order(tag).await.unwrap()).await;
    let nothing = answer(order("tag-does-not-exist".into()).await.unwrap()).await;
    assert_eq!(theirs.0, 422);
    assert_eq!(theirs, nothing);
    // Nor does an alarm device of Stockholm show up as "not a tag".
    let theirs = answer(order(stockholm.id.clone()).await.unwrap()).await;
    assert_eq!(theirs, nothing);
}

#[tokio::test]
async fn only_a_coordinator_of_the_devices_region_may_rekey_it_and_stock_only_a_national_one() {
    let app = TestApp::start().await;
    let syd = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let stockholm_coordinator = app
        .client_for("sthlm-coordinator", Role::Coordinator, Some("Stockholm"))
        .await;
    let issued = app.issued_device("Stockholm").await;
    let stock = device_in_stock(&app, "alarm").await;
    let rotate = |client: &reqwest::Client, id: &str| {
        client
            .post(app.url(&format!("/api/devices/{id}/rotate-key")))
            .send()
    };
    // In stock: no region yet, so a regional coordinator who got its key could keep it
    // after the device is issued to another region.
    assert_eq!(rotate(&syd, &stock).await.unwrap().status(), 403);
    assert_eq!(
        rotate(&stockholm_coordinator, &stock)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(rotate(&syd, &issued.id).await.unwrap().status(), 404);
    let d = app
        .get(&app.coordinator, &format!("/api/devices/{stock}"))
        .await;
    assert!(d["key_rotation"].is_null(), "nothing started: {d}");

    assert_eq!(
        rotate(&stockholm_coordinator, &issued.id)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        rotate(&app.coordinator, &stock).await.unwrap().status(),
        200
    );
}
