//! Login throttling and the single use of one-time codes hold across instances, since both
//! are kept in the database: a guesser gets no more tries from two instances than from one,
//! and a code used on one instance logs in nowhere again. With `VAKT_TEST_POSTGRES`, two
//! vakt instances share one PostgreSQL database and one master key; on SQLite, which serves
//! one instance, "the other instance" is the same one.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use vakt::store::{Role, SharedStore, User};

/// Instance A and instance B of one deployment.
struct Deployment {
    a: vakt::Running,
    b: Option<vakt::Running>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start(users: impl AsyncFnOnce(&SharedStore, &vakt::keys::KeyVault)) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(dir.path()).await;
        let store = open_store(dir.path(), &url).await;
        users(&store, &vault_in(dir.path())).await;
        drop(store);
        // One data directory, so one master key, as instances of a deployment share it.
        let start = || vakt::start(test_config(dir.path(), url.clone()), Default::default());
        let a = start().await.expect("instance A starts");
        let b = match url.starts_with("postgres") {
            true => Some(start().await.expect("instance B starts")),
            false => None,
        };
        Deployment { a, b, _dir: dir }
    }

    fn a(&self) -> SocketAddr {
        self.a.http_addr
    }

    fn b(&self) -> SocketAddr {
        self.b.as_ref().unwrap_or(&self.a).http_addr
    }

    async fn stop(self) {
        if let Some(b) = self.b {
            b.stop().await;
        }
        self.a.stop().await;
    }
}

async fn add_user(store: &SharedStore, username: &str, role: Role, totp_secret: Option<String>) {
    store
        .insert_user(
            &User {
                username: username.into(),
                role,
                region: None,
                password_hash: vakt::credentials::hash_password(&format!("{username}-password"))
                    .await,
                totp_secret,
            },
            vakt::domain::now_ms(),
            &SEEDED,
        )
        .await
        .unwrap();
}

async fn login(at: SocketAddr, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{at}/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn password(username: &str, password: &str) -> serde_json::Value {
    json!({"username": username, "password": password})
}

#[tokio::test]
async fn failures_on_one_instance_slow_the_next_guess_on_the_other() {
    let deployment = Deployment::start(async |store, _| {
        add_user(store, "anna", Role::Officer, None).await;
    })
    .await;
    for _ in 0..5 {
        let resp = login(deployment.a(), password("anna", "guess")).await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login(deployment.b(), password("anna", "anna-password")).await;
    assert_eq!(resp.status(), 429, "the sixth try in a row waits, on B too");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_sent_to_both_instances_at_once_all_count() {
    let deployment = Deployment::start(async |store, _| {
        add_user(store, "anna", Role::Officer, None).await;
    })
    .await;
    let guesses = (0..12).map(|i| {
        let at = if i % 2 == 0 {
            deployment.a()
        } else {
            deployment.b()
        };
        tokio::spawn(async move { login(at, password("anna", "guess")).await.status() })
    });
    let mut answers = Vec::new();
    for g in guesses {
        answers.push(g.await.unwrap().as_u16());
    }
    answers.sort();
    assert_eq!(
        answers,
        [[401; 5].as_slice(), [429; 7].as_slice()].concat(),
        "five free tries between the two instances, no more"
    );
    deployment.stop().await;
}

#[tokio::test]
async fn a_failure_counted_on_one_instance_is_not_overwritten_by_the_other() {
    let deployment = Deployment::start(async |_, _| {}).await;
    let (a, b) = (
        &deployment.a.state.store,
        &deployment.b.as_ref().unwrap_or(&deployment.a).state.store,
    );
    let key = vakt::web::throttle::key("anna", "192.0.2.7");
    let now = vakt::domain::now_ms();
    // Both instances read the counters at the same moment and decide to count a failure.
    let seen_on_a = a.login_counters(&key).await.unwrap();
    let seen_on_b = b.login_counters(&key).await.unwrap();
    let on_a = vakt::web::throttle::pace(&seen_on_a, now).unwrap();
    let on_b = vakt::web::throttle::pace(&seen_on_b, now).unwrap();
    assert!(a
        .count_login_failure(&key, &seen_on_a, on_a.0, on_a.1)
        .await
        .unwrap());
    assert!(
        !b.count_login_failure(&key, &seen_on_b, on_b.0, on_b.1)
            .await
            .unwrap(),
        "B's write would have overwritten A's count"
    );
    // B's throttle reads again and counts on top: both failures are counted.
    let throttle = vakt::web::throttle::Throttle::default();
    assert!(throttle
        .attempt(&**b, "anna", "192.0.2.7", now)
        .await
        .unwrap()
        .is_ok());
    let counted = a.login_counters(&key).await.unwrap();
    assert_eq!(counted.user_at_address.unwrap().failures, 2);
    assert_eq!(counted.address.unwrap().failures, 2);
    deployment.stop().await;
}

#[tokio::test]
async fn a_one_time_code_used_on_one_instance_is_refused_on_the_other() {
    let kim = vakt::credentials::totp::new_secret();
    let bo = vakt::credentials::totp::new_secret();
    let (kim_secret, bo_secret) = (kim.clone(), bo.clone());
    let deployment = Deployment::start(async move |store, vault| {
        let sealed = |secret: &str, user: &str| Some(vault.seal_totp(secret, user));
        add_user(store, "kim", Role::Coordinator, sealed(&kim_secret, "kim")).await;
        add_user(store, "bo", Role::Coordinator, sealed(&bo_secret, "bo")).await;
    })
    .await;
    // The code of the step after this one: both logins use the same step, whatever the
    // clock does between them.
    let step = chrono::Utc::now().timestamp() / 30 + 1;
    let code = |secret: &str| vakt::credentials::totp::code_at(secret, step).unwrap();
    let with_code = |user: &str, code: String| json!({"username": user, "password": format!("{user}-password"), "totp": code});

    let resp = login(deployment.a(), with_code("kim", code(&kim))).await;
    assert_eq!(resp.status(), 200);
    let resp = login(deployment.b(), with_code("kim", code(&kim))).await;
    assert_eq!(resp.status(), 401, "the code was used on A");
    // B checks codes all right: another user's fresh code logs in there.
    let resp = login(deployment.b(), with_code("bo", code(&bo))).await;
    assert_eq!(resp.status(), 200);
    deployment.stop().await;
}
