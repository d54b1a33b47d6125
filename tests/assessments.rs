//! Structured threat and risk assessments: kept as history, the latest one the case's risk,
//! a change of risk a line on the case's open alerts and the priority of the alerts raised
//! after it, and one reminder when a review date has passed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vakt::domain::{AssessmentMethod, Risk};
use vakt::store::{Audit, NewAssessment, Role};

/// A day `days` from today (UTC), as `YYYY-MM-DD`.
fn in_days(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

fn assessment(method: &str, risk: &str) -> Value {
    json!({
        "method": method, "risk": risk,
        "factors": ["threats to kill", "recent separation"],
        "summary": "Threats escalated after the separation; he knows her workplace.",
        "next_review": in_days(90)
    })
}

async fn post_assessment(app: &TestApp, case_id: &str, body: Value) -> Value {
    app.post(
        &app.coordinator,
        &format!("/api/cases/{case_id}/assessments"),
        body,
    )
    .await
}

async fn history(app: &TestApp, case_id: &str) -> Vec<Value> {
    app.get(
        &app.coordinator,
        &format!("/api/cases/{case_id}/assessments?reason=case%20review"),
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

async fn all_alerts(app: &TestApp) -> Vec<Value> {
    app.get(&app.officer, "/api/alerts?state=open,acknowledged,resolved")
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until an alert about no device satisfies `pred`.
async fn wait_for_notice(app: &TestApp, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(a) = all_alerts(app).await.into_iter().find(|a| pred(a)) {
            return a;
        }
        assert!(Instant::now() < deadline, "no such alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_assessment_becomes_the_cases_risk_and_the_history_lists_every_one_newest_first() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;

    let first = post_assessment(&app, &d.case_id, assessment("SARA", "medium")).await;
    assert_eq!(first["method"], "SARA");
    assert_eq!(first["previous_risk"], "high");
    assert_eq!(first["factors"][0], "threats to kill");
    let second = post_assessment(&app, &d.case_id, assessment("PATRIARK", "critical")).await;
    assert_eq!(second["previous_risk"], "medium");

    let case = app
        .get(&app.coordinator, &format!("/api/cases/{}", d.case_id))
        .await;
    assert_eq!(case["risk"], "critical");
    let list = history(&app, &d.case_id).await;
    let methods: Vec<&str> = list.iter().map(|a| a["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        ["PATRIARK", "SARA"],
        "newest first, the first kept"
    );
    assert_eq!(list[1]["risk"], "medium");
    assert_eq!(list[1]["summary"], first["summary"]);
    assert_eq!(list[0]["assessed_by"], "coordinator");
    assert_eq!(list[0]["next_review"], in_days(90));

    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    let recorded: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "assessment_recorded")
        .collect();
    assert_eq!(recorded.len(), 2, "{audit}");
    assert!(recorded[0]["detail"]
        .as_str()
        .unwrap()
        .contains("PATRIARK risk critical (was medium)"));
}

#[tokio::test]
async fn a_protected_persons_assessments_show_factors_and_summary_only_for_a_stated_reason() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await; // a protected identity
    post_assessment(&app, &d.case_id, assessment("SRA", "high")).await;

    let masked = app
        .get(
            &app.officer,
            &format!("/api/cases/{}/assessments", d.case_id),
        )
        .await;
    assert_eq!(masked[0]["masked"], true);
    assert_eq!(masked[0]["factors"], json!([]));
    assert!(masked[0]["summary"].is_null());
    assert_eq!(masked[0]["risk"], "high", "the risk stays in view");
    assert!(!masked.to_string().contains("workplace"));

    let shown = app
        .get(
            &app.officer,
            &format!(
                "/api/cases/{}/assessments?reason=call%20from%20the%20holder",
                d.case_id
            ),
        )
        .await;
    assert_eq!(shown[0]["masked"], false);
    assert!(shown[0]["summary"].as_str().unwrap().contains("workplace"));
    let audit = app
        .get(&app.admin, &format!("/api/audit?case_id={}", d.case_id))
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "person_revealed"
                && e["actor"] == "officer"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("call from the holder"))),
        "{audit}"
    );
}

#[tokio::test]
async fn a_change_of_risk_is_a_history_line_on_each_open_alert_of_the_case_and_leaves_its_priority()
{
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    device.alarm("panic", None, None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
    let path = format!("/api/alerts/{}", alert["id"]);

    // The same risk again: nothing to tell the officer.
    post_assessment(&app, &d.case_id, assessment("SARA", "high")).await;
    let detail = app.get(&app.officer, &path).await;
    assert!(!detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["action"] == "risk_changed"));

    post_assessment(&app, &d.case_id, assessment("SARA", "low")).await;
    let detail = app.get(&app.officer, &path).await;
    let line = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["action"] == "risk_changed")
        .unwrap_or_else(|| panic!("no line: {detail}"))
        .clone();
    assert_eq!(line["actor"], "coordinator");
    assert_eq!(line["note_code"], "risk_changed");
    assert_eq!(line["note_values"]["from"], "high");
    assert_eq!(line["note_values"]["to"], "low");
    assert_eq!(detail["alert"]["priority"], 1, "a panic stays priority 1");
    assert_eq!(
        detail["alert"]["risk"], "low",
        "the alert shows the case's risk"
    );

    // A resolved alert's history is closed.
    let _: Value = app
        .post(
            &app.officer,
            &format!("{path}/resolve"),
            json!({"outcome": "false_alarm"}),
        )
        .await;
    post_assessment(&app, &d.case_id, assessment("SARA", "critical")).await;
    let detail = app.get(&app.officer, &path).await;
    let lines = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "risk_changed")
        .count();
    assert_eq!(lines, 1, "{detail}");
}

