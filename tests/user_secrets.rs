//! The secrets people log in with are replaced, not only issued: a user's new password and
//! new second factor end the user's sessions, and a user's API tokens are revoked; at the
//! command line and, for admins only, through the API. Each change is audited and the
//! audit chain still verifies. Runs on SQLite, and on PostgreSQL with `VAKT_TEST_POSTGRES`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use vakt::store::{AuditEntry, AuditFilter};

/// What a `vakt` command printed, run by an operator on the test's deployment.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `vakt ARGS` with `stdin` on the deployment of `app` (its database and master key),
/// off the test's thread so that the running service keeps answering meanwhile.
async fn vakt(app: &TestApp, args: &[&str], stdin: &str) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    let dir = app.dir.path().to_path_buf();
    let url = app.database_url.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .current_dir(&dir)
            .env("VAKT_DATA_DIR", &dir)
            .env("VAKT_DATABASE_URL", &url)
            .env_remove("VAKT_CONFIG")
            .env_remove("VAKT_MASTER_KEY")
            .env_remove("VAKT_MQTT_URL")
            .env("VAKT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vakt runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// `vakt audit verify` passes on the deployment.
async fn assert_audit_verifies(app: &TestApp) {
    let run = vakt(app, &["audit", "verify"], "").await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("chain verified"), "{}", run.stdout);
}

/// The audit entries with this action, oldest first.
async fn audited(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        limit: 1000,
        ..Default::default()
    };
    let mut entries: Vec<AuditEntry> = app
        .running
        .state
        .store
        .audit_entries(&filter)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect();
    entries.reverse();
    entries
}

