//! Replacing the master key (`vakt master-key rotate`): afterwards the new key opens every
//! device key, next device key and one-time-code secret and verifies the audit chain, and
//! the old key is refused; a broken chain, the same key, a running instance or a failure
//! midway leave everything as it was. Runs on SQLite, and on PostgreSQL with
//! `VAKT_TEST_POSTGRES`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use vakt::keys::KeyVault;

/// `vakt ARGS` run by an operator on the deployment in `dir`: the master key from
/// `key_file`, or else the data directory's `master.key`.
async fn vakt(dir: &Path, database_url: &str, key_file: Option<&Path>, args: &[&str]) -> Output {
    vakt_with_input(dir, database_url, key_file, args, "").await
}

/// As [`vakt`], with `input` on its standard input. The test's runtime goes on meanwhile: an
/// instance of this test in the middle of a write must finish it, or the command waits.
async fn vakt_with_input(
    dir: &Path,
    database_url: &str,
    key_file: Option<&Path>,
    args: &[&str],
    input: &str,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vakt"));
    command
        .args(args)
        .current_dir(dir)
        .env("VAKT_DATA_DIR", dir)
        .env("VAKT_DATABASE_URL", database_url)
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_MASTER_KEY")
        .env_remove("VAKT_MASTER_KEY_FILE")
        .env("VAKT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(file) = key_file {
        command.env("VAKT_MASTER_KEY_FILE", file);
    }
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command.spawn().expect("vakt runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A new key from `vakt master-key new`, in an owner-only file in `dir`: its text and path.
fn new_key_file(dir: &Path) -> (String, std::path::PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["master-key", "new"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let key = printed.strip_suffix('\n').expect("one line");
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{printed:?}"
    );
    let path = dir.join(format!("new-master-key-{}", &key[..8]));
    write_owner_only(&path, &printed);
    (key.to_owned(), path)
}

fn write_owner_only(path: &Path, text: &str) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn vault_of(key_hex: &str) -> KeyVault {
    KeyVault::from_key_file(key_hex).unwrap()
}

async fn rotate(dir: &Path, database_url: &str, new_key: &Path) -> Output {
    vakt(
        dir,
        database_url,
        None,
        &[
            "master-key",
            "rotate",
            "--new-key-file",
            new_key.to_str().unwrap(),
        ],
    )
    .await
}

/// Rows of the test's database, read behind vakt's back.
async fn rows<T>(database_url: &str, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    }
}

type AuditRow = (
    i64,
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

/// Everything the master key touches, as stored, byte for byte.
#[derive(Debug, PartialEq)]
struct Sealed {
    devices: Vec<(String, String, Option<String>)>,
    totp_secrets: Vec<(String, Option<String>)>,
    audit: Vec<AuditRow>,
    fingerprint: Vec<(String, i64)>,
}

async fn sealed(database_url: &str) -> Sealed {
    Sealed {
        devices: rows(
            database_url,
            "SELECT id, key_hex, next_key_hex FROM devices ORDER BY id",
        )
        .await,
        totp_secrets: rows(
            database_url,
            "SELECT username, totp_secret FROM users ORDER BY username",
        )
        .await,
        audit: rows(
            database_url,
            "SELECT id, at, actor, action, subject, case_id, detail, prev_hash, hash FROM audit_log ORDER BY id",
        )
        .await,
        fingerprint: rows(
            database_url,
            "SELECT fingerprint, since FROM master_key_fingerprint",
        )
        .await,
    }
}

/// A deployment as an operator finds it: an issued device whose key rotation is under way
/// (so it has a next key), a coordinator with a second factor, and their audit entries, made
/// through the real binary. The device's id, its key, its next key, and the coordinator's
/// one-time-code secret.
struct Deployment {
    device: String,
    key: String,
    next_key: String,
    totp_secret: String,
}

async fn seed(dir: &Path, database_url: &str) -> Deployment {
    let store = open_store(dir, database_url).await;
    let (device, key) = seed_issued_devices(&store, dir, vakt::domain::Risk::High, 1)
        .await
        .remove(0);
    drop(store);
    let out = vakt(
        dir,
        database_url,
        None,
        &["device", "rotate-key", "--id", &device],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let next_key = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .expect("the next key is printed")
        .to_owned();
    let out = vakt_with_input(
        dir,
        database_url,
        None,
        &["user", "add", "--username", "kim", "--role", "coordinator"],
        "kim-password-123\n",
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));
    let totp_secret = String::from_utf8_lossy(&out.stdout)
        .split("secret=")
        .nth(1)
        .expect("the second factor is printed")
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    Deployment {
        device,
        key,
        next_key,
        totp_secret,
    }
}

/// The code of the step after this one, so that two logins never take the same step.
fn next_code(secret: &str) -> String {
    vakt::credentials::totp::code_at(secret, chrono::Utc::now().timestamp() / 30 + 1).unwrap()
}

async fn login(addr: std::net::SocketAddr, code: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({"username": "kim", "password": "kim-password-123", "totp": code}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn after_a_rotation_the_new_master_key_opens_every_secret_and_the_chain_and_the_old_one_is_refused(
) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let d = seed(dir.path(), &url).await;
    let old = vault_in(dir.path());
    let old_hex = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let before = sealed(&url).await;
    let (new_hex, new_file) = new_key_file(dir.path());

    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    let entries_before = before.audit.len();
    for expected in [
        "1 device keys, 1 next device keys (of key rotations under way), 1 one-time-code secrets",
        &format!("{entries_before} audit entries"),
        "master.key",
        "vakt audit verify",
        "backups made before now",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert!(!text.contains(&new_hex) && !text.contains(old_hex.trim()));

    // Every sealed value is sealed anew, and opens under the new key only.
    let after = sealed(&url).await;
    let new = vault_of(&new_hex);
    let (id, key_hex, next_key_hex) = &after.devices[0];
    assert_eq!(id, &d.device);
    assert_ne!(key_hex, &before.devices[0].1);
    assert_eq!(new.open(key_hex, id).unwrap().to_hex(), d.key);
    assert!(old.open(key_hex, id).is_err());
    let next_key_hex = next_key_hex.as_deref().unwrap();
    assert_eq!(new.open(next_key_hex, id).unwrap().to_hex(), d.next_key);
    assert!(old.open(next_key_hex, id).is_err());
    let (_, totp) = after.totp_secrets.iter().find(|(u, _)| u == "kim").unwrap();
    let totp = totp.as_deref().unwrap();
    assert_eq!(new.open_totp(totp, "kim").unwrap(), d.totp_secret);
    assert!(old.open_totp(totp, "kim").is_err());
    assert_eq!(after.fingerprint[0].0, new.fingerprint());
    // The chain: the same entries, re-linked, and the rotation's own entry at its end.
    assert_eq!(after.audit.len(), entries_before + 1);
    for (b, a) in before.audit.iter().zip(&after.audit) {
        let fields = |r: &AuditRow| {
            (
                r.0,
                r.1,
                r.2.clone(),
                r.3.clone(),
                r.4.clone(),
                r.5.clone(),
                r.6.clone(),
            )
        };
        assert_eq!(fields(b), fields(a), "the entry as it was");
        assert_ne!(b.8, a.8, "entry {} re-linked", a.0);
    }
    let last = after.audit.last().unwrap();
    assert_eq!(
        (last.2.as_deref(), last.3.as_str()),
        (None, "master_key_rotated")
    );
    let detail = last.6.as_deref().unwrap();
    assert_eq!(
        detail,
        format!("1 device keys, 1 next device keys and 1 one-time-code secrets re-sealed and {entries_before} audit entries re-linked under a new master key")
    );

    // The old key: vakt refuses to start, and to verify the chain.
    let refused = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .err()
        .expect("vakt refuses the old key");
    assert!(
        refused
            .to_string()
            .contains("the database knows another one"),
        "{refused}"
    );
    let out = vakt(dir.path(), &url, None, &["audit", "verify"]).await;
    assert!(!out.status.success(), "{}", said(&out));

    // The new key: vakt starts; the device, still on its old device key, gets its next key
    // in a signed cfg and its panic is answered; the coordinator logs in with a one-time code.
    let mut config = test_config(dir.path(), url.clone());
    config.master_key = Some(vakt::config::Secret(new_hex.clone()));
    let running = vakt::start(config, Default::default()).await.unwrap();
    let device = firmware_sim::SimDevice::connect(firmware_sim::SimOptions {
        host: running.mqtt_host.clone(),
        port: running.mqtt_port,
        device_id: d.device.clone(),
        key: d.key.parse().unwrap(),
        boot: 1,
    })
    .await
    .expect("the device connects with its key");
    wait_for(
        "the device takes up its next key",
        Duration::from_secs(15),
        || async { device.key().to_hex() == d.next_key },
    )
    .await;
    let (boot, seq) = device.alarm("panic", None, None).await.unwrap();
    let answer = device
        .next_feedback(Duration::from_secs(5))
        .await
        .expect("the panic is answered");
    assert_eq!(
        (answer.boot, answer.seq, answer.st.as_str()),
        (boot, seq, "received")
    );
    assert_eq!(
        login(running.http_addr, &next_code(&d.totp_secret)).await,
        200
    );
    assert_eq!(
        running
            .state
            .store
            .verify_audit()
            .await
            .unwrap()
            .first_broken,
        None
    );
    device.disconnect().await.unwrap();
    running.stop().await;

    let out = vakt(dir.path(), &url, Some(&new_file), &["audit", "verify"]).await;
    assert!(out.status.success(), "{}", said(&out));
}

#[tokio::test]
async fn a_rotation_is_refused_naming_the_broken_audit_entry_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    seed(dir.path(), &url).await;
    let ids: Vec<(i64,)> = rows(&url, "SELECT id FROM audit_log ORDER BY id").await;
    let edited = ids[1].0;
    tamper(
        &url,
        &format!("UPDATE audit_log SET detail = 'nothing to see' WHERE id = {edited}"),
    )
    .await;
    let before = sealed(&url).await;
    let (_, new_file) = new_key_file(dir.path());

    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("broken at entry {edited}")) && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(sealed(&url).await, before);
    let out = vakt(dir.path(), &url, None, &["audit", "verify"]).await;
    assert!(
        said(&out).contains(&format!("broken at entry {edited}")),
        "the old key still reads the chain as it was: {}",
        said(&out)
    );
}

#[tokio::test]
async fn the_key_in_use_and_a_file_that_holds_no_key_are_refused_as_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    seed(dir.path(), &url).await;
    let before = sealed(&url).await;
    let in_use = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let same = dir.path().join("same-key");
    write_owner_only(&same, &format!("{in_use}\n"));

    let out = rotate(dir.path(), &url, &same).await;
    assert!(!out.status.success());
    assert!(said(&out).contains("the one in use"), "{}", said(&out));

    let not_a_key = dir.path().join("not-a-key");
    write_owner_only(&not_a_key, &format!("VAKT_MASTER_KEY={in_use}\n"));
    let out = rotate(dir.path(), &url, &not_a_key).await;
    assert!(!out.status.success());
    let text = said(&out);
    assert!(
        text.contains("--new-key-file") && text.contains("64 hex characters"),
        "{text}"
    );
    assert!(
        !text.contains(in_use.trim()),
        "no key in the message: {text}"
    );
    assert_eq!(sealed(&url).await, before);
}

#[tokio::test]
async fn a_rotation_that_fails_at_its_last_step_leaves_everything_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let d = seed(dir.path(), &url).await;
    let before = sealed(&url).await;
    let (new_hex, new_file) = new_key_file(dir.path());

    // Everything is re-sealed and re-linked before the rotation's audit entry is written,
    // the last step; the database refuses that entry.
    common::refuse_audit_entries(&url).await;
    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("audit entries refused"), "{text}");
    assert_eq!(sealed(&url).await, before);
    common::accept_audit_entries(&url).await;

    // The old key still holds everything; a second try goes through.
    let out = vakt(dir.path(), &url, None, &["audit", "verify"]).await;
    assert!(out.status.success(), "{}", said(&out));
    let out = rotate(dir.path(), &url, &new_file).await;
    assert!(out.status.success(), "{}", said(&out));
    let after = sealed(&url).await;
    assert_eq!(
        vault_of(&new_hex)
            .open(&after.devices[0].1, &d.device)
            .unwrap()
            .to_hex(),
        d.key
    );
    let out = vakt(dir.path(), &url, Some(&new_file), &["audit", "verify"]).await;
    assert!(out.status.success(), "{}", said(&out));
}

