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

mod store_batches {
    //! The store's side: a batch written in one transaction leaves exactly what its writes
    //! would leave one at a time, whichever path each write takes inside it.

    use super::common::*;
    use vakt::domain::{Alert, AlertKind, AlertState, Position, Priority, Reason, Risk};
    use vakt::store::{MessageWrite, MessageWritten, Raise, SharedStore};

    fn alarm(device: &str, kind: AlertKind, origin: (u32, u32), at: i64) -> MessageWrite {
        MessageWrite::Raise(Raise {
            device_id: device.to_owned(),
            origin: Some(origin),
            answer_device: true,
            case_id: Some("c1".into()),
            region: Some("Stockholm".into()),
            kind,
            priority: Priority::new(1).unwrap(),
            position: Position::new(59.33, 18.06, Some(12)),
            trigger: vec![Reason::new(
                "panic_pressed",
                format!("{} pressed", kind.as_str()),
            )],
            context: vec![Reason::new("text", "case c1")],
            at,
        })
    }

    /// The writes of one batch over eight devices: two fresh alarms, an alarm of a device
    /// whose alert is open, a redelivered alarm, two alarms of one device, a cancel with
    /// nothing open, a fall.
    fn batch(d: &[String]) -> Vec<MessageWrite> {
        vec![
            alarm(&d[0], AlertKind::Panic, (1, 0), 1_000),
            alarm(&d[1], AlertKind::Panic, (1, 0), 1_001),
            alarm(&d[2], AlertKind::Panic, (1, 1), 1_002),
            alarm(&d[3], AlertKind::Panic, (1, 0), 1_003),
            alarm(&d[4], AlertKind::Panic, (1, 0), 1_004),
            alarm(&d[4], AlertKind::Panic, (1, 1), 1_005),
            MessageWrite::Cancel {
                device_id: d[5].clone(),
                boot: 1,
                seq: 0,
                at: 1_006,
            },
            alarm(&d[6], AlertKind::Fall, (1, 0), 1_007),
        ]
    }

    /// What the batch's devices were like before it: an open alert for device 2, message
    /// `(1, 0)` of device 3 on record already.
    async fn before(store: &SharedStore, d: &[String]) {
        for w in [
            alarm(&d[2], AlertKind::Panic, (1, 0), 500),
            alarm(&d[3], AlertKind::Panic, (1, 0), 501),
        ] {
            store.write_messages(&[w]).await.unwrap();
        }
    }

