//! A change made on someone's behalf and its audit entry are one transaction: when the entry
//! cannot be written, the change is not made either. Runs on SQLite, and on PostgreSQL with
//! `VAKT_TEST_POSTGRES`.

mod common;

use common::*;
use serde_json::{json, Value};
use vakt::domain::{now_ms, DeviceStatus};
use vakt::store::{Audit, AuditFilter};

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

    common::refuse_audit_entries(&app.database_url).await;
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
    common::accept_audit_entries(&app.database_url).await;

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

#[tokio::test]
async fn a_closed_case_is_not_erased_while_its_erasure_cannot_be_audited() {
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
    let case_id = case["id"].as_str().unwrap();
    let person_id = person["id"].as_str().unwrap();
    let _closed: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{case_id}/close"),
            json!({}),
        )
        .await;
    let audited_before = actions(&app).await;
    // What supervision's retention run does, for every case closed before now.
    let erase = || {
        let now = now_ms();
        let audit = Audit::new(None, "case_erased").detail("closed more than 0 days ago");
        async move { store.erase_closed_cases(now + 1, now, &audit).await }
    };

    common::refuse_audit_entries(&app.database_url).await;
    assert!(erase().await.is_err());
    common::accept_audit_entries(&app.database_url).await;
    assert_eq!(
        store.person(person_id).await.unwrap().name,
        "Anna Lindqvist",
        "nothing was erased"
    );
    assert_eq!(actions(&app).await, audited_before);

    let erased = erase().await.unwrap();
    assert!(erased.iter().any(|c| c == case_id), "{erased:?}");
    assert_eq!(store.person(person_id).await.unwrap().name, "(erased)");
    let entries = store
        .audit_entries(&AuditFilter {
            case_id: Some(case_id.to_owned()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries[0].action, "case_erased");
    assert_eq!(entries[0].subject.as_deref(), Some(case_id));
    assert_eq!(store.verify_audit().await.unwrap().first_broken, None);
}

#[tokio::test]
async fn a_key_rotation_is_not_completed_while_its_completion_cannot_be_audited() {
    let app = TestApp::start().await;
    let store = &app.running.state.store;
    let device: Value = app
        .post(
            &app.coordinator,
            "/api/devices",
            json!({"id": unique("dev"), "kind": "alarm"}),
        )
        .await;
    let device_id = device["id"].as_str().unwrap();
    let _rotating: Value = app
        .post(
            &app.coordinator,
            &format!("/api/devices/{device_id}/rotate-key"),
            json!({}),
        )
        .await;
    let before = store.device(device_id).await.unwrap();
    let next = before.key_rotation.next_key_hex.clone().unwrap();
    let audited_before = actions(&app).await;
    // What the ingest does when the device first signs with its next key.
    let complete = || {
        let audit = Audit::new(None, "device_key_rotated").subject(device_id);
        let next = next.clone();
        async move {
            store
                .complete_key_rotation(device_id, &next, now_ms(), &audit)
                .await
        }
    };

    common::refuse_audit_entries(&app.database_url).await;
    assert!(complete().await.is_err());
    common::accept_audit_entries(&app.database_url).await;
    let after = store.device(device_id).await.unwrap();
    assert_eq!(
        after.key_hex, before.key_hex,
        "the old key is still the key"
    );
    assert_eq!(after.key_rotation.next_key_hex, Some(next.clone()));
    assert_eq!(actions(&app).await, audited_before);

    assert!(complete().await.unwrap());
    assert_eq!(store.device(device_id).await.unwrap().key_hex, next);
    assert_eq!(actions(&app).await[0], "device_key_rotated");
    assert!(
        !complete().await.unwrap(),
        "completed once: a second completion changes and audits nothing"
    );
    assert_eq!(
        actions(&app).await.len(),
        audited_before.len() + 1,
        "one entry for the one rotation"
    );
    assert_eq!(store.verify_audit().await.unwrap().first_broken, None);
}
