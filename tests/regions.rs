//! Regions come from a list: a region typed with another spelling is stored as the list
//! spells it, one that is not there is refused naming the field and the regions there
//! are, a case takes its person's region, admins edit the list, and `vakt regions check`
//! finds data from before the list. On SQLite, and on PostgreSQL with `VAKT_TEST_POSTGRES`.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};
use vakt::domain::{now_ms, Case, Person, Risk};
use vakt::store::{Role, User};

/// Status and body of a request.
async fn send(
    app: &TestApp,
    client: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = client
        .request(method, app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Runs `vakt ARGS` against the test's database: exit success, standard output and error.
fn vakt(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .current_dir(app.dir.path())
        .env("VAKT_DATABASE_URL", &app.database_url)
        .env("VAKT_DATA_DIR", app.dir.path())
        .env_remove("VAKT_CONFIG")
        .env("VAKT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vakt runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_region_refused(what: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 422, "{what}: {body}");
    assert_eq!(body["field"], "region", "{what}: {body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Nord, Stockholm, Syd, Väst, Öst"),
        "{what} says which regions exist: {detail}"
    );
}

#[tokio::test]
async fn every_logged_in_user_reads_the_national_list_of_regions_with_their_local_areas() {
    let app = TestApp::start().await;
    let list = app.get(&app.officer, "/api/regions").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Bergslagen",
            "Mitt",
            "Nord",
            "Stockholm",
            "Syd",
            "Väst",
            "Öst"
        ]
    );
    let stockholm = &list[3];
    assert_eq!(stockholm["code"], "stockholm");
    assert_eq!(stockholm["retired"], false);
    assert!(stockholm["local_areas"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "Södermalm" && a["code"] == "sodermalm"));
    let anonymous = app
        .anonymous
        .get(app.url("/api/regions"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_region_typed_in_another_case_is_stored_as_the_list_spells_it_and_an_unknown_one_is_refused(
) {
    let app = TestApp::start().await;
    let post = reqwest::Method::POST;

    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({"name": "Anna Berg", "region": "NORD"}),
        )
        .await;
    assert_eq!(person["region"], "Nord");
    let refused = send(
        &app,
        &app.coordinator,
        post.clone(),
        "/api/persons",
        json!({"name": "Anna Berg", "region": "norr"}),
    )
    .await;
    assert_region_refused("a person in norr", refused);

    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({"reference": unique("r"), "person_id": person["id"], "risk": "high", "region": "nord"}),
        )
        .await;
    assert_eq!(case["region"], "Nord");
    let refused = send(
        &app,
        &app.coordinator,
        post.clone(),
        "/api/cases",
        json!({"reference": unique("r"), "person_id": person["id"], "risk": "high", "region": "Lappland"}),
    )
    .await;
    assert_region_refused("a case in Lappland", refused);

    let user: Value = app
        .post(
            &app.admin,
            "/api/users",
            json!({"username": "eva", "password": "eva-password-123", "role": "officer", "region": "öst"}),
        )
        .await;
    assert_eq!(user["region"], "Öst");
    let refused = send(
        &app,
        &app.admin,
        post,
        "/api/users",
        json!({"username": "per", "password": "per-password-123", "role": "officer", "region": "Östergötland"}),
    )
    .await;
    assert_region_refused("a user in Östergötland", refused);

    // The officer of Nord sees the case a coordinator typed as "nord".
    let north = app
        .client_for("north-officer", Role::Officer, Some("Nord"))
        .await;
    let cases = app.get(&north, "/api/cases").await;
    assert!(cases
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == case["id"]));
}

#[tokio::test]
async fn a_case_left_without_a_region_takes_its_persons_region() {
    let app = TestApp::start().await;
    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({"name": "Sara Ek", "region": "Väst"}),
        )
        .await;
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({"reference": unique("r"), "person_id": person["id"], "risk": "medium"}),
        )
        .await;
    assert_eq!(case["region"], "Väst");

    // A national person has no region to give: the case must name one.
    let national: Value = app
        .post(&app.coordinator, "/api/persons", json!({"name": "Ida Ek"}))
        .await;
    let (status, body) = send(
        &app,
        &app.coordinator,
        reqwest::Method::POST,
        "/api/cases",
        json!({"reference": unique("r"), "person_id": national["id"], "risk": "medium"}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("region")));

    // A regional coordinator's person is in their region, and so is its case.
    let syd = app
        .client_for("syd-coordinator", Role::Coordinator, Some("Syd"))
        .await;
    let person: Value = app
        .post(&syd, "/api/persons", json!({"name": "Lina Ek"}))
        .await;
    let case: Value = app
        .post(
            &syd,
            "/api/cases",
            json!({"reference": unique("r"), "person_id": person["id"], "risk": "low"}),
        )
        .await;
    assert_eq!(case["region"], "Syd");
}