#[tokio::test]
async fn an_alert_raised_after_an_assessment_takes_its_priority_from_the_new_risk() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await; // high risk: tamper is priority 1
    let device = app.connect(&d).await;

    post_assessment(&app, &d.case_id, assessment("SARA", "medium")).await;
    device.alarm("tamper", None, None).await.unwrap();
    let tamper = app.wait_for_alert(&d.id, |a| a["kind"] == "tamper").await;
    assert_eq!(tamper["priority"], 2, "medium risk: {tamper}");
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{}/resolve", tamper["id"]),
            json!({"outcome": "technical"}),
        )
        .await;

    post_assessment(&app, &d.case_id, assessment("PATRIARK", "critical")).await;
    device.alarm("tamper", None, None).await.unwrap();
    let again = app
        .wait_for_alert(&d.id, |a| {
            a["kind"] == "tamper" && a["id"] != tamper["id"] && a["state"] == "open"
        })
        .await;
    assert_eq!(again["priority"], 1, "critical risk: {again}");
}

#[tokio::test]
async fn a_passed_review_raises_exactly_one_priority_4_reminder_and_a_new_assessment_no_other() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let witness = app.issued_device("Stockholm").await;
    post_assessment(&app, &d.case_id, assessment("SARA", "high")).await;
    post_assessment(&app, &witness.case_id, assessment("SARA", "high")).await;
    // Time passes: the review date lies behind us (no request may set one in the past).
    let review_passes = |case_id: String| {
        let url = app.database_url.clone();
        async move {
            let sql = format!(
                "UPDATE risk_assessments SET next_review = '2026-01-15' WHERE case_id = '{case_id}'"
            );
            tamper(&url, &sql).await
        }
    };
    review_passes(d.case_id.clone()).await;
    let touch = |case_id: String| {
        let client = app.coordinator.clone();
        let url = app.url(&format!("/api/cases/{case_id}"));
        async move {
            let resp = client
                .patch(url)
                .json(&json!({"response_plan": "Call first."}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    // A change of the case makes the leader look at it at once (else within a minute).
    touch(d.case_id.clone()).await;
    let reminder = wait_for_notice(&app, |a| {
        a["kind"] == "review_due" && a["case_id"] == d.case_id.as_str()
    })
    .await;
    assert_eq!(reminder["priority"], 4);
    assert!(reminder["device_id"].is_null());
    assert!(
        reminder["reasons"][0]
            .as_str()
            .unwrap()
            .contains("due for review on 2026-01-15"),
        "{reminder}"
    );
    let _: Value = app
        .post(
            &app.officer,
            &format!("/api/alerts/{}/resolve", reminder["id"]),
            json!({"outcome": "other", "note": "review booked"}),
        )
        .await;

    // Looked at again (and a risk set on the case keeps the passed date): no second one.
    touch(d.case_id.clone()).await;
    let resp = app
        .coordinator
        .patch(app.url(&format!("/api/cases/{}", d.case_id)))
        .json(&json!({"risk": "medium"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The witness case's review passes only now, after those changes: once it has its
    // reminder, the leader has looked at every change before it.
    review_passes(witness.case_id.clone()).await;
    touch(witness.case_id.clone()).await;
    wait_for_notice(&app, |a| {
        a["kind"] == "review_due" && a["case_id"] == witness.case_id.as_str()
    })
    .await;
    let of_case = |alerts: &[Value]| {
        alerts
            .iter()
            .filter(|a| a["kind"] == "review_due" && a["case_id"] == d.case_id.as_str())
            .count()
    };
    assert_eq!(of_case(&all_alerts(&app).await), 1);

    // A new assessment with a date ahead ends the need: nothing more is raised.
    post_assessment(&app, &d.case_id, assessment("SARA", "medium")).await;
    let list = history(&app, &d.case_id).await;
    assert_eq!(list[0]["next_review"], in_days(90));
    assert_eq!(list[1]["method"], "other", "the PATCH, kept as history");
    assert_eq!(list[1]["next_review"], "2026-01-15");
    assert_eq!(of_case(&all_alerts(&app).await), 1);
}

#[tokio::test]
async fn a_risk_set_on_the_case_is_kept_as_an_assessment_of_method_other() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let patch = |body: Value| {
        app.coordinator
            .patch(app.url(&format!("/api/cases/{}", d.case_id)))
            .json(&body)
            .send()
    };
    assert_eq!(patch(json!({"risk": "high"})).await.unwrap().status(), 200);
    assert!(
        history(&app, &d.case_id).await.is_empty(),
        "the same risk is no change"
    );
    assert_eq!(patch(json!({"risk": "low"})).await.unwrap().status(), 200);
    let list = history(&app, &d.case_id).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["method"], "other");
    assert_eq!(list[0]["risk"], "low");
    assert_eq!(list[0]["previous_risk"], "high");
    assert_eq!(list[0]["factors"], json!([]));
    assert!(
        list[0]["next_review"].is_null(),
        "no assessment gave a date"
    );
}

#[tokio::test]
async fn a_bad_assessment_is_a_problem_naming_the_field_and_changes_nothing() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    let with = |field: &str, value: Value| {
        let mut body = assessment("SARA", "low");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = assessment("SARA", "low");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("method", json!("sara")), 400, "method"),
        (with("method", json!("SAVRY")), 400, "method"),
        (with("risk", json!("extreme")), 400, "risk"),
        (without("risk"), 400, "risk"),
        (without("factors"), 400, "factors"),
        (with("factors", json!([])), 422, "factors"),
        (with("factors", Value::from(vec!["a"; 31])), 422, "factors"),
        (
            with("factors", json!(["ok", "x".repeat(201)])),
            422,
            "factors[1]",
        ),
        (with("summary", json!("x".repeat(4001))), 422, "summary"),
        (without("next_review"), 400, "next_review"),
        (with("next_review", json!("2027-02-30")), 422, "next_review"),
        (with("next_review", json!("1/6/2027")), 422, "next_review"),
        (with("next_review", json!(in_days(-1))), 422, "next_review"),
        (with("next_review", json!(in_days(800))), 422, "next_review"),
        (with("assessor", json!("x")), 400, "assessor"),
    ];
    for (body, status, field) in cases {
        let resp = app
            .coordinator
            .post(app.url(&format!("/api/cases/{}/assessments", d.case_id)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let got = resp.status().as_u16();
        let p: Value = resp.json().await.unwrap();
        assert_eq!((got, p["field"].as_str()), (status, Some(field)), "{body}");
    }
    assert!(history(&app, &d.case_id).await.is_empty());
    let case = app
        .get(&app.coordinator, &format!("/api/cases/{}", d.case_id))
        .await;
    assert_eq!(case["risk"], "high");

    // Today is a fine review date; a closed case is assessed no more.
    post_assessment(&app, &d.case_id, with("next_review", json!(in_days(0)))).await;
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/close", d.case_id),
            json!({}),
        )
        .await;
    let resp = app
        .coordinator
        .post(app.url(&format!("/api/cases/{}/assessments", d.case_id)))
        .json(&assessment("SARA", "high"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn a_coordinator_of_another_region_neither_records_nor_reads_a_cases_assessments() {
    let app = TestApp::start().await;
    let d = app.issued_device("Stockholm").await;
    post_assessment(&app, &d.case_id, assessment("SARA", "critical")).await;
    let syd = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let path = app.url(&format!("/api/cases/{}/assessments", d.case_id));
    let read = syd.get(&path).send().await.unwrap();
    assert_eq!(read.status(), 404);
    let write = syd
        .post(&path)
        .json(&assessment("SARA", "low"))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 404);
    let officer = app
        .officer
        .post(&path)
        .json(&assessment("SARA", "low"))
        .send()
        .await
        .unwrap();
    assert_eq!(officer.status(), 403);
    assert_eq!(history(&app, &d.case_id).await.len(), 1);
}

#[tokio::test]
async fn erasing_a_closed_case_empties_its_assessments_free_text_and_keeps_the_risk_history() {
    let app = TestApp::start_with(|c| c.supervision.erase_closed_after_days = 0).await;
    let d = app.issued_device("Stockholm").await;
    post_assessment(&app, &d.case_id, assessment("PATRIARK", "critical")).await;
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/close", d.case_id),
            json!({}),
        )
        .await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let list = history(&app, &d.case_id).await;
        if list[0]["factors"] == json!([]) {
            assert!(list[0]["summary"].is_null());
            assert_eq!(list[0]["method"], "PATRIARK");
            assert_eq!(list[0]["risk"], "critical");
            break;
        }
        assert!(Instant::now() < deadline, "never erased: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_store_names_only_the_latest_assessment_of_each_open_case_whose_review_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    seed_issued_devices(&store, dir.path(), Risk::High, 0).await;
    let day = |s: &str| s.parse::<vakt::domain::Day>().unwrap();
    let new = |risk: Risk, next_review: &str| NewAssessment {
        case_id: "c1".into(),
        method: AssessmentMethod::Sara,
        risk,
        factors: vec!["threats".into()],
        summary: None,
        next_review: Some(day(next_review)),
        assessed_by: Some("kim".into()),
    };
    let audit = Audit::new(Some("kim"), "assessment_recorded");
    store
        .record_assessment(&new(Risk::Medium, "2026-03-01"), 1_000, &audit)
        .await
        .unwrap();
    let today = day("2026-06-01");
    let due = store.reviews_passed(today).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].risk, Risk::Medium);
    assert_eq!(due[0].previous_risk, Risk::High);
    assert_eq!(store.case("c1").await.unwrap().risk, Risk::Medium);

    // A newer one with a date ahead: the passed date of the older one no longer counts.
    let (latest, _) = store
        .record_assessment(&new(Risk::Low, "2026-09-01"), 2_000, &audit)
        .await
        .unwrap();
    assert!(store.reviews_passed(today).await.unwrap().is_empty());
    assert_eq!(
        store.latest_assessment("c1").await.unwrap(),
        Some(latest.clone())
    );
    let all = store.assessments("c1").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], latest);
    assert_eq!(
        store.reviews_passed(day("2026-09-02")).await.unwrap().len(),
        1
    );

    // A closed case is reviewed no more.
    store
        .close_case("c1", 3_000, &Audit::new(Some("kim"), "case_closed"))
        .await
        .unwrap();
    assert!(store
        .reviews_passed(day("2026-09-02"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_assessment_whose_audit_entry_fails_leaves_neither_the_assessment_nor_the_risk() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    seed_issued_devices(&store, dir.path(), Risk::High, 0).await;
    refuse_audit_entries(&url).await;
    let new = NewAssessment {
        case_id: "c1".into(),
        method: AssessmentMethod::Patriark,
        risk: Risk::Low,
        factors: vec![],
        summary: None,
        next_review: None,
        assessed_by: None,
    };
    let audit = Audit::new(None, "assessment_recorded");
    assert!(store.record_assessment(&new, 1_000, &audit).await.is_err());
    assert!(store.assessments("c1").await.unwrap().is_empty());
    assert_eq!(store.case("c1").await.unwrap().risk, Risk::High);
}

#[tokio::test]
async fn a_risk_assessed_through_one_instance_is_the_risk_another_prioritises_by_at_once() {
    let app = TestApp::start().await;
    if !app.database_url.starts_with("postgres") {
        eprintln!("two instances share PostgreSQL: set VAKT_TEST_POSTGRES (see .ci/run)");
        return;
    }
    let d = app.issued_device("Stockholm").await;
    let other = app.other_instance().await;
    let risk_on_other = || {
        other
            .running
            .state
            .directory
            .device(&d.id)
            .and_then(|e| e.context)
            .map(|c| c.case.risk)
    };
    assert_eq!(risk_on_other(), Some(Risk::High));
    let started = Instant::now();
    post_assessment(&app, &d.case_id, assessment("PATRIARK", "low")).await;
    wait_for(
        "the new risk on the other instance",
        Duration::from_secs(10),
        || async { risk_on_other() == Some(Risk::Low) },
    )
    .await;
    // Well before the periodic reload (every 30 s) could have brought it.
    assert!(started.elapsed() < Duration::from_secs(10));
}
