//! Moving a deployment's database whole (`vakt export`, `vakt import`, docs/export.md): from
//! SQLite into PostgreSQL and back, nothing changes by a bit, the audit chain still holds,
//! and an import refuses a damaged export, a database that is not empty and another master
//! key before it writes anything.
//!
//! The PostgreSQL leg runs with `VAKT_TEST_POSTGRES`; without it the move is SQLite to SQLite.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fix_near_home, unique, TestApp, SEEDED};
use serde_json::{json, Value};
use vakt::domain::now_ms;
use vakt::store::{Role, User};

/// A deployment with something of everything: persons, cases with orders and zones, issued
/// devices (keys sealed), an alarm taken in, acknowledged and resolved (alert history and
/// events), a risk assessment, users with tokens and a sealed one-time-code secret, and the
/// audit entries of all of it.
async fn seeded_deployment() -> TestApp {
    let app = TestApp::start_on_sqlite().await;
    let d = app.issued_device("Stockholm").await;
    let _other = app.issued_device("Väst").await;
    let device = app.connect(&d).await;
    device
        .alarm("panic", Some(fix_near_home()), None)
        .await
        .unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    let path = format!("/api/alerts/{}", alert["id"]);
    let _: Value = app
        .post(&app.officer, &format!("{path}/ack"), json!({}))
        .await;
    let _: Value = app
        .post(
            &app.officer,
            &format!("{path}/resolve"),
            json!({"outcome": "false_alarm", "note": "Anna called back: pressed by mistake"}),
        )
        .await;
    let in_90_days = (chrono::Utc::now() + chrono::Duration::days(90))
        .format("%Y-%m-%d")
        .to_string();
    let _: Value = app
        .post(
            &app.coordinator,
            &format!("/api/cases/{}/assessments", d.case_id),
            json!({
                "method": "SARA", "risk": "critical",
                "factors": ["threats to kill", "recent separation"],
                "summary": "Threats escalated; he knows her workplace.", "next_review": in_90_days,
            }),
        )
        .await;
    let created: Value = app
        .post(
            &app.admin,
            "/api/users",
            json!({"username": "Kim", "password": "kim-password-123", "role": "coordinator"}),
        )
        .await;
    assert!(created["totp_uri"].is_string(), "{created}");
    app
}

fn table_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The manifest without what differs between two exports of the same rows.
fn manifest_but_time_and_source(dir: &Path) -> Value {
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["exported_at"] = Value::Null;
    m["source"] = Value::Null;
    m
}