/// A login's status: 200 with a new session, 401, or 429.
async fn login(app: &TestApp, username: &str, password: &str, totp: Option<&str>) -> u16 {
    app.anonymous
        .post(app.url("/api/login"))
        .json(&json!({"username": username, "password": password, "totp": totp}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A console session (cookie client) logged in as `username`.
async fn session(
    app: &TestApp,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let resp = client
        .post(app.url("/api/login"))
        .json(&json!({"username": username, "password": password, "totp": totp}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{username} logs in");
    client
}

async fn status_of_me(app: &TestApp, client: &reqwest::Client) -> u16 {
    client
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The problem's status and its `field`.
async fn problem(resp: reqwest::Response) -> (u16, Option<String>) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: Value = resp.json().await.unwrap();
    (status, p["field"].as_str().map(str::to_owned))
}

/// The base32 secret of an `otpauth://` URI.
fn secret_of(uri: &str) -> String {
    uri.split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

/// The current 30-second step, and the code of `secret` at `step`.
fn step_now() -> i64 {
    chrono::Utc::now().timestamp() / 30
}

fn code(secret: &str, step: i64) -> String {
    vakt::credentials::totp::code_at(secret, step).unwrap()
}

type Stream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

async fn open_stream(app: &TestApp, client: &reqwest::Client) -> Stream {
    let resp = client
        .get(app.url("/api/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    Box::pin(resp.bytes_stream())
}

/// Reads the stream to its end within `within`; the `session_end` reason it gave last.
async fn end_of(mut stream: Stream, within: Duration) -> Option<String> {
    let mut text = String::new();
    let finished = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "the stream was still open after {within:?}: {text}"
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let data = last.lines().find_map(|l| l.strip_prefix("data:"))?;
    let v: Value = serde_json::from_str(data.trim()).ok()?;
    v["reason"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_password_set_at_the_command_line_replaces_the_old_one_and_ends_the_users_sessions() {
    let app = TestApp::start().await;
    let console = session(&app, "officer", "officer-password-1", None).await;
    assert_eq!(status_of_me(&app, &console).await, 200);

    let short = vakt(
        &app,
        &["user", "set-password", "--username", "officer"],
        "short\n",
    )
    .await;
    assert!(!short.ok, "a short password was taken");
    assert!(
        short.stderr.contains("password: at least 12 characters"),
        "{}",
        short.stderr
    );
    assert_eq!(status_of_me(&app, &console).await, 200, "nothing changed");
    let nobody = vakt(
        &app,
        &["user", "set-password", "--username", "nobody"],
        "a-long-password-9\n",
    )
    .await;
    assert!(!nobody.ok);
    assert!(
        nobody.stderr.contains("no user nobody"),
        "{}",
        nobody.stderr
    );

    let run = vakt(
        &app,
        &["user", "set-password", "--username", "officer"],
        "officer-password-2\n",
    )
    .await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("1 session(s) ended"), "{}", run.stdout);

    assert_eq!(
        status_of_me(&app, &console).await,
        401,
        "the open session is gone"
    );
    assert_eq!(
        login(&app, "officer", "officer-password-1", None).await,
        401
    );
    assert_eq!(
        login(&app, "officer", "officer-password-2", None).await,
        200
    );
    let token = app.officer.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(token.status(), 200, "API tokens are no password: they stay");

    let entries = audited(&app, "user_password_set").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].subject.as_deref(), Some("officer"));
    assert_eq!(entries[0].actor, None, "the operator");
    let all = format!("{:?}", audited(&app, "user_password_set").await);
    assert!(!all.contains("officer-password-2"), "never the password");
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn a_second_factor_reset_at_the_command_line_refuses_the_old_codes_and_takes_the_new() {
    let app = TestApp::start().await;
    let created: Value = app
        .post(
            &app.admin,
            "/api/users",
            json!({"username": "kim", "password": "kim-password-123", "role": "coordinator"}),
        )
        .await;
    let old = secret_of(created["totp_uri"].as_str().unwrap());
    let console = session(
        &app,
        "kim",
        "kim-password-123",
        Some(&code(&old, step_now())),
    )
    .await;
    assert_eq!(status_of_me(&app, &console).await, 200);

    let run = vakt(
        &app,
        &["user", "reset-second-factor", "--username", "kim"],
        "",
    )
    .await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let uri = run
        .stdout
        .lines()
        .find(|l| l.starts_with("otpauth://totp/vakt:kim?secret="))
        .unwrap_or_else(|| panic!("the new URI, printed once: {}", run.stdout));
    let new = secret_of(uri);
    assert_ne!(new, old);

    assert_eq!(
        status_of_me(&app, &console).await,
        401,
        "the open session is gone"
    );
    // A code of the old secret no login has used yet (the step after the one used above,
    // which a login still takes for clock drift): refused.
    let unused_old = code(&old, step_now() + 1);
    assert_eq!(
        login(&app, "kim", "kim-password-123", Some(&unused_old)).await,
        401
    );
    assert_eq!(
        login(
            &app,
            "kim",
            "kim-password-123",
            Some(&code(&new, step_now()))
        )
        .await,
        200
    );

    let entries = audited(&app, "user_second_factor_reset").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].subject.as_deref(), Some("kim"));
    let stored: String = {
        let store = &app.running.state.store;
        store.user("kim").await.unwrap().totp_secret.unwrap()
    };
    assert!(!stored.contains(&new), "sealed at rest");
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn tokens_revoked_at_the_command_line_are_refused_and_listed_no_more() {
    let app = TestApp::start().await;
    let created = vakt(&app, &["token", "create", "--username", "officer"], "").await;
    assert!(created.ok, "{}", created.stderr);
    let second = created.stdout.trim().to_owned();
    let machine = |token: &str| {
        let url = app.url("/api/me");
        let req = reqwest::Client::new().get(url).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(machine(&second).await, 200);

    let listed = vakt(&app, &["token", "list", "--username", "officer"], "").await;
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("officer: 2 token(s)"),
        "{}",
        listed.stdout
    );
    assert_eq!(
        listed.stdout.matches("created 20").count(),
        2,
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(&second), "never a token");

    let revoked = vakt(&app, &["token", "revoke", "--username", "officer"], "").await;
    assert!(revoked.ok, "{}", revoked.stderr);
    assert!(
        revoked.stdout.contains("2 token(s) revoked"),
        "{}",
        revoked.stdout
    );

    assert_eq!(machine(&second).await, 401);
    let first = app.officer.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(first.status(), 401);
    let coordinator = app
        .coordinator
        .get(app.url("/api/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(coordinator.status(), 200, "another user's token stays");
    let listed = vakt(&app, &["token", "list", "--username", "officer"], "").await;
    assert!(
        listed.stdout.contains("officer: 0 token(s)"),
        "{}",
        listed.stdout
    );
    let nobody = vakt(&app, &["token", "revoke", "--username", "nobody"], "").await;
    assert!(
        !nobody.ok && nobody.stderr.contains("no user nobody"),
        "{}",
        nobody.stderr
    );

    let entries = audited(&app, "tokens_revoked").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].subject.as_deref(), Some("officer"));
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn an_admin_sets_a_password_over_the_api_and_the_users_live_stream_ends_at_once() {
    let app = TestApp::start().await;
    let console = session(&app, "officer", "officer-password-1", None).await;
    let stream = open_stream(&app, &console).await;
    let url = app.url("/api/users/officer/password");

    let short = app
        .admin
        .post(&url)
        .json(&json!({"password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(short).await, (422, Some("password".into())));
    let stray = app
        .admin
        .post(&url)
        .json(&json!({"password": "officer-password-2", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(stray).await.0, 400);
    let nobody = app
        .admin
        .post(app.url("/api/users/nobody/password"))
        .json(&json!({"password": "officer-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(nobody).await.0, 404);
    assert_eq!(
        status_of_me(&app, &console).await,
        200,
        "nothing changed yet"
    );

    let started = Instant::now();
    let set = app
        .admin
        .post(&url)
        .json(&json!({"password": "officer-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        end_of(stream, Duration::from_secs(5)).await.as_deref(),
        Some("logged_out")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "at once, not at the next status tick: {:?}",
        started.elapsed()
    );
    assert_eq!(status_of_me(&app, &console).await, 401);
    assert_eq!(
        login(&app, "officer", "officer-password-1", None).await,
        401
    );
    assert_eq!(
        login(&app, "officer", "officer-password-2", None).await,
        200
    );

    let entries = audited(&app, "user_password_set").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0].actor.as_deref(), entries[0].subject.as_deref()),
        (Some("admin"), Some("officer"))
    );
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn an_admin_resets_a_second_factor_and_revokes_tokens_over_the_api() {
    let app = TestApp::start().await;
    let created: Value = app
        .post(
            &app.admin,
            "/api/users",
            json!({"username": "kim", "password": "kim-password-123", "role": "coordinator"}),
        )
        .await;
    let old = secret_of(created["totp_uri"].as_str().unwrap());

    let reset: Value = app
        .post(&app.admin, "/api/users/kim/second-factor", json!({}))
        .await;
    let new = secret_of(reset["totp_uri"].as_str().unwrap());
    assert_ne!(new, old);
    assert_eq!(
        login(
            &app,
            "kim",
            "kim-password-123",
            Some(&code(&old, step_now()))
        )
        .await,
        401
    );
    assert_eq!(
        login(
            &app,
            "kim",
            "kim-password-123",
            Some(&code(&new, step_now()))
        )
        .await,
        200
    );

    // The officer's machine client watches the stream on its token.
    let stream = open_stream(&app, &app.officer).await;
    let listed = app.get(&app.admin, "/api/users/officer/tokens").await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["created_at"].as_array().unwrap().len(), 1);
    let started = Instant::now();
    let revoked = app
        .admin
        .delete(app.url("/api/users/officer/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(
        end_of(stream, Duration::from_secs(5)).await.as_deref(),
        Some("revoked")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let me = app.officer.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);
    assert_eq!(
        app.get(&app.admin, "/api/users/officer/tokens").await["count"],
        0
    );
    let nobody = app
        .admin
        .delete(app.url("/api/users/nobody/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(nobody).await.0, 404);

    assert_eq!(audited(&app, "user_second_factor_reset").await.len(), 1);
    assert_eq!(audited(&app, "tokens_revoked").await.len(), 1);
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn only_admins_replace_other_peoples_secrets_over_the_api() {
    let app = TestApp::start().await;
    let target = "admin";
    let before = app.running.state.store.user(target).await.unwrap();
    for (who, client) in [("officer", &app.officer), ("coordinator", &app.coordinator)] {
        let calls = [
            client
                .post(app.url(&format!("/api/users/{target}/password")))
                .json(&json!({"password": "taken-over-password"})),
            client.post(app.url(&format!("/api/users/{target}/second-factor"))),
            client.get(app.url(&format!("/api/users/{target}/tokens"))),
            client.delete(app.url(&format!("/api/users/{target}/tokens"))),
            // Nor their own: an officer's or coordinator's password is an admin's to reset.
            client
                .post(app.url(&format!("/api/users/{who}/password")))
                .json(&json!({"password": "taken-over-password"})),
        ];
        for call in calls {
            let resp = call.send().await.unwrap();
            let url = resp.url().clone();
            assert_eq!(problem(resp).await.0, 403, "{who}: {url}");
        }
    }
    let anonymous = app
        .anonymous
        .delete(app.url("/api/users/admin/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Nothing changed: the admin's secrets are as they were, and every token still works.
    let after = app.running.state.store.user(target).await.unwrap();
    assert_eq!(
        (after.password_hash, after.totp_secret),
        (before.password_hash, before.totp_secret)
    );
    for client in [&app.admin, &app.officer, &app.coordinator] {
        assert_eq!(status_of_me(&app, client).await, 200);
    }
    assert_eq!(
        login(&app, "officer", "officer-password-1", None).await,
        200
    );
    assert!(audited(&app, "user_password_set").await.is_empty());
    assert!(audited(&app, "tokens_revoked").await.is_empty());
    assert!(audited(&app, "user_second_factor_reset").await.is_empty());
}

#[tokio::test]
async fn users_change_their_own_password_with_the_current_one_and_their_other_sessions_end() {
    let app = TestApp::start().await;
    let here = session(&app, "officer", "officer-password-1", None).await;
    let elsewhere = session(&app, "officer", "officer-password-1", None).await;
    let url = app.url("/api/me/password");

    let wrong = here
        .post(&url)
        .json(&json!({"current_password": "a-guess-at-it", "new_password": "officer-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong).await, (422, Some("current_password".into())));
    let short = here
        .post(&url)
        .json(&json!({"current_password": "officer-password-1", "new_password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(short).await, (422, Some("new_password".into())));
    assert_eq!(
        status_of_me(&app, &elsewhere).await,
        200,
        "nothing changed yet"
    );

    let changed = here
        .post(&url)
        .json(&json!({"current_password": "officer-password-1", "new_password": "officer-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert_eq!(
        status_of_me(&app, &here).await,
        200,
        "the session it came from stays"
    );
    assert_eq!(status_of_me(&app, &elsewhere).await, 401, "the others end");
    assert_eq!(
        login(&app, "officer", "officer-password-1", None).await,
        401
    );
    assert_eq!(
        login(&app, "officer", "officer-password-2", None).await,
        200
    );

    let set = audited(&app, "user_password_set").await;
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(
        (set[0].actor.as_deref(), set[0].subject.as_deref()),
        (Some("officer"), Some("officer"))
    );
    assert_eq!(audited(&app, "password_change_failed").await.len(), 1);
    assert_audit_verifies(&app).await;
}

#[tokio::test]
async fn guessing_the_current_password_is_paced_like_a_login() {
    let app = TestApp::start().await;
    let here = session(&app, "officer", "officer-password-1", None).await;
    let guess = |n: usize| {
        let req = here.post(app.url("/api/me/password")).json(
            &json!({"current_password": format!("guess-number-{n}"), "new_password": "officer-password-2"}),
        );
        async move { req.send().await.unwrap() }
    };
    // Five failures are free, as at the login.
    for n in 0..5 {
        assert_eq!(problem(guess(n).await).await.0, 422, "guess {n}");
    }
    let paced = guess(5).await;
    assert_eq!(paced.status(), 429);
    assert!(paced.headers().contains_key("retry-after"));
    // On the same counters as the login: the right password waits too.
    assert_eq!(
        login(&app, "officer", "officer-password-1", None).await,
        429
    );
    assert_eq!(
        status_of_me(&app, &here).await,
        200,
        "the session is not touched"
    );
}