    /// Alarms on record without the alert they went into.
    async fn unlinked_alarms(url: &str) -> i64 {
        use sqlx::{Connection, Row};
        let sql =
            "SELECT count(*) FROM device_messages WHERE kind <> 'cancel' AND alert_id IS NULL";
        if url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sql).fetch_one(&mut c).await.unwrap().get(0)
        } else {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(sql).fetch_one(&mut c).await.unwrap().get(0)
        }
    }

    async fn seeded() -> (tempfile::TempDir, String, SharedStore, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(dir.path()).await;
        let store = open_store(dir.path(), &url).await;
        let devices = seed_issued_devices(&store, dir.path(), Risk::High, 8)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>();
        before(&store, &devices).await;
        (dir, url, store, devices)
    }

    /// An outcome and the alerts, with each device named by its place in the batch.
    fn outcome(w: &MessageWritten) -> String {
        match w {
            MessageWritten::Raise(r) => format!("{r:?}").split('(').next().unwrap().to_owned(),
            MessageWritten::Cancel(c) => format!("{c:?}").split('(').next().unwrap().to_owned(),
            MessageWritten::Record(fresh) => format!("record {fresh}"),
        }
    }

    async fn alerts(store: &SharedStore, d: &[String]) -> Vec<String> {
        let mut alerts: Vec<Alert> = store
            .alerts(&[
                AlertState::Open,
                AlertState::Acknowledged,
                AlertState::Resolved,
            ])
            .await
            .unwrap();
        alerts.sort_by_key(|a| a.id);
        let mut described = Vec::new();
        for a in alerts {
            let device = d
                .iter()
                .position(|id| Some(id) == a.device_id.as_ref())
                .unwrap();
            let history: Vec<String> = store
                .alert_history(a.id)
                .await
                .unwrap()
                .into_iter()
                .map(|h| format!("{} {:?}", h.action, h.note))
                .collect();
            described.push(format!(
                "device {device} {} p{} {:?} count {} first {} last {} at {:?} origin {:?} reasons {:?} history {history:?}",
                a.kind.as_str(),
                a.priority.get(),
                a.state,
                a.count,
                a.first_at,
                a.last_at,
                a.position,
                a.origin,
                a.reasons,
            ));
        }
        // Alerts opened together are numbered in another order than one at a time.
        described.sort();
        described
    }

    #[tokio::test]
    async fn a_batch_written_in_one_transaction_leaves_what_its_writes_leave_one_at_a_time() {
        let (a_dir, a_url, together, a) = seeded().await;
        let (_b_dir, _, one_by_one, b) = seeded().await;

        // Where other instances can hear of changes (PostgreSQL), they hear of each one.
        let elsewhere = open_store(a_dir.path(), &a_url).await;
        let mut announced = elsewhere.changes_from_elsewhere();
        // The instance that made them has had them at commit: it does not read them back.
        let mut own = together.changes_from_elsewhere();
        if announced.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let written = together.write_messages(&batch(&a)).await.unwrap();
        if let Some(announced) = &mut announced {
            let mut expected: Vec<i64> = written
                .iter()
                .filter_map(|w| match w {
                    MessageWritten::Raise(
                        vakt::store::RaiseOutcome::Opened(c)
                        | vakt::store::RaiseOutcome::Updated(c),
                    ) => Some(c.event_seq),
                    _ => None,
                })
                .collect();
            expected.sort_unstable();
            let mut heard = Vec::new();
            while heard.len() < expected.len() {
                let seq = tokio::time::timeout(SETTLE, announced.recv())
                    .await
                    .expect("every change announced")
                    .unwrap();
                heard.push(seq);
            }
            heard.sort_unstable();
            assert_eq!(heard, expected);
            let own = own.as_mut().unwrap();
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(500), own.recv())
                    .await
                    .is_err(),
                "an instance read its own change back"
            );
        }
        let mut each = Vec::new();
        for w in batch(&b) {
            each.extend(one_by_one.write_messages(&[w]).await.unwrap());
        }

        let outcomes: Vec<String> = written.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            [
                "Opened",
                "Opened",
                "Updated",
                "Duplicate",
                "Opened",
                "Updated",
                "NothingOpen",
                "Opened"
            ]
        );
        assert_eq!(outcomes, each.iter().map(outcome).collect::<Vec<_>>());
        assert_eq!(alerts(&together, &a).await, alerts(&one_by_one, &b).await);
        // Every change is numbered for the live stream, each once.
        let changes = together.changes_since(0).await.unwrap();
        assert_eq!(
            changes.len(),
            alerts(&together, &a).await.len(),
            "one latest change per alert"
        );
        // Every alarm is on record with the alert it opened or updated.
        assert_eq!(unlinked_alarms(&a_url).await, 0);
        // A repeat of any of them is a duplicate.
        let again = together.write_messages(&batch(&a)).await.unwrap();
        assert!(again.iter().all(|w| matches!(
            w,
            MessageWritten::Raise(vakt::store::RaiseOutcome::Duplicate)
                | MessageWritten::Cancel(vakt::store::CancelOutcome::Duplicate)
        )));
    }

    #[tokio::test]
    async fn a_batch_the_database_refuses_leaves_nothing_written() {
        let (_dir, url, store, d) = seeded().await;
        super::refuse_messages_of(&url, &d[6]).await;
        let before = alerts(&store, &d).await;

        assert!(store.write_messages(&batch(&d)).await.is_err());

        assert_eq!(alerts(&store, &d).await, before);
        // Without the refused device's alarm, the same writes go through.
        let mut rest = batch(&d);
        rest.pop();
        store.write_messages(&rest).await.unwrap();
    }
}

mod storm_in_the_store {
    //! How many alarms a second the store commits durably in a storm, the ingest's batches
    //! written straight into it: the database's share of an alarm storm, apart from the
    //! broker and the devices (which on a two-core machine take most of it).
    //!
    //! VAKT_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432 \
    //!   cargo test --release --test group_commit -- --ignored --nocapture storm

    use super::common::*;
    use std::time::Instant;
    use vakt::domain::{AlertKind, Position, Priority, Reason, Risk};
    use vakt::store::{MessageWrite, MessageWritten, Raise, RaiseOutcome};

    #[tokio::test]
    #[ignore = "a benchmark: run it on its own, in a release build"]
    async fn a_storm_of_ten_thousand_alarms_is_committed_in_batches_of_the_ingests_size() {
        const DEVICES: usize = 10_000;
        const BATCH: usize = 256;
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(dir.path()).await;
        let store = open_store(dir.path(), &url).await;
        let devices = seed_issued_devices(&store, dir.path(), Risk::High, DEVICES).await;
        let started = Instant::now();
        let mut transactions = 0;
        for chunk in devices.chunks(BATCH) {
            let writes: Vec<MessageWrite> = chunk
                .iter()
                .map(|(id, _)| {
                    MessageWrite::Raise(Raise {
                        device_id: id.clone(),
                        origin: Some((1, 0)),
                        answer_device: true,
                        case_id: Some("c1".into()),
                        region: Some("Stockholm".into()),
                        kind: AlertKind::Panic,
                        priority: Priority::new(1).unwrap(),
                        position: Position::new(59.33, 18.06, Some(12)),
                        trigger: vec![Reason::new("panic_pressed", "Panic button pressed")],
                        context: vec![Reason::new("text", "Case c1, high risk")],
                        at: vakt::domain::now_ms(),
                    })
                })
                .collect();
            let written = store.write_messages(&writes).await.unwrap();
            assert!(written
                .iter()
                .all(|w| matches!(w, MessageWritten::Raise(RaiseOutcome::Opened(_)))));
            transactions += 1;
        }
        let took = started.elapsed();
        println!(
            "{DEVICES} alarms in {transactions} transactions in {:.3} s: {:.0} alarms a second committed",
            took.as_secs_f64(),
            DEVICES as f64 / took.as_secs_f64()
        );
    }
}
