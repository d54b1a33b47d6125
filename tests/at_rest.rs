//! What vakt leaves on disk: owner-only files and directories, and secrets sealed.

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
    let store = vakt::store::open(&url).await.unwrap();
    drop(store);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = vakt::store::open(&url).await.unwrap();
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

#[tokio::test]
async fn a_secret_an_older_version_stored_in_the_clear_is_sealed_at_start_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    // The database as an older vakt left it: the secret in the clear.
    let secret = vakt::credentials::totp::new_secret();
    let store = vakt::store::open(&url).await.unwrap();
    store
        .insert_user(
            &vakt::store::User {
                username: "old-admin".into(),
                role: vakt::store::Role::Admin,
                region: None,
                password_hash: vakt::credentials::hash_password("old-admin-password").await,
                totp_secret: Some(secret.clone()),
            },
            vakt::domain::now_ms(),
            &common::SEEDED,
        )
        .await
        .unwrap();
    drop(store);

    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    let stored = stored_totp_secret(&url, "old-admin").await;
    assert!(
        stored.starts_with("v1:") && !stored.contains(&secret),
        "{stored}"
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/login", running.http_addr))
        .json(&serde_json::json!({"username": "old-admin", "password": "old-admin-password", "totp": code_now(&secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    running.stop().await;
}

#[tokio::test]
async fn a_one_time_code_that_logged_in_once_is_refused_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let secret = vakt::credentials::totp::new_secret();
    let store = vakt::store::open(&url).await.unwrap();
    store
        .insert_user(
            &vakt::store::User {
                username: "kim".into(),
                role: vakt::store::Role::Coordinator,
                region: None,
                password_hash: vakt::credentials::hash_password("kim-password-123").await,
                totp_secret: Some(secret.clone()),
            },
            vakt::domain::now_ms(),
            &common::SEEDED,
        )
        .await
        .unwrap();
    drop(store);
    // Taken once, a step stays taken: the code of the step after is used so that the
    // test does not straddle a step boundary between the two logins.
    let step = chrono::Utc::now().timestamp() / 30 + 1;
    let code = vakt::credentials::totp::code_at(&secret, step).unwrap();
    let login = |addr: std::net::SocketAddr| {
        let code = code.clone();
        async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/api/login"))
                .json(&serde_json::json!({"username": "kim", "password": "kim-password-123", "totp": code}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let first = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(login(first.http_addr).await, 200);
    first.stop().await;
    let second = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(login(second.http_addr).await, 401, "the code was used");
    second.stop().await;
}