#[tokio::test]
async fn an_admin_adds_renames_and_retires_regions_and_local_areas_each_change_audited() {
    let app = TestApp::start().await;
    let (patch, post) = (reqwest::Method::PATCH, reqwest::Method::POST);

    let added: Value = app
        .post(
            &app.admin,
            "/api/regions",
            json!({"name": "Gränspolisen", "local_areas": ["Arlanda", "Landvetter"]}),
        )
        .await;
    assert_eq!(added["code"], "granspolisen");
    assert_eq!(added["local_areas"].as_array().unwrap().len(), 2);
    let (status, _) = send(
        &app,
        &app.admin,
        post.clone(),
        "/api/regions",
        json!({"name": "gränspolisen"}),
    )
    .await;
    assert_eq!(status, 409, "two names may not differ by case alone");
    let (status, body) = send(
        &app,
        &app.admin,
        post.clone(),
        "/api/regions",
        json!({"name": "X", "code": "Not A Code"}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("code")));

    // A rename carries the new name to everything in the region: nobody loses sight of it.
    let officer = app
        .client_for("border-officer", Role::Officer, Some("Gränspolisen"))
        .await;
    let person: Value = app
        .post(
            &app.coordinator,
            "/api/persons",
            json!({"name": "Mona Lind", "region": "granspolisen"}),
        )
        .await;
    let case: Value = app
        .post(
            &app.coordinator,
            "/api/cases",
            json!({"reference": unique("r"), "person_id": person["id"], "risk": "high"}),
        )
        .await;
    let (status, renamed) = send(
        &app,
        &app.admin,
        patch.clone(),
        "/api/regions/granspolisen",
        json!({"name": "Gränspolisen Nationellt"}),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["code"], "granspolisen");
    assert_eq!(renamed["name"], "Gränspolisen Nationellt");
    let seen = app
        .get(
            &officer,
            &format!("/api/cases/{}", case["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(seen["region"], "Gränspolisen Nationellt");
    assert_eq!(seen["person"]["region"], "Gränspolisen Nationellt");

    let (status, area) = send(
        &app,
        &app.admin,
        post.clone(),
        "/api/regions/granspolisen/local-areas",
        json!({"name": "Skavsta"}),
    )
    .await;
    assert_eq!((status, area["code"].as_str()), (201, Some("skavsta")));
    let (status, area) = send(
        &app,
        &app.admin,
        patch.clone(),
        "/api/regions/granspolisen/local-areas/arlanda",
        json!({"name": "Arlanda flygplats", "retired": true}),
    )
    .await;
    assert_eq!(status, 200, "{area}");
    assert_eq!(
        (area["name"].as_str(), area["retired"].as_bool()),
        (Some("Arlanda flygplats"), Some(true))
    );

    // A retired region takes no new data, but what it holds stays.
    let (status, retired) = send(
        &app,
        &app.admin,
        patch.clone(),
        "/api/regions/granspolisen",
        json!({"retired": true}),
    )
    .await;
    assert_eq!((status, retired["retired"].as_bool()), (200, Some(true)));
    let (status, body) = send(
        &app,
        &app.coordinator,
        post,
        "/api/persons",
        json!({"name": "Ny Person", "region": "Gränspolisen Nationellt"}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("region")));
    app.get(
        &officer,
        &format!("/api/cases/{}", case["id"].as_str().unwrap()),
    )
    .await;
    let (status, _) = send(
        &app,
        &app.admin,
        patch,
        "/api/regions/no-such-region",
        json!({"retired": true}),
    )
    .await;
    assert_eq!(status, 404);

    let audit = app.get(&app.admin, "/api/audit?limit=100").await;
    let lines: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"].as_str().unwrap().contains("region")
                || e["action"].as_str().unwrap().contains("local_area")
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("region_added", "Gränspolisen"),
        (
            "region_changed",
            "renamed \"Gränspolisen\" to \"Gränspolisen Nationellt\"",
        ),
        ("local_area_added", "Skavsta in Gränspolisen Nationellt"),
        (
            "local_area_changed",
            "renamed \"Arlanda\" to \"Arlanda flygplats\"; retired \"Arlanda\"",
        ),
        ("region_changed", "retired \"Gränspolisen Nationellt\""),
    ] {
        assert!(
            lines
                .iter()
                .any(|(a, d)| a == expected.0 && d == expected.1),
            "{expected:?} in {lines:?}"
        );
    }
}

#[tokio::test]
async fn vakt_user_add_takes_a_region_of_the_list_in_any_case_and_refuses_another() {
    let app = TestApp::start().await;
    let password = "a-long-enough-password\n";
    let (ok, out) = vakt(
        &app,
        &[
            "user",
            "add",
            "--username",
            "lena",
            "--role",
            "officer",
            "--region",
            "syd",
        ],
        password,
    );
    assert!(ok, "{out}");
    let lena = app.running.state.store.user("lena").await.unwrap();
    assert_eq!(lena.region.as_deref(), Some("Syd"));

    let (ok, out) = vakt(
        &app,
        &[
            "user",
            "add",
            "--username",
            "nils",
            "--role",
            "officer",
            "--region",
            "norr",
        ],
        password,
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("\"norr\" is not a region; the regions are: Bergslagen, Mitt, Nord"),
        "{out}"
    );
    assert!(app.running.state.store.user("nils").await.is_err());
}

#[tokio::test]
async fn vakt_regions_check_lists_data_from_before_the_list_and_exits_non_zero_until_it_is_corrected(
) {
    let app = TestApp::start().await;
    let (ok, out) = vakt(&app, &["regions", "check"], "");
    assert!(ok, "a fresh database is consistent: {out}");

    // Rows written before regions came from a list: kept as typed, not rejected on read.
    let store = &app.running.state.store;
    let person = |id: &str, region: &str| Person {
        id: id.into(),
        name: "Old Record".into(),
        phone: None,
        address: None,
        protected_identity: false,
        region: Some(region.into()),
    };
    store
        .insert_person(&person("p-old", "nord"), now_ms(), &SEEDED)
        .await
        .unwrap();
    store
        .insert_person(&person("p-ok", "Syd"), now_ms(), &SEEDED)
        .await
        .unwrap();
    let case = |id: &str, person: &str, region: &str| Case {
        id: id.into(),
        reference: unique("old"),
        person_id: person.into(),
        risk: Risk::High,
        region: region.into(),
        response_plan: None,
        relatives: vec![],
        closed_at: None,
    };
    store
        .insert_case(&case("c-old", "p-old", "nord"), now_ms(), &SEEDED)
        .await
        .unwrap();
    store
        .insert_case(&case("c-apart", "p-ok", "Stockholm"), now_ms(), &SEEDED)
        .await
        .unwrap();
    store
        .insert_user(
            &User {
                username: "old-officer".into(),
                role: Role::Officer,
                region: Some("Norrland".into()),
                password_hash: String::new(),
                totp_secret: None,
            },
            now_ms(),
            &SEEDED,
        )
        .await
        .unwrap();

    let cases = app.get(&app.coordinator, "/api/cases").await;
    assert!(
        cases
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "c-old" && c["region"] == "nord"),
        "old data is read as it was stored"
    );

    let (ok, out) = vakt(&app, &["regions", "check"], "");
    assert!(!ok, "findings make the command fail: {out}");
    for line in [
        "person p-old: region \"nord\" is not in the list (did you mean \"Nord\"?)",
        "case c-old: region \"nord\" is not in the list (did you mean \"Nord\"?)",
        "user old-officer: region \"Norrland\" is not in the list",
        "case c-apart: region \"Stockholm\" differs from its person p-ok's \"Syd\"",
        "4 region finding(s)",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    let findings = vakt::regions::check_store(&**store).await.unwrap();
    assert_eq!(findings.len(), 4);

    // The operator corrects the spelling; what needs a decision is still reported.
    let (ok, out) = vakt(&app, &["regions", "fix-spelling"], "");
    assert!(ok, "{out}");
    assert!(
        out.contains("region \"nord\" to \"Nord\": 2 record(s)"),
        "{out}"
    );
    let north = app
        .client_for("north-officer", Role::Officer, Some("Nord"))
        .await;
    app.get(&north, "/api/cases/c-old").await;
    let audit = app.get(&app.admin, "/api/audit?limit=20").await;
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "region_respelt"
            && e["detail"] == "\"nord\" to \"Nord\": 2 record(s)"));
    let (ok, out) = vakt(&app, &["regions", "check"], "");
    assert!(!ok, "{out}");
    assert!(!out.contains("\"nord\""), "{out}");
    assert!(out.contains("2 region finding(s)"), "{out}");
}
