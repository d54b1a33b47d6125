//! What vakt leaves on disk: owner-only files and directories, and secrets sealed; what an
//! older version left in the clear sealed once at start, and nothing in the clear accepted
//! after that. Runs on SQLite, and on PostgreSQL with `VAKT_TEST_POSTGRES`.

mod common;

use common::*;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_database_wal_and_master_key_are_the_owners_only() {
    let app = TestApp::start_with(|c| {
        c.data_dir = c.data_dir.join("data");
        c.database_url = None;
    })
    .await;
    // A write, so the write-ahead log and its index exist.
    app.issued_device("Stockholm").await;
    let data = app.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for file in ["vakt.db", "vakt.db-wal", "vakt.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_database_file_others_could_read_is_narrowed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vakt.db");
    let url = format!("sqlite://{}", file.display());
    let store = open_store(dir.path(), &url).await;
    drop(store);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = open_store(dir.path(), &url).await;
    assert_eq!(mode(&file), 0o600);
}

/// The `totp_secret` column of `username`, as stored.
async fn stored_totp_secret(database_url: &str, username: &str) -> String {
    use sqlx::Connection;
    let query = "SELECT totp_secret FROM users WHERE username = $1";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(username)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(username)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

fn code_now(secret: &str) -> String {
    vakt::credentials::totp::code_at(secret, chrono::Utc::now().timestamp() / 30).unwrap()
}

async fn login(app: &TestApp, username: &str, password: &str, code: &str) -> u16 {
    app.anonymous
        .post(app.url("/api/login"))
        .json(&serde_json::json!({"username": username, "password": password, "totp": code}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_one_time_code_secret_is_stored_sealed_and_still_opens_the_login() {
    let app = TestApp::start().await;
    let created: serde_json::Value = app
        .post(
            &app.admin,
            "/api/users",
            serde_json::json!({"username": "kim", "password": "kim-password-123", "role": "coordinator"}),
        )
        .await;
    let uri = created["totp_uri"].as_str().unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let stored = stored_totp_secret(&app.database_url, "kim").await;
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(secret));
    assert_eq!(
        login(&app, "kim", "kim-password-123", &code_now(secret)).await,
        200
    );
}

/// A coordinator whose one-time-code secret is `secret`, stored as given (sealed or not).
async fn insert_coordinator(store: &vakt::store::SharedStore, username: &str, secret: String) {
    store
        .insert_user(
            &vakt::store::User {
                username: username.into(),
                role: vakt::store::Role::Coordinator,
                region: None,
                password_hash: vakt::credentials::hash_password(&format!("{username}-password"))
                    .await,
                totp_secret: Some(secret),
            },
            vakt::domain::now_ms(),
            &common::SEEDED,
        )
        .await
        .unwrap();
}

/// The `key_hex` column of device `id`, as stored.
async fn stored_device_key(database_url: &str, id: &str) -> String {
    use sqlx::Connection;
    let query = "SELECT key_hex FROM devices WHERE id = $1";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// The device's alarm, answered `received` (signed with the device's key) within 5 s.
async fn alarm_is_received(running: &vakt::Running, id: &str, key: &str) -> bool {
    let device = firmware_sim::SimDevice::connect(firmware_sim::SimOptions {
        host: running.mqtt_host.clone(),
        port: running.mqtt_port,
        device_id: id.into(),
        key: key.parse().unwrap(),
        boot: 1,
    })
    .await;
    let Ok(device) = device else {
        return false;
    };
    let Ok((boot, seq)) = device.alarm("panic", None, None).await else {
        return false;
    };
    match device
        .next_feedback(std::time::Duration::from_secs(5))
        .await
    {
        Ok(f) => (f.boot, f.seq, f.st.as_str()) == (boot, seq, "received"),
        Err(_) => false,
    }
}

async fn login_at(addr: std::net::SocketAddr, username: &str, code: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({"username": username, "password": format!("{username}-password"), "totp": code}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The code of the step after this one, so that two logins in a test never straddle a step
/// boundary and take the same step by accident.
fn next_code(secret: &str) -> String {
    vakt::credentials::totp::code_at(secret, chrono::Utc::now().timestamp() / 30 + 1).unwrap()
}

#[tokio::test]
async fn a_device_key_and_a_one_time_code_secret_an_older_version_left_in_the_clear_are_sealed_at_start_and_still_work(
) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    // The database as an older vakt left it: a device key and a one-time-code secret in the
    // clear, and no upgrade recorded (the migration that brings the record starts it empty).
    let store = open_store(dir.path(), &url).await;
    let (id, key) = seed_issued_devices(&store, dir.path(), vakt::domain::Risk::High, 1)
        .await
        .remove(0);
    let secret = vakt::credentials::totp::new_secret();
    insert_coordinator(&store, "old-coordinator", secret.clone()).await;
    drop(store);
    tamper(
        &url,
        &format!("UPDATE devices SET key_hex = '{key}' WHERE id = '{id}'"),
    )
    .await;
    tamper(&url, "DELETE FROM data_upgrades").await;

    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    let stored = stored_totp_secret(&url, "old-coordinator").await;
    assert!(
        stored.starts_with("v1:") && !stored.contains(&secret),
        "{stored}"
    );
    let stored = stored_device_key(&url, &id).await;
    assert!(
        stored.starts_with("v1:") && !stored.contains(&key),
        "{stored}"
    );
    let filter = vakt::store::AuditFilter {
        limit: 100,
        ..Default::default()
    };
    let entries = running.state.store.audit_entries(&filter).await.unwrap();
    let sealed = entries.iter().find(|e| e.action == "secrets_sealed");
    assert!(
        sealed.is_some_and(|e| e
            .detail
            .as_deref()
            .unwrap()
            .starts_with("1 device keys and 1 ")),
        "{entries:?}"
    );

    assert!(
        alarm_is_received(&running, &id, &key).await,
        "the device's key opens"
    );
    assert_eq!(
        login_at(running.http_addr, "old-coordinator", &next_code(&secret)).await,
        200
    );
    running.stop().await;
}

#[tokio::test]
async fn a_device_key_or_one_time_code_secret_written_in_the_clear_later_is_refused_and_never_sealed(
) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    let (id, key) = seed_issued_devices(&store, dir.path(), vakt::domain::Risk::High, 1)
        .await
        .remove(0);
    let secret = vakt::credentials::totp::new_secret();
    let vault = vault_in(dir.path());
    insert_coordinator(&store, "kim", vault.seal_totp(&secret, "kim")).await;
    drop(store);
    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert!(alarm_is_received(&running, &id, &key).await);

    // Someone who can write to the database puts values in the clear, hoping vakt takes
    // them: a key of their own making for the device, and a one-time-code secret they know.
    let forged = vakt::protocol::DeviceKey::generate().to_hex();
    tamper(
        &url,
        &format!("UPDATE devices SET key_hex = '{forged}' WHERE id = '{id}'"),
    )
    .await;
    tamper(
        &url,
        &format!("UPDATE users SET totp_secret = '{secret}' WHERE username = 'kim'"),
    )
    .await;
    let err = vault.open(&forged, &id).unwrap_err().to_string();
    assert!(err.contains(&id) && err.contains("not sealed"), "{err}");
    let err = vault.open_totp(&secret, "kim").unwrap_err().to_string();
    assert!(err.contains("kim") && err.contains("not sealed"), "{err}");
    assert_eq!(
        login_at(running.http_addr, "kim", &next_code(&secret)).await,
        401
    );
    running.stop().await;

    // Nor does a restart seal them: the upgrade was done once, for an older version's data.
    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(stored_device_key(&url, &id).await, forged);
    assert_eq!(stored_totp_secret(&url, "kim").await, secret);
    assert!(
        !alarm_is_received(&running, &id, &forged).await,
        "a device key in the clear is taken"
    );
    assert_eq!(
        login_at(running.http_addr, "kim", &next_code(&secret)).await,
        401
    );
    running.stop().await;
}

#[tokio::test]
async fn a_one_time_code_that_logged_in_once_is_refused_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let secret = vakt::credentials::totp::new_secret();
    let store = open_store(dir.path(), &url).await;
    insert_coordinator(
        &store,
        "kim",
        vault_in(dir.path()).seal_totp(&secret, "kim"),
    )
    .await;
    drop(store);
    // Taken once, a step stays taken.
    let code = next_code(&secret);
    let first = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(login_at(first.http_addr, "kim", &code).await, 200);
    first.stop().await;
    let second = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(
        login_at(second.http_addr, "kim", &code).await,
        401,
        "the code was used"
    );
    second.stop().await;
}

#[tokio::test]
async fn another_master_key_is_refused_at_start_before_it_seals_or_links_anything() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    seed_issued_devices(&store, dir.path(), vakt::domain::Risk::High, 1).await;
    drop(store);
    let another = vakt::keys::KeyVault::new(&[9; 32]);

    let refused = vakt::store::open(&url, &another).await.err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("the database knows another one"),
        "{refused}"
    );

    // A database from before the key was recorded: its sealed device key tells.
    tamper(&url, "DELETE FROM master_key_fingerprint").await;
    tamper(&url, "DELETE FROM data_upgrades").await;
    let refused = vakt::store::open(&url, &another).await.err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("a sealed device key does not open"),
        "{refused}"
    );

    // The right key opens it, learns its fingerprint and upgrades it.
    let store = open_store(dir.path(), &url).await;
    assert_eq!(store.verify_audit().await.unwrap().first_broken, None);
    drop(store);
    assert!(vakt::store::open(&url, &another).await.is_err());
}
