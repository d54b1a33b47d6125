//! The broker's side of durability, tried for real: private Mosquitto processes with the
//! durability settings of `deploy/mosquitto/mosquitto.conf`, vakt, and devices that repeat
//! every alarm until the backend answers `received`. The fault campaign, which adds crashes
//! of vakt, of the broker and of the database, is `tests/fault_campaign.rs`.
//!
//! Needs `mosquitto` installed (Debian: `apt-get install mosquitto`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::mosquitto::Mosquitto;
use common::*;
use firmware_sim::{DeviceKey, SimDevice, SimOptions};
use vakt::domain::Risk;

/// vakt in this process on `broker`, with the test's database in `dir`.
async fn vakt_on(
    broker: &Mosquitto,
    dir: &Path,
    database_url: &str,
    client_id: &str,
) -> vakt::Running {
    let mut config = test_config(dir, database_url.to_owned());
    config.mqtt_url = Some(broker.url());
    config.mqtt_client_id = client_id.to_owned();
    config.mqtt_share_group = unique("durability");
    vakt::start(config, vakt::StartOptions::default())
        .await
        .expect("vakt starts")
}

async fn wait_connected(running: &vakt::Running) {
    let http = running.http_addr;
    wait_for(
        "the ingest to be connected and subscribed",
        Duration::from_secs(15),
        || async move { metric_at(http, "vakt_broker_connected").await == Some(1) },
    )
    .await;
}

const SESSION_LOST: &str = "vakt_broker_session_lost_total";

#[tokio::test]
async fn a_broker_restarted_without_persistence_is_counted_as_a_lost_session() {
    let mut broker = Mosquitto::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let vakt = vakt_on(&broker, dir.path(), &url, &unique("vakt-ingest")).await;
    wait_connected(&vakt).await;
    // The first connection of a new client id has no session to lose.
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));

    broker.kill_9();
    broker.run().await;

    let http = vakt.http_addr;
    wait_for(
        "the lost session to be counted",
        Duration::from_secs(15),
        || async move { metric_at(http, SESSION_LOST).await == Some(1) },
    )
    .await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(1));
    vakt.stop().await;
}

#[tokio::test]
async fn a_persistent_broker_keeps_the_session_and_a_restart_of_vakt_notices_when_it_did_not() {
    let mut broker = Mosquitto::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let client_id = unique("vakt-ingest");
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    let store = open_store(dir.path(), &url).await;
    wait_for("the session to be noted", Duration::from_secs(10), || {
        let store = store.clone();
        let id = client_id.clone();
        async move { store.broker_session_noted(&id).await.unwrap() }
    })
    .await;

    // A clean restart of a persistent broker keeps the session.
    broker.stop();
    broker.run().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));
    vakt.stop().await;

    // So does vakt's own restart.
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(0));
    vakt.stop().await;

    // While vakt is down, the broker comes back without its database: the next run of vakt
    // finds no session although the store says it had one.
    broker.kill_9();
    broker.persistent = false;
    broker.run().await;
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    assert_eq!(metric_at(vakt.http_addr, SESSION_LOST).await, Some(1));
    vakt.stop().await;
}

/// `(device, boot, seq)` of every panic alarm the store took in, in order.
async fn stored_alarms(url: &str) -> Vec<(String, i64, i64)> {
    use sqlx::Connection;
    const SQL: &str =
        "SELECT device_id, boot, seq FROM device_messages WHERE kind = 'panic' ORDER BY 1, 2, 3";
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    }
}

#[tokio::test]
async fn an_alarm_dropped_at_a_full_broker_queue_comes_in_with_a_repeat_once_vakt_is_back() {
    let mut broker = Mosquitto::start(true).await;
    // A queue of 20 stands for the shipped 1,000,000 outlasted by a long outage.
    broker.extra = "max_queued_messages 20\n".into();
    broker.stop();
    broker.run().await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = open_store(dir.path(), &url).await;
    let devices = seed_issued_devices(&store, dir.path(), Risk::High, 1).await;
    let (id, key) = &devices[0];
    let client_id = unique("vakt-ingest");
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;
    let dev = Arc::new(
        SimDevice::connect(SimOptions {
            host: "127.0.0.1".into(),
            port: broker.port,
            device_id: id.clone(),
            key: key.parse::<DeviceKey>().unwrap(),
            boot: 1,
        })
        .await
        .unwrap(),
    );
    // Four heartbeats a second (a device tracking its position sends as many): by the
    // time a dropped alarm's repeat gets through, its seq is far below the newest one.
    let beats = {
        let dev = dev.clone();
        tokio::spawn(async move {
            loop {
                dev.heartbeat(80, false, -70).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // vakt is down while the device sends far more than the broker queues for it.
    vakt.stop().await;
    let mut alarms = Vec::new();
    for _ in 0..12 {
        alarms.push(dev.alarm("panic", None, None).await.unwrap());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let vakt = vakt_on(&broker, dir.path(), &url, &client_id).await;
    wait_connected(&vakt).await;

    // The repeats bring in what the broker dropped, though the device kept beating.
    wait_for(
        "every alarm to be answered",
        Duration::from_secs(120),
        || {
            let dev = dev.clone();
            async move { dev.unanswered_alarms().is_empty() }
        },
    )
    .await;
    beats.abort();
    assert_eq!(dev.dropped_alarms(), 0);
    let stored = stored_alarms(&url).await;
    let sent: Vec<(String, i64, i64)> = alarms
        .iter()
        .map(|(b, s)| (id.clone(), i64::from(*b), i64::from(*s)))
        .collect();
    assert_eq!(stored, sent);
    vakt.stop().await;
    let log = std::fs::read_to_string(broker.log()).unwrap();
    assert!(
        log.contains("dropped"),
        "the broker's queue never overflowed:\n{log}"
    );
}
