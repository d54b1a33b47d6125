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
    let callers: [(&str, &reqwest::Client); 7] = [
        ("anonymous", &anonymous),
        ("officer", &officer),
        ("local officer", &local_officer),
        ("far officer", &far_officer),
        ("coordinator", &coordinator),
        ("far coordinator", &far_coordinator),
        ("admin", &admin),
    ];

    let case = &d.case_id;
    let person = &d.person_id;
    let dev = &d.id;
    let new_case = json!({"reference": unique("x"), "person_id": person, "risk": "low", "region": "Stockholm"});
    let new_person = json!({"name": "N N", "region": "Stockholm"});
    let new_device = json!({"id": unique("m")});
    let new_order = json!({"kind": "contact_ban", "restrained": {"name": "R"}, "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z"});
    // Columns: anonymous, officer, local officer, far officer, coordinator, far coordinator, admin.
    let rows: Vec<(Method, String, Option<Value>, [Expect; 7])> = vec![
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
