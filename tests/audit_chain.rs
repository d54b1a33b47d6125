//! The audit chain is linked under a key derived from the master key: someone who can write
//! to the database can edit an entry, but cannot patch up the links after it, and
//! `vakt audit verify` finds the edit. A chain an older version linked with plain SHA-256
//! is re-linked under the key once, at the start that upgrades it, and only if it holds.
//! Runs on SQLite, and on PostgreSQL with `VAKT_TEST_POSTGRES`.

mod common;

use std::process::Command;

use common::*;
use vakt::audit::{plain_link, Record, GENESIS};
use vakt::domain::now_ms;
use vakt::store::{AuditFilter, SharedStore};

/// One row of `audit_log` as stored: id, at, actor, action, subject, case_id, detail, hash.
type Row = (
    i64,
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn rows(database_url: &str) -> Vec<Row> {
    use sqlx::Connection;
    let query =
        "SELECT id, at, actor, action, subject, case_id, detail, hash FROM audit_log ORDER BY id";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
    }
}

fn record(row: &Row) -> Record<'_> {
    Record {
        at: row.1,
        actor: row.2.as_deref(),
        action: &row.3,
        subject: row.4.as_deref(),
        case_id: row.5.as_deref(),
        detail: row.6.as_deref(),
    }
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Plays an attacker with write access to the database and no master key: gives entry
/// `edit` (if any) a new detail, and recomputes every link from `from` on with SHA-256, the
/// only link such an attacker can compute.
async fn rewrite_with_plain_links(database_url: &str, from: i64, edit: Option<(i64, &str)>) {
    if let Some((id, detail)) = edit {
        tamper(
            database_url,
            &format!(
                "UPDATE audit_log SET detail = {} WHERE id = {id}",
                quoted(detail)
            ),
        )
        .await;
    }
    let mut prev = GENESIS.to_owned();
    for row in rows(database_url).await {
        if row.0 >= from {
            let hash = plain_link(&prev, &record(&row));
            tamper(
                database_url,
                &format!(
                    "UPDATE audit_log SET prev_hash = {}, hash = {} WHERE id = {}",
                    quoted(&prev),
                    quoted(&hash),
                    row.0
                ),
            )
            .await;
            prev = hash;
        } else {
            prev = row.7.clone();
        }
    }
}

async fn write_entries(store: &SharedStore, n: usize) {
    for i in 0..n {
        store
            .audit(
                Some("officer"),
                "person_viewed",
                Some(&format!("p_{i}")),
                None,
                Some("call-back"),
                now_ms(),
            )
            .await
            .unwrap();
    }
}

/// `vakt audit verify` run by an operator on the deployment in `dir`: whether it passed,
/// and what it said.
fn audit_verify(dir: &std::path::Path, database_url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["audit", "verify"])
        .current_dir(dir)
        .env("VAKT_DATA_DIR", dir)
        .env("VAKT_DATABASE_URL", database_url)
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_MASTER_KEY")
        .env("VAKT_LOG", "warn")
        .output()
        .expect("vakt runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn actions(store: &SharedStore) -> Vec<(String, Option<String>)> {
    let filter = AuditFilter {
        limit: 1000,
        ..Default::default()
    };
    let entries = store.audit_entries(&filter).await.unwrap();
    entries.into_iter().map(|e| (e.action, e.detail)).collect()
}

#[tokio::test]
async fn an_entry_rewritten_with_its_sha256_links_recomputed_is_found_by_audit_verify() {
    let app = TestApp::start().await;
    let store = &app.running.state.store;
    write_entries(store, 5).await;
    let (ok, said) = audit_verify(app.dir.path(), &app.database_url);
    assert!(ok, "{said}");
    let target = rows(&app.database_url).await[3].0;

    rewrite_with_plain_links(&app.database_url, target, Some((target, "nothing to see"))).await;

    let verdict = store.verify_audit().await.unwrap();
    assert_eq!(verdict.first_broken, Some(target));
    let (ok, said) = audit_verify(app.dir.path(), &app.database_url);
    assert!(
        !ok && said.contains(&format!("broken at entry {target}")),
        "{said}"
    );
}

#[tokio::test]
async fn a_chain_an_older_version_linked_with_sha256_is_relinked_under_the_key_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    // The chain as an older vakt left it: plain links, and no upgrade recorded.
    let store = open_store(dir.path(), &url).await;
    write_entries(&store, 4).await;
    drop(store);
    rewrite_with_plain_links(&url, 1, None).await;
    tamper(&url, "DELETE FROM data_upgrades").await;
    let plain: Vec<String> = rows(&url).await.into_iter().map(|r| r.7).collect();

    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    let store = &running.state.store;
    let verdict = store.verify_audit().await.unwrap();
    assert_eq!((verdict.entries, verdict.first_broken), (5, None));
    let relinked = rows(&url).await;
    assert!(
        relinked.iter().zip(&plain).all(|(r, p)| &r.7 != p),
        "every link is new"
    );
    let said = actions(store).await;
    assert_eq!(
        said[0],
        (
            "audit_chain_keyed".to_owned(),
            Some(
                "4 entries written before the chain was keyed verified and re-linked under the master key"
                    .to_owned()
            )
        )
    );
    running.stop().await;

    // Once: a restart finds it done and writes nothing.
    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(actions(&running.state.store).await, said);
    running.stop().await;
}

#[tokio::test]
async fn a_broken_chain_an_older_version_left_is_not_relinked_and_its_break_is_put_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    write_entries(&store, 4).await;
    drop(store);
    rewrite_with_plain_links(&url, 1, None).await;
    let edited = rows(&url).await[2].0;
    tamper(
        &url,
        &format!("UPDATE audit_log SET detail = 'nothing to see' WHERE id = {edited}"),
    )
    .await;
    tamper(&url, "DELETE FROM data_upgrades").await;
    let before: Vec<String> = rows(&url).await.into_iter().map(|r| r.7).collect();

    let running = vakt::start(test_config(dir.path(), url.clone()), Default::default())
        .await
        .unwrap();
    let store = &running.state.store;
    let after: Vec<String> = rows(&url).await.into_iter().map(|r| r.7).collect();
    assert_eq!(after[..before.len()], before[..], "left as it was");
    assert_eq!(
        actions(store).await[0],
        (
            "audit_chain_not_keyed".to_owned(),
            Some(format!(
                "the chain written before keying is broken at entry {edited}: left as it was, not re-linked"
            ))
        )
    );
    assert!(store.verify_audit().await.unwrap().first_broken.is_some());
    running.stop().await;
}

#[tokio::test]
async fn a_chain_rewritten_whole_with_sha256_after_the_upgrade_is_not_relinked_at_a_restart() {
    let app = TestApp::start().await;
    write_entries(&app.running.state.store, 3).await;
    let first = rows(&app.database_url).await[0].0;
    rewrite_with_plain_links(&app.database_url, first, Some((first, "nothing to see"))).await;
    let dir = app.dir.path().to_owned();
    let url = app.database_url.clone();
    let keep = app.dir;
    app.running.stop().await;

    let running = vakt::start(test_config(&dir, url.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(
        running
            .state
            .store
            .verify_audit()
            .await
            .unwrap()
            .first_broken,
        Some(first),
        "the rewritten chain was taken as an older version's and re-linked"
    );
    running.stop().await;
    drop(keep);
}
