//! A change made on someone's behalf and its audit entry are one transaction: when the entry
//! cannot be written, the change is not made either. Runs on SQLite, and on PostgreSQL with
//! `VAKT_TEST_POSTGRES`.

mod common;

use common::*;
use serde_json::{json, Value};
use vakt::domain::DeviceStatus;
use vakt::store::AuditFilter;

/// Makes the database refuse every new audit entry, as a full disk or a broken chain would.
async fn refuse_audit_entries(database_url: &str) {
    if database_url.starts_with("postgres") {
        tamper(
            database_url,
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit entries refused'; END $$",
        )
        .await;
        tamper(
            database_url,
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        )
        .await;
    } else {
        tamper(
            database_url,
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit entries refused'); END",
        )
        .await;
    }
}

async fn accept_audit_entries(database_url: &str) {
    let on = if database_url.starts_with("postgres") {
        " ON audit_log"
    } else {
        ""
    };
    tamper(database_url, &format!("DROP TRIGGER refuse_audit{on}")).await;
}

async fn actions(app: &TestApp) -> Vec<String> {
    let filter = AuditFilter {
        limit: 1000,
        ..Default::default()
    };
    let entries = app.running.state.store.audit_entries(&filter).await;
    entries.unwrap().into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn a_change_whose_audit_entry_cannot_be_written_is_not_made() {
    let app = TestApp::start().await;
    let store = &app.running.state.store;
    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({"name": "Anna Lindqvist", "region": "Stockholm"}),
        )
        .await;
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({"reference": unique("2026"), "person_id": person["id"], "risk": "high"}),
        )
        .await;
    let device: Value = app
        .post(
            &app.coordinator,
            "/api/devices",
            json!({"id": unique("dev"), "kind": "alarm"}),
        )
        .await;
    let device_id = device["id"].as_str().unwrap();
    let cases_before = store.cases().await.unwrap().len();
    let audited_before = actions(&app).await;

    refuse_audit_entries(&app.database_url).await;
    let issue = app
        .coordinator
        .post(app.url(&format!("/api/devices/{device_id}/issue")))
        .json(&json!({"case_id": case["id"], "holder_person_id": person["id"]}))
        .send()
        .await
        .unwrap();
    assert!(issue.status().is_server_error(), "{}", issue.status());
    let create = app
        .coordinator
        .post(app.url("/api/cases"))
        .json(&json!({"reference": unique("2026"), "person_id": person["id"], "risk": "low"}))
        .send()
        .await
        .unwrap();
    assert!(create.status().is_server_error(), "{}", create.status());
    accept_audit_entries(&app.database_url).await;

    assert_eq!(
        store.device(device_id).await.unwrap().status,
        DeviceStatus::InStock,
        "the device was not issued"
    );
    assert_eq!(
        store.cases().await.unwrap().len(),
        cases_before,
        "no case was created"
    );
    assert_eq!(actions(&app).await, audited_before);

    // With the trail writable again, the same change is made and on record once.
    let _issued: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{device_id}/issue"),
            json!({"case_id": case["id"], "holder_person_id": person["id"]}),
        )
        .await;
    assert_eq!(
        store.device(device_id).await.unwrap().status,
        DeviceStatus::Issued
    );
    let after = actions(&app).await;
    assert_eq!(after.len(), audited_before.len() + 1);
    assert_eq!(after[0], "device_issued");
    let verdict = store.verify_audit().await.unwrap();
    assert_eq!(verdict.first_broken, None);
}