fn rows_of(dir: &Path, table: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(format!("{table}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_same_export(a: &Path, b: &Path) {
    let (fa, fb) = (table_files(a), table_files(b));
    assert_eq!(fa.len(), read_manifest(a).tables.len(), "a file per table");
    assert!(fa.len() > 20);
    for ((name_a, bytes_a), (name_b, bytes_b)) in fa.iter().zip(&fb) {
        assert_eq!(name_a, name_b);
        assert!(
            bytes_a == bytes_b,
            "{name_a} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(fa.len(), fb.len());
    assert_eq!(
        manifest_but_time_and_source(a),
        manifest_but_time_and_source(b)
    );
}

/// Imports `export` into `url` and checks what the import says: every row of every file
/// written, and the audit chain verified under the deployment's master key.
async fn import_and_verify(export: &Path, url: &str, vault: &vakt::keys::KeyVault) {
    let (imported, verdict) = vakt::store::import(url, export, vault)
        .await
        .unwrap_or_else(|e| panic!("import into {url}: {e}"));
    let manifest = read_manifest(export);
    let expected: Vec<(String, u64)> = manifest
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.rows))
        .collect();
    assert_eq!(imported, expected);
    let audit_rows = rows_of(export, "audit_log").len() as u64;
    assert!(audit_rows > 5, "the deployment wrote audit entries");
    assert_eq!(verdict.first_broken, None, "the audit chain holds in {url}");
    assert_eq!(verdict.entries, audit_rows);
}

fn read_manifest(dir: &Path) -> vakt::store::Manifest {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// After an import, new rows take keys after the imported ones (PostgreSQL's identity
/// sequences were moved on) and extend the audit chain where it ended.
async fn a_new_row_follows_the_imported_ones(url: &str, vault: &vakt::keys::KeyVault) {
    let store = vakt::store::open(url, vault).await.unwrap();
    store
        .insert_user(
            &User {
                username: unique("after-import"),
                role: Role::Officer,
                region: None,
                password_hash: "x".into(),
                totp_secret: None,
            },
            now_ms(),
            &SEEDED,
        )
        .await
        .expect("a new audited row after the import");
    let verdict = store.verify_audit().await.unwrap();
    assert_eq!(verdict.first_broken, None);
}

async fn fresh_postgres(server: &str) -> (String, String) {
    let name = unique("vakt_test_import").replace('-', "_");
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
            .await
            .expect("connect to VAKT_TEST_POSTGRES");
    // Swedish collation where the server has ICU, as a Swedish deployment would choose: it
    // sorts text unlike SQLite ("Kim" after "admin"), which the export must not follow.
    let swedish = format!(
        "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' LOCALE 'C.UTF-8'"
    );
    if sqlx::query(sqlx::AssertSqlSafe(swedish))
        .execute(&mut admin)
        .await
        .is_err()
    {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    (format!("{server}/{name}"), name)
}

async fn drop_postgres(server: &str, name: &str) {
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_database_moved_from_sqlite_to_postgresql_and_back_keeps_every_row_bit_for_bit() {
    let app = seeded_deployment().await;
    let vault = common::vault_in(app.dir.path());
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("from-sqlite");
    app.running.stop().await;
    // Thousands of rows under a key of text and numbers whose text sorts differently by
    // bytes and by language ("Dev-" < "dev-" < "dev_" only by bytes).
    common::tamper(
        &app.database_url,
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) \
         INSERT INTO device_messages (device_id, boot, seq, kind, received_at, alert_id) \
         SELECT CASE i % 3 WHEN 0 THEN 'Dev-' WHEN 1 THEN 'dev-' ELSE 'dev_' END || (i % 7), \
                i % 5, i, 'status', 1796000000000 + i, NULL FROM n",
    )
    .await;
    let manifest = vakt::store::export(&app.database_url, &first)
        .await
        .unwrap();
    assert_eq!(manifest.source, "sqlite");
    for table in [
        "persons",
        "cases",
        "orders",
        "devices",
        "alerts",
        "alert_history",
        "alert_events",
        "device_messages",
        "audit_log",
        "risk_assessments",
        "users",
        "api_tokens",
        "regions",
    ] {
        assert!(!rows_of(&first, table).is_empty(), "{table} was seeded");
    }
    // Secrets travel sealed, as stored.
    for device in rows_of(&first, "devices") {
        assert!(device["key_hex"].as_str().unwrap().starts_with("v1:"));
    }
    let kim = rows_of(&first, "users")
        .into_iter()
        .find(|u| u["username"] == "Kim")
        .unwrap();
    assert!(kim["totp_secret"].as_str().unwrap().starts_with("v1:"));
    let messages = rows_of(&first, "device_messages");
    assert!(messages.len() > 12_000);
    let keys: Vec<(String, i64, i64)> = messages
        .iter()
        .map(|m| {
            let id = m["device_id"].as_str().unwrap().to_owned();
            (id, m["boot"].as_i64().unwrap(), m["seq"].as_i64().unwrap())
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "rows in key order, text by bytes"
    );
    let alert = &rows_of(&first, "alerts")[0];
    assert!(alert["lat"].is_f64() && alert["cancel_pressed"].is_boolean());

    let mut legs: Vec<PathBuf> = vec![first.clone()];
    let mut postgres = None;
    match std::env::var("VAKT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(server) => {
            let server = server.trim_end_matches('/').to_owned();
            let (url, name) = fresh_postgres(&server).await;
            import_and_verify(&first, &url, &vault).await;
            let from_postgres = work.path().join("from-postgres");
            let again = vakt::store::export(&url, &from_postgres).await.unwrap();
            assert_eq!(again.source, "postgres");
            a_new_row_follows_the_imported_ones(&url, &vault).await;
            legs.push(from_postgres);
            postgres = Some((server, name));
        }
        None => eprintln!(
            "VAKT_TEST_POSTGRES is not set: the move runs SQLite to SQLite only, without PostgreSQL"
        ),
    }
    let back = format!("sqlite://{}", work.path().join("back.db").display());
    import_and_verify(legs.last().unwrap(), &back, &vault).await;
    let from_back = work.path().join("from-sqlite-again");
    vakt::store::export(&back, &from_back).await.unwrap();
    a_new_row_follows_the_imported_ones(&back, &vault).await;
    legs.push(from_back);

    for leg in &legs[1..] {
        assert_same_export(&first, leg);
    }
    if let Some((server, name)) = postgres {
        drop_postgres(&server, &name).await;
    }
}

/// `vakt import DIR` as an operator runs it, with the deployment's master key in `data`.
fn vakt_import(data: &Path, export: &Path, url: &str, master_key: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vakt"));
    cmd.arg("import")
        .arg(export)
        .current_dir(data)
        .env("VAKT_DATA_DIR", data)
        .env("VAKT_DATABASE_URL", url)
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_MASTER_KEY")
        .env("VAKT_LOG", "warn");
    if let Some(key) = master_key {
        cmd.env("VAKT_MASTER_KEY", key);
    }
    let out = cmd.output().expect("vakt runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// How many users a database holds (none: nothing was imported).
async fn users_in(url: &str) -> i64 {
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Whether the import left the target database alone: not even made.
fn untouched(dir: &Path, file: &str) -> bool {
    !dir.join(file).exists()
}

#[tokio::test]
async fn an_import_refuses_a_changed_file_a_database_not_empty_and_another_master_key() {
    let data = tempfile::tempdir().unwrap();
    let source = format!("sqlite://{}", data.path().join("vakt.db").display());
    let store = common::open_store(data.path(), &source).await;
    common::seed_issued_devices(&store, data.path(), vakt::domain::Risk::High, 2).await;
    drop(store);
    let export = data.path().join("export");
    vakt::store::export(&source, &export).await.unwrap();
    let target = |n: &str| format!("sqlite://{}", data.path().join(n).display());

    // An export into a directory that holds one already is refused.
    let again = vakt::store::export(&source, &export).await;
    assert!(matches!(again, Err(vakt::store::MoveError::OutNotEmpty(_))));

    // A database that is not empty: the source itself.
    let (ok, said) = vakt_import(data.path(), &export, &source, None);
    assert!(
        !ok && said.contains("not empty") && said.contains("table users"),
        "{said}"
    );

    // Another master key than the one the export's secrets are sealed under.
    let other = vakt::keys::new_master_key();
    let (ok, said) = vakt_import(data.path(), &export, &target("other-key.db"), Some(&other));
    assert!(!ok && said.contains("another master key"), "{said}");
    assert_eq!(users_in(&target("other-key.db")).await, 0);

    // One character changed in one file: named, nothing imported.
    let persons = export.join("persons.jsonl");
    let text = std::fs::read_to_string(&persons).unwrap();
    std::fs::write(&persons, text.replacen("Anna", "Anne", 1)).unwrap();
    let (ok, said) = vakt_import(data.path(), &export, &target("tampered.db"), None);
    assert!(
        !ok && said.contains("persons.jsonl") && said.contains("SHA-256"),
        "{said}"
    );
    assert!(untouched(data.path(), "tampered.db"));
    std::fs::write(&persons, text).unwrap();

    // A row dropped and the file's checksum made again: the count no longer holds.
    let manifest_path = export.join("manifest.json");
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut manifest: vakt::store::Manifest = serde_json::from_str(&manifest_text).unwrap();
    let devices = export.join("devices.jsonl");
    let devices_text = std::fs::read_to_string(&devices).unwrap();
    let one_less: String = devices_text
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&devices, &one_less).unwrap();
    let entry = manifest
        .tables
        .iter_mut()
        .find(|t| t.table == "devices")
        .unwrap();
    use sha2::Digest;
    entry.sha256 = hex::encode(sha2::Sha256::digest(one_less.as_bytes()));
    let edited = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(&manifest_path, &edited).unwrap();
    let (ok, said) = vakt_import(data.path(), &export, &target("edited.db"), None);
    assert!(
        !ok && said.contains("manifest.json") && said.contains("tables_sha256"),
        "the manifest's own digest gives the edit away: {said}"
    );
    // With the digest made again too, the row count gives it away.
    manifest.tables_sha256 = vakt::store::tables_digest(&manifest.tables);
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let (ok, said) = vakt_import(data.path(), &export, &target("edited.db"), None);
    assert!(
        !ok && said.contains("devices.jsonl") && said.contains("1 rows, the manifest says 2"),
        "{said}"
    );
    assert!(untouched(data.path(), "edited.db"));
    std::fs::write(&devices, &devices_text).unwrap();

    // A later version of the format is not guessed at.
    let later = manifest_text.replacen("\"format_version\": 1", "\"format_version\": 2", 1);
    assert_ne!(later, manifest_text);
    std::fs::write(&manifest_path, later).unwrap();
    let (ok, said) = vakt_import(data.path(), &export, &target("later.db"), None);
    assert!(
        !ok && said.contains("manifest.json") && said.contains("format version 2"),
        "{said}"
    );
    assert!(untouched(data.path(), "later.db"));
    std::fs::write(&manifest_path, &manifest_text).unwrap();

    // Put back as exported, it imports, and the command says so.
    let (ok, said) = vakt_import(data.path(), &export, &target("good.db"), None);
    assert!(ok && said.contains("audit log intact"), "{said}");
    assert_eq!(users_in(&target("good.db")).await, 1);
}