#[tokio::test]
async fn a_rotation_is_refused_while_an_instance_runs_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    seed(dir.path(), &url).await;
    let (_, new_file) = new_key_file(dir.path());

    // An instance on a shared broker subscription says it is alive every second.
    tamper(
        &url,
        &format!(
            "INSERT INTO instances (client_id, last_seen, is_leader) VALUES ('vakt-2', {}, FALSE)",
            vakt::domain::now_ms()
        ),
    )
    .await;
    let before = sealed(&url).await;
    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("vakt-2") && text.contains("stop every vakt instance"),
        "{text}"
    );
    assert_eq!(sealed(&url).await, before);
    tamper(&url, "DELETE FROM instances").await;

    if !url.starts_with("postgres") {
        // One SQLite file, one process: nothing in the file shows that it runs.
        return;
    }
    // On PostgreSQL every running instance's supervision takes or waits for the leader's
    // lock: the one that holds it shows.
    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    let mut leading = running.state.supervision.leading();
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l))
        .await
        .expect("the instance leads")
        .unwrap();
    let before = sealed(&url).await;
    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("leads supervision"), "{text}");
    assert_eq!(sealed(&url).await, before);
    running.stop().await;

    // Stopped, its lock goes with its connection, and the rotation goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = rotate(dir.path(), &url, &new_file).await;
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the stop: {}",
            said(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_secret_that_does_not_open_under_the_old_key_is_left_as_it_was_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let d = seed(dir.path(), &url).await;
    // Someone who can write to the database put a device key of their own in the clear.
    let planted = vakt::protocol::DeviceKey::generate().to_hex();
    tamper(
        &url,
        &format!(
            "UPDATE devices SET key_hex = '{planted}' WHERE id = '{}'",
            d.device
        ),
    )
    .await;
    let (new_hex, new_file) = new_key_file(dir.path());

    let out = rotate(dir.path(), &url, &new_file).await;
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("the key of device {} does not open", d.device)),
        "{text}"
    );
    let after = sealed(&url).await;
    assert_eq!(after.devices[0].1, planted, "left as it was, not sealed");
    let new = vault_of(&new_hex);
    assert!(new.open(&planted, &d.device).is_err(), "and refused");
    let next = after.devices[0].2.as_deref().unwrap();
    assert_eq!(new.open(next, &d.device).unwrap().to_hex(), d.next_key);
    let detail = after.audit.last().unwrap().6.clone().unwrap();
    assert!(
        detail.starts_with("0 device keys, 1 next device keys and 1 one-time-code secrets")
            && detail.ends_with(
                "; 1 stored values that did not open under the old key left as they were"
            ),
        "{detail}"
    );
}

#[test]
fn master_key_new_prints_a_fresh_key_each_time_without_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // A configuration file that would not load: `new` does not read one.
    std::fs::write(dir.path().join("vakt.toml"), "not = [valid").unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(["master-key", "new"])
            .current_dir(dir.path())
            .env_remove("VAKT_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b);
    for printed in [a, b] {
        let key = printed.strip_suffix('\n').unwrap();
        assert!(key.len() == 64 && key.bytes().all(|c| c.is_ascii_hexdigit()));
        KeyVault::from_key_file(&printed).expect("what it prints is a key file");
    }
}
