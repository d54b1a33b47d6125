//! Group commit: alarms waiting together are written in one transaction, each is answered
//! only once that transaction committed, and one the database refuses fails only itself.
//! Through real devices, the real broker, the ingest and the store (SQLite by default,
//! PostgreSQL with `VAKT_TEST_POSTGRES`, Mosquitto with `VAKT_TEST_MQTT_URL`).

mod common;

use std::time::Duration;

use common::*;
use firmware_sim::SimDevice;
use sqlx::Connection;

/// Devices in each storm: more than a broker's default window (20), fewer than a batch.
const DEVICES: usize = 40;

/// A transaction of the test's own that holds the database's write lock until dropped, so
/// that the ingest's next write waits and every alarm sent meanwhile queues up behind it.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(database_url: &str) -> WriteLock {
        if database_url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
            for sql in ["BEGIN", "LOCK TABLE device_messages IN EXCLUSIVE MODE"] {
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            WriteLock::Postgres(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            WriteLock::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
            WriteLock::Postgres(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
        }
    }
}

/// Makes the database refuse, for good, every message of `device`.
async fn refuse_messages_of(database_url: &str, device: &str) {
    if database_url.starts_with("postgres") {
        tamper(
            database_url,
            &format!(
                "CREATE FUNCTION refuse_device() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN IF NEW.device_id = '{device}' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$"
            ),
        )
        .await;
        tamper(
            database_url,
            "CREATE TRIGGER refuse_device BEFORE INSERT ON device_messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_device()",
        )
        .await;
    } else {
        tamper(
            database_url,
            &format!(
                "CREATE TRIGGER refuse_device BEFORE INSERT ON device_messages \
                 WHEN NEW.device_id = '{device}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ),
        )
        .await;
    }
}

async fn accept_messages_again(database_url: &str) {
    let on = if database_url.starts_with("postgres") {
        " ON device_messages"
    } else {
        ""
    };
    tamper(database_url, &format!("DROP TRIGGER refuse_device{on}")).await;
}

/// `DEVICES` issued devices, connected.
async fn fleet(app: &TestApp) -> Vec<(IssuedDevice, SimDevice)> {
    let mut devices = Vec::new();
    for _ in 0..DEVICES {
        let d = app.issued_device("Stockholm").await;
        let device = app.connect(&d).await;
        devices.push((d, device));
    }
    devices
}

/// Every device raises a panic (repeated until answered) while the database is held, so
/// that they queue up; then the database is let go. Each panic's `(boot, seq)`, in order.
async fn storm(app: &TestApp, devices: &[(IssuedDevice, SimDevice)]) -> Vec<(u32, u32)> {
    let lock = WriteLock::take(&app.database_url).await;
    let sent = futures_util::future::join_all(
        devices
            .iter()
            .map(|(_, device)| async { device.alarm("panic", None, None).await.unwrap() }),
    )
    .await;
    // Long enough for every alarm to reach the ingest, well short of a device's first
    // repeat (5 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release().await;
    sent
}

#[tokio::test]
async fn alarms_that_arrive_together_share_a_transaction_and_each_is_answered_once_committed() {
    let app = TestApp::start().await;
    let devices = fleet(&app).await;
    let (tx_before, writes_before) = (
        app.metric("vakt_ingest_transactions_total").await,
        app.metric("vakt_ingest_writes_total").await,
    );

    let sent = storm(&app, &devices).await;

    for ((d, device), origin) in devices.iter().zip(sent) {
        let feedback = device.next_feedback(SETTLE).await.unwrap();
        assert_eq!(
            ((feedback.boot, feedback.seq), feedback.st.as_str()),
            (origin, "received"),
            "{}",
            d.id
        );
        let alert = app.wait_for_alert(&d.id, |a| a["kind"] == "panic").await;
        assert_eq!(alert["count"], 1, "{}", d.id);
    }
    let transactions = app.metric("vakt_ingest_transactions_total").await - tx_before;
    let writes = app.metric("vakt_ingest_writes_total").await - writes_before;
    assert_eq!(writes, DEVICES as u64, "one write per alarm");
    // One transaction waited for the lock with what had arrived by then; the rest came in
    // as many as the broker lets be in flight at once (all of them on the embedded broker,
    // 20 on a Mosquitto with its defaults).
    assert!(
        transactions * 8 <= writes,
        "{writes} alarms took {transactions} transactions"
    );
}

#[tokio::test]
async fn an_alarm_the_database_refuses_fails_only_itself_and_is_answered_once_the_database_takes_it(
) {
    let app = TestApp::start().await;
    let devices = fleet(&app).await;
    let (refused, refused_device) = &devices[DEVICES / 2];
    refuse_messages_of(&app.database_url, &refused.id).await;
    let refused_before = app.metric("vakt_store_refused_total").await;

    let sent = storm(&app, &devices).await;
    let refused_origin = sent[DEVICES / 2];

    for ((d, device), origin) in devices.iter().zip(sent) {
        if d.id == refused.id {
            continue;
        }
        let feedback = device.next_feedback(SETTLE).await.unwrap();
        assert_eq!(
            ((feedback.boot, feedback.seq), feedback.st.as_str()),
            (origin, "received"),
            "{}",
            d.id
        );
    }
    app.wait_for_metric("vakt_store_refused_total", refused_before + 1)
        .await;
    assert!(
        refused_device.unanswered_alarms().contains(&refused_origin),
        "the refused alarm was answered"
    );
    let alerts = app
        .get(&app.officer, "/api/alerts?state=open,acknowledged,resolved")
        .await;
    assert!(
        !alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["device_id"] == refused.id.as_str()),
        "a refused alarm left an alert"
    );

    // The device repeats its alarm until it is answered: once the database takes it again,
    // it is stored and answered like any other.
    accept_messages_again(&app.database_url).await;
    let feedback = refused_device.next_feedback(SETTLE).await.unwrap();
    assert_eq!(
        ((feedback.boot, feedback.seq), feedback.st.as_str()),
        (refused_origin, "received")
    );
    let alert = app
        .wait_for_alert(&refused.id, |a| a["kind"] == "panic")
        .await;
    assert_eq!(alert["count"], 1);
}
