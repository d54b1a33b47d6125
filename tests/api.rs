//! The HTTP API's contract: logins, roles and regions, validation as problem+json, and the
//! OpenAPI document.

mod common;

use common::*;
use serde_json::{json, Value};
use vakt::store::Role;

async fn problem(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_login_sets_a_strict_http_only_session_cookie_that_opens_the_api() {
    let app = TestApp::start().await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let resp = client
        .post(app.url("/api/login"))
        .json(&json!({"username": "officer", "password": "officer-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("vakt_session="));
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
    );
    let me: Value = client
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "officer");

    assert_eq!(
        client
            .post(app.url("/api/logout"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        client
            .get(app.url("/api/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn a_wrong_password_gets_401_and_repeated_failures_are_slowed_not_locked() {
    let app = TestApp::start().await;
    let login = |password: &'static str| {
        app.anonymous
            .post(app.url("/api/login"))
            .json(&json!({"username": "officer", "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(problem(login("guess").await.unwrap()).await.0, 401);
    }
    let resp = login("officer-password-1").await.unwrap();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(problem(resp).await.0, 429);
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(app.metric("vakt_logins_failed_total").await >= 5);
    // A delay, not a lock-out: once it is over the right password works.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(login("officer-password-1").await.unwrap().status(), 200);
}

/// A login from `forwarded_for` through the proxy at 127.0.0.1.
async fn login_via_proxy(app: &TestApp, forwarded_for: &str, body: Value) -> reqwest::Response {
    app.anonymous
        .post(app.url("/api/login"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_guesser_at_another_address_does_not_lock_the_user_out_behind_a_trusted_proxy() {
    let app = TestApp::start_with(|c| {
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    let guess = json!({"username": "officer", "password": "guess"});
    let right = json!({"username": "officer", "password": "officer-password-1"});
    for _ in 0..20 {
        let _ = login_via_proxy(&app, "203.0.113.66", guess.clone()).await;
    }
    let resp = login_via_proxy(&app, "203.0.113.66", right.clone()).await;
    assert_eq!(resp.status(), 429, "the guesser's own address is slowed");
    // Thirty random names from the guesser's address do not reach the officer's desk either.
    for i in 0..30 {
        let _ = login_via_proxy(
            &app,
            "203.0.113.66",
            json!({"username": format!("n{i}"), "password": "x"}),
        )
        .await;
    }
    let resp = login_via_proxy(&app, "10.20.30.40", right).await;
    assert_eq!(
        resp.status(),
        200,
        "the officer at the centre logs in at once"
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_a_forwarded_for_header_buys_no_fresh_address() {
    let app = TestApp::start().await;
    for i in 0..5 {
        let resp = login_via_proxy(
            &app,
            &format!("198.51.100.{i}"),
            json!({"username": "officer", "password": "guess"}),
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login_via_proxy(
        &app,
        "198.51.100.99",
        json!({"username": "officer", "password": "guess"}),
    )
    .await;
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn every_endpoint_but_health_needs_a_login() {
    let app = TestApp::start().await;
    for path in [
        "/api/alerts",
        "/api/alerts/1",
        "/api/alerts/stream",
        "/api/cases",
        "/api/devices",
        "/api/persons",
        "/api/audit",
        "/api/me",
    ] {
        let resp = app.anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = app
        .anonymous
        .post(app.url("/api/devices"))
        .json(&json!({"id": "abc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for path in ["/healthz", "/readyz", "/metrics", "/api/openapi.json", "/"] {
        assert!(
            app.anonymous
                .get(app.url(path))
                .send()
                .await
                .unwrap()
                .status()
                .is_success(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_officer_cannot_create_devices_and_a_coordinator_cannot_read_the_audit_log() {
    let app = TestApp::start().await;
    let resp = app
        .officer
        .post(app.url("/api/devices"))
        .json(&json!({"id": "dev-x1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
    let resp = app
        .coordinator
        .get(app.url("/api/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
    let resp = app
        .coordinator
        .post(app.url("/api/alerts/1/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
}

#[tokio::test]
async fn a_regional_officer_sees_only_alerts_and_cases_of_their_region() {
    let app = TestApp::start().await;
    let stockholm = app.issued_device("Stockholm").await;
    let skane = app.issued_device("Syd").await;
    let local = app
        .client_for("syd-officer", Role::Officer, Some("Syd"))
        .await;
    for d in [&stockholm, &skane] {
        let dev = app.connect(d).await;
        dev.alarm("panic", None, None).await.unwrap();
        app.wait_for_alert(&d.id, |_| true).await;
    }

    let seen = app.get(&local, "/api/alerts").await;
    let devices: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, vec![skane.id.as_str()]);
    let other = app.wait_for_alert(&stockholm.id, |_| true).await;
    let resp = local
        .get(app.url(&format!("/api/alerts/{}", other["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);
    let resp = local
        .post(app.url(&format!("/api/alerts/{}/ack", other["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);
    let resp = local
        .get(app.url(&format!("/api/cases/{}", stockholm.case_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_stores_nothing() {
    let app = TestApp::start().await;
    let cases = [
        (json!({"phone": "1"}), 400, "name"),
        (json!({"name": 5}), 400, "name"),
        (json!({"name": "  "}), 422, "name"),
        (
            json!({"name": "A", "address": {"text": "x", "lat": 95.0, "lon": 18.0}}),
            422,
            "address.lat",
        ),
        // Swapped: longitude 59 is a lake in Kazakhstan, not Stockholm.
        (
            json!({"name": "A", "address": {"text": "x", "lat": 18.06, "lon": 59.33}}),
            422,
            "address.lat",
        ),
        // A lost leading digit puts the home in the North Sea.
        (
            json!({"name": "A", "address": {"text": "x", "lat": 59.33, "lon": 8.06}}),
            422,
            "address.lon",
        ),
        (json!({"name": "A", "surprise": true}), 400, "surprise"),
    ];
    for (body, status, field) in cases {
        let resp = app
            .coordinator
            .post(app.url("/api/persons"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (got, p) = problem(resp).await;
        assert_eq!((got, p["field"].as_str()), (status, Some(field)), "{body}");
    }
    assert_eq!(
        app.get(&app.coordinator, "/api/persons")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let resp = app
        .coordinator
        .post(app.url("/api/persons"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 400);
    let resp = app
        .coordinator
        .post(app.url("/api/persons"))
        .json(&json!(["Eva Array", null, null, true]))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 400, "an array is no object");

    let d = app.issued_device("Stockholm").await;
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/cases/{}/orders", d.case_id)))
        .json(&json!({"kind": "contact_ban", "restrained": {"name": "X"}, "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [{"name": "Line", "geometry": {"type": "LineString", "coordinates": [[18.0, 59.0], [18.1, 59.0]]}}]}))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!(
        (status, p["field"].as_str()),
        (422, Some("zones[0].geometry"))
    );
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/cases/{}/orders", d.case_id)))
        .json(&json!({"kind": "contact_ban", "restrained": {"name": "X"}, "valid_from": "2027-01-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["field"], "valid_to");
    assert_eq!(
        app.get(
            &app.coordinator,
            &format!("/api/cases/{}/orders", d.case_id)
        )
        .await
        .as_array()
        .unwrap()
        .len(),
        1
    );
}

#[tokio::test]
async fn issuing_an_issued_device_is_a_conflict_and_its_key_is_shown_only_once() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    assert_eq!(d.key.len(), 64);
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/devices/{}/issue", d.id)))
        .json(&json!({"case_id": d.case_id, "holder_person_id": d.person_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 409);
    let device = app
        .get(&app.coordinator, &format!("/api/devices/{}", d.id))
        .await;
    assert_eq!(device["status"], "issued");
    assert!(device.get("key").is_none() && !device.to_string().contains(&d.key));

    let resp = app
        .coordinator
        .post(app.url("/api/devices"))
        .json(&json!({"id": d.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 409);
    let resp = app
        .coordinator
        .post(app.url("/api/devices"))
        .json(&json!({"id": "bad id!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["field"], "id");

    let returned: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{}/return", d.id),
            json!({"reason": "case ended"}),
        )
        .await;
    assert_eq!(returned["status"], "returned");
}

#[tokio::test]
async fn a_returned_device_raises_no_alert() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{}/return", d.id),
            json!({"reason": "lost on the bus", "lost": true}),
        )
        .await;
    device.alarm("panic", None, None).await.ok();
    app.wait_for_metric("vakt_unknown_devices_total", 1).await;
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_every_route_of_the_one_list_is_served_and_documented() {
    let app = TestApp::start().await;
    let served = app.get(&app.anonymous, "/api/openapi.json").await;
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    // The server's routes and the document come from one list (`vakt::web::routes`).
    let list = serde_json::to_value(vakt::web::openapi_document()).unwrap();
    assert_eq!(served, list);
    let paths = list["paths"].as_object().unwrap();
    assert!(paths.len() >= 35, "{} paths", paths.len());
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{code}", "x")
            .replace("{area}", "x")
            .replace("{username}", "x");
        let methods = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()));
        for method in methods {
            let resp = app
                .anonymous
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            // A handler answered (a login is asked for, the input refused, the answer given):
            // not the fallback's 404, nor a 405 for a method the path does not serve.
            let status = resp.status().as_u16();
            assert!(status != 404 && status != 405, "{method} {path}: {status}");
        }
    }
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::start().await;
    let resp = app.anonymous.get(app.url("/")).send().await.unwrap();
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(resp.text().await.unwrap().contains("<html"));
}

#[tokio::test]
async fn a_case_can_be_changed_and_closed_and_then_its_device_raises_nothing() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"risk": "critical", "response_plan": "Blue lights."}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let case: Value = resp.json().await.unwrap();
    assert_eq!(case["risk"], "critical");
    assert_eq!(case["masked"], true, "the answer is masked like every view");
    let case = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}?reason=checking%20the%20plan", d.case_id),
        )
        .await;
    assert_eq!(case["response_plan"], "Blue lights.");
    let closed: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/close", d.case_id),
            json!({}),
        )
        .await;
    assert!(closed["closed_at"].is_string());

    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    app.wait_for_metric("vakt_unknown_devices_total", 1).await;
    assert!(app
        .open_alerts()
        .await
        .iter()
        .all(|a| a["device_id"] != d.id.as_str()));
}

#[tokio::test]
async fn a_malformed_path_query_or_method_is_a_problem_too() {
    let app = TestApp::start().await;
    let resp = app
        .officer
        .get(app.url("/api/alerts/not-a-number"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 400);
    let resp = app
        .officer
        .get(app.url("/api/alerts?state=closed"))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["field"].as_str()), (422, Some("state")));
    let resp = app
        .officer
        .delete(app.url("/api/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 405);
    let resp = app
        .officer
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);
}

#[tokio::test]
async fn an_admin_adds_users_and_nobody_else_may() {
    let app = TestApp::start().await;
    let body = json!({"username": "eva.k", "password": "a-long-password-1", "role": "officer", "region": "Syd"});
    let resp = app
        .coordinator
        .post(app.url("/api/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
    let created: Value = app.post(&app.admin, "/api/users", body.clone()).await;
    assert_eq!(
        (created["role"].as_str(), created["region"].as_str()),
        (Some("officer"), Some("Syd"))
    );
    let resp = app
        .admin
        .post(app.url("/api/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 409);
    let resp = app
        .admin
        .post(app.url("/api/users"))
        .json(&json!({"username": "x", "password": "short", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["field"], "password");
    let users = app.get(&app.admin, "/api/users").await;
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "eva.k"));
    assert!(
        !users.to_string().contains("argon2"),
        "no password hashes leave the server"
    );

    let client = reqwest::Client::new();
    let resp = client
        .post(app.url("/api/login"))
        .json(&json!({"username": "eva.k", "password": "a-long-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_coordinator_edits_an_orders_zones_and_validity_and_the_ingest_uses_them_at_once() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let orders = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}/orders", d.case_id),
        )
        .await;
    let order_id = orders[0]["id"].as_str().unwrap().to_owned();
    let far = (HOME.0 + 0.05, HOME.1);
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/orders/{order_id}")))
        .json(&json!({"zones": [{"name": "Cabin", "geometry": {"type": "Point", "coordinates": [far.1, far.0]}, "radius_m": 200}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["zones"][0]["name"], "Cabin");
    assert_eq!(
        changed["restrained"]["name"], "Mikael Berg",
        "what the change leaves out is kept"
    );

    let device = app.connect(&d).await;
    device
        .alarm("panic", Some(fix_near_home()), None)
        .await
        .unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let detail = app
        .get(
            &app.officer,
            &format!("/api/alerts/{}?reason=sending%20help", alert["id"]),
        )
        .await;
    let reasons = detail["alert"]["reasons"].to_string();
    assert!(reasons.contains("from exclusion zone 'Cabin'"), "{reasons}");

    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/orders/{order_id}")))
        .json(&json!({"valid_to": "2000-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["field"], "valid_to");
    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "order_changed"));
}

#[tokio::test]
async fn a_case_keeps_its_relatives() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let relatives =
        json!([{"name": "Maria Lindqvist", "relation": "sister", "phone": "+46 70 111 22 33"}]);
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"relatives": relatives}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let masked = app
        .get(&app.officer, &format!("/api/cases/{}", d.case_id))
        .await;
    assert_eq!(
        masked["relatives"][0]["name"], "***",
        "relatives of a protected person point to them"
    );
    assert!(masked["relatives"][0]["phone"].is_null());
    let case = app
        .get(
            &app.officer,
            &format!("/api/cases/{}?reason=call-back", d.case_id),
        )
        .await;
    assert_eq!(case["relatives"], relatives);
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"relatives": [{"name": ""}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["field"], "relatives[0].name");
}

#[tokio::test]
async fn the_status_counts_open_alerts_per_priority_in_the_callers_regions() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    app.wait_for_alert(&d.id, |_| true).await;
    let status = app.get(&app.officer, "/api/status").await;
    assert_eq!(
        (status["broker"].as_bool(), status["database"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(status["open_by_priority"]["1"], 1);
    assert_eq!(status["devices_silent"], 0);
    let other = app.client_for("syd", Role::Officer, Some("Syd")).await;
    assert_eq!(
        app.get(&other, "/api/status").await["open_by_priority"]["1"],
        0
    );
    assert!(app.get(&app.officer, "/api/console-config").await["tile_url"].is_null());
}

#[tokio::test]
async fn the_audit_trail_is_hash_chained_so_an_edit_or_a_deletion_is_detected() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let _ = app
        .get(
            &app.officer,
            &format!("/api/cases/{}?reason=checking", d.case_id),
        )
        .await;
    let verdict = app.get(&app.admin, "/api/audit/verify").await;
    assert!(verdict["entries"].as_u64().unwrap() >= 5);
    assert!(verdict["first_broken"].is_null());

    let by_officer = app.get(&app.admin, "/api/audit?user=officer").await;
    assert!(by_officer
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "officer"));
    assert!(by_officer
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "person_revealed" && e["detail"] == "checking"));

    tamper(
        &app.database_url,
        "UPDATE audit_log SET detail = 'nothing' WHERE id = 3",
    )
    .await;
    let verdict = app.get(&app.admin, "/api/audit/verify").await;
    assert_eq!(verdict["first_broken"], 3);
    let resp = app
        .coordinator
        .get(app.url("/api/audit/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn deleting_an_audit_entry_is_detected_at_the_next_one() {
    let app = TestApp::start().await;
    app.issued_device("Stockholm").await;
    tamper(&app.database_url, "DELETE FROM audit_log WHERE id = 2").await;
    assert_eq!(
        app.get(&app.admin, "/api/audit/verify").await["first_broken"],
        3
    );
}

fn totp_now(uri: &str) -> String {
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let step = chrono::Utc::now().timestamp() / 30;
    vakt::credentials::totp::code_at(secret, step).unwrap()
}

#[tokio::test]
async fn a_coordinator_logs_in_only_with_a_fresh_one_time_code() {
    let app = TestApp::start().await;
    let created: Value = app
        .post(&app.admin, "/api/users", json!({"username": "kim", "password": "kim-password-123", "role": "coordinator", "region": "Syd"}))
        .await;
    let uri = created["totp_uri"]
        .as_str()
        .expect("a second factor for a coordinator")
        .to_owned();
    assert!(uri.starts_with("otpauth://totp/vakt:kim?secret="));
    let login = |body: Value| {
        let url = app.url("/api/login");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    // The right password without a code, or with a wrong one, is answered exactly like a
    // wrong password: a guesser never learns that the password was right.
    let wrong_password =
        problem(login(json!({"username": "kim", "password": "guess-123"})).await).await;
    assert_eq!(wrong_password.0, 401);
    let no_code =
        problem(login(json!({"username": "kim", "password": "kim-password-123"})).await).await;
    assert_eq!(no_code, wrong_password);
    let wrong_code = problem(
        login(json!({"username": "kim", "password": "kim-password-123", "totp": "000000"})).await,
    )
    .await;
    assert_eq!(wrong_code, wrong_password);
    assert!(
        app.metric("vakt_logins_failed_total").await >= 3,
        "all three count"
    );
    let code = totp_now(&uri);
    let resp =
        login(json!({"username": "kim", "password": "kim-password-123", "totp": code})).await;
    assert_eq!(resp.status(), 200);
    let resp =
        login(json!({"username": "kim", "password": "kim-password-123", "totp": code})).await;
    assert_eq!(problem(resp).await.0, 401, "a code works once");
}

#[tokio::test]
async fn a_cross_site_request_with_the_session_cookie_changes_nothing() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let client = app.officer_session().await;
    let ack = app.url(&format!("/api/alerts/{}/ack", alert["id"]));

    let resp = client
        .post(&ack)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
    let resp = client
        .post(&ack)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 403);
    assert_eq!(app.wait_for_alert(&d.id, |_| true).await["state"], "open");

    let own_origin = app.base.clone();
    let resp = client
        .post(&ack)
        .header("Origin", own_origin)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_device_key_is_stored_sealed_never_in_the_clear() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    use sqlx::Connection;
    let stored: String = if app.database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT key_hex FROM devices WHERE id = $1")
            .bind(&d.id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT key_hex FROM devices WHERE id = $1")
            .bind(&d.id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(&d.key));
    // And the device still works with the key it was given.
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    assert_eq!(
        device
            .next_feedback(std::time::Duration::from_secs(5))
            .await
            .unwrap()
            .st,
        "received"
    );
}

#[tokio::test]
async fn a_closed_case_has_its_personal_data_erased_after_the_retention_period_and_the_erasure_is_audited(
) {
    let app = TestApp::start_with(|c| c.supervision.erase_closed_after_days = 0).await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device
        .alarm("panic", Some(fix_near_home()), None)
        .await
        .unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{}/resolve", alert["id"]),
            json!({"outcome": "false_alarm", "note": "Anna called back"}),
        )
        .await;
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/close", d.case_id),
            json!({}),
        )
        .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit = app
            .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
            .await;
        if audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "case_erased")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never erased");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let person = app
        .get(
            &app.coordinator,
            &format!("/api/persons/{}?reason=statistics", d.person_id),
        )
        .await;
    assert_eq!(person["name"], "(erased)");
    assert!(person["address"].is_null() && person["phone"].is_null());
    let kept = app
        .get(&app.officer, &format!("/api/alerts/{}", alert["id"]))
        .await;
    assert_eq!(
        kept["alert"]["kind"], "panic",
        "the alert stays for statistics"
    );
    assert_eq!(kept["alert"]["outcome"], "false_alarm");
    assert!(kept["alert"]["position"].is_null());
    assert!(
        !kept.to_string().contains("Mikael Berg"),
        "no restrained person left: {kept}"
    );
    assert!(!kept.to_string().contains("Anna called back"));
}

#[tokio::test]
async fn no_device_can_be_given_a_name_the_backend_logs_in_to_the_broker_with() {
    // On the embedded broker, where no check refuses it, also a configured username outside
    // the reserved prefix.
    let app = TestApp::start_with(|c| {
        if c.mqtt_url.is_none() {
            c.mqtt_username = Some("ingest-user".into());
        }
    })
    .await;
    let config = app.running.state.config.clone();
    let mut reserved = vec![
        "vakt-ingest".to_owned(),
        "vakt-1".to_owned(),
        "VAKT-2".to_owned(),
        "vakt-backend".to_owned(),
        config.broker_client_id().to_owned(),
    ];
    reserved.extend(config.mqtt_username.clone());
    for id in &reserved {
        let resp = app
            .coordinator
            .post(app.url("/api/devices"))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        let (status, p) = problem(resp).await;
        assert_eq!((status, p["field"].as_str()), (422, Some("id")), "{id}");
        assert!(p["detail"].as_str().unwrap().contains("reserved"), "{p}");
    }
    // Nothing was stored, and each attempt is on record for the administrators.
    let devices = app.get(&app.coordinator, "/api/devices").await;
    assert!(devices.as_array().unwrap().is_empty(), "{devices}");
    let events = app.get(&app.admin, "/api/security-events").await;
    let recorded = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reserved_device_id")
        .count();
    assert_eq!(recorded, reserved.len(), "{events}");

    // The command line applies the same rule, naming the field.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["device", "add", "--id", "vakt-ingest"])
        .current_dir(app.dir.path())
        .env("VAKT_DATABASE_URL", &app.database_url)
        .env("VAKT_DATA_DIR", app.dir.path())
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_MQTT_URL")
        .env("VAKT_LOG", "error")
        .output()
        .expect("vakt runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "the command line added it");
    assert!(stderr.contains("id: reserved"), "{stderr}");
    let devices = app.get(&app.coordinator, "/api/devices").await;
    assert!(devices.as_array().unwrap().is_empty(), "{devices}");

    // An ordinary id is fine, and so is one that merely contains the word.
    for id in ["dev-reserved-ok", "my-vakt-1"] {
        let resp = app
            .coordinator
            .post(app.url("/api/devices"))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{id}");
    }
}

#[tokio::test]
async fn api_answers_are_never_stored_in_a_cache() {
    let app = TestApp::start().await;
    app.issued_device("Stockholm").await;
    for path in ["/api/me", "/api/cases", "/api/devices", "/api/openapi.json"] {
        let resp = app.coordinator.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
    }
    let resp = app
        .anonymous
        .get(app.url("/api/cases"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["cache-control"], "no-store", "a problem too");
    let stream = app
        .officer
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_body_that_only_claims_json_in_a_parameter_is_refused() {
    let app = TestApp::start().await;
    let body = json!({"name": "Smuggled Person", "region": "Stockholm"}).to_string();
    for content_type in [
        "text/plain; x=+json",
        "text/plain;+json",
        "application/json-seq",
    ] {
        let resp = app
            .coordinator
            .post(app.url("/api/persons"))
            .header("Content-Type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(problem(resp).await.0, 400, "{content_type}");
    }
    let persons = app.get(&app.coordinator, "/api/persons").await;
    assert_eq!(persons.as_array().unwrap().len(), 0, "nothing was stored");
    let resp = app
        .coordinator
        .post(app.url("/api/persons"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn another_site_cannot_log_an_officer_out() {
    let app = TestApp::start().await;
    let client = app.officer_session().await;
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let resp = client
            .post(app.url("/api/logout"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(problem(resp).await.0, 403, "{name}: {value}");
    }
    let me = client.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200, "the session lives on");
    let resp = client.post(app.url("/api/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let me = client.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn a_plain_http_page_on_the_same_host_is_another_site_when_the_console_is_served_over_tls() {
    let app = TestApp::start_with(|c| c.secure_cookies = true).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let login = |origin: String| {
        app.anonymous
            .post(app.url("/api/login"))
            .header("Origin", origin)
            .json(&json!({"username": "officer", "password": "officer-password-1"}))
            .send()
    };
    let resp = login(format!("http://{host}")).await.unwrap();
    assert_eq!(problem(resp).await.0, 403);
    let resp = login(format!("https://{host}")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_zone_that_crosses_itself_encloses_nothing_or_lies_outside_sweden_is_refused_naming_it() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let order = |zone: Value| {
        app.coordinator
            .post(app.url(&format!("/api/cases/{}/orders", d.case_id)))
            .json(&json!({"kind": "contact_ban", "restrained": {"name": "R"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
                "zones": [{"name": "Home", "geometry": {"type": "Point", "coordinates": [18.06, 59.33]}, "radius_m": 200}, zone]}))
            .send()
    };
    let polygon =
        |ring: Value| json!({"name": "Z", "geometry": {"type": "Polygon", "coordinates": [ring]}});
    let bad = [
        (
            "bow tie",
            polygon(json!([
                [18.0, 59.0],
                [18.01, 59.01],
                [18.0, 59.01],
                [18.01, 59.0],
                [18.0, 59.0]
            ])),
        ),
        (
            "no area",
            polygon(json!([
                [18.0, 59.0],
                [18.0, 59.01],
                [18.0, 59.02],
                [18.0, 59.0]
            ])),
        ),
        (
            "the world",
            polygon(json!([
                [-179.0, -89.0],
                [179.0, -89.0],
                [179.0, 89.0],
                [-179.0, 89.0],
                [-179.0, -89.0]
            ])),
        ),
        (
            "swapped",
            json!({"name": "Z", "geometry": {"type": "Point", "coordinates": [59.33, 18.06]}, "radius_m": 200}),
        ),
        (
            "huge circle",
            json!({"name": "Z", "geometry": {"type": "Point", "coordinates": [18.06, 59.33]}, "radius_m": 90000}),
        ),
    ];
    for (what, zone) in bad {
        let (status, p) = problem(order(zone).await.unwrap()).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (422, Some("zones[1].geometry")),
            "{what}: {p}"
        );
    }
    let orders = app
        .get(
            &app.coordinator,
            &format!("/api/cases/{}/orders", d.case_id),
        )
        .await;
    assert_eq!(orders.as_array().unwrap().len(), 1, "only the seeded order");
    let square = polygon(json!([
        [18.0, 59.0],
        [18.01, 59.0],
        [18.01, 59.01],
        [18.0, 59.01],
        [18.0, 59.0]
    ]));
    assert_eq!(order(square).await.unwrap().status(), 201);
}

/// Two instances share PostgreSQL: an order added through one reaches the devices of its
/// case in the other's directory at once (announced), not at its next periodic reload.
#[tokio::test]
async fn an_order_added_through_one_instance_reaches_its_cases_devices_on_another_at_once() {
    let app = TestApp::start().await;
    if !app.database_url.starts_with("postgres") {
        eprintln!("two instances share PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let other = app.other_instance().await;
    let orders_on_other = || {
        other
            .running
            .state
            .directory
            .device(&d.id)
            .and_then(|e| e.context)
            .map(|c| c.orders.len())
    };
    let before = orders_on_other().expect("the other instance knows the device as issued");
    let started = std::time::Instant::now();
    let _: Value = app
        .post(&app.coordinator, &format!("/api/cases/{}/orders", d.case_id), json!({
            "kind": "contact_ban", "restrained": {"name": "Johan Ek"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2030-01-01T00:00:00Z",
            "zones": [{"name": "School", "geometry": {"type": "Point", "coordinates": [18.0, 59.3]}, "radius_m": 200}]
        }))
        .await;
    wait_for(
        "the order on the other instance",
        std::time::Duration::from_secs(10),
        || async { orders_on_other() == Some(before + 1) },
    )
    .await;
    // Well before the periodic reload (every 30 s) could have brought it.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
