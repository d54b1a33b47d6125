//! What every attack is measured against: on an untouched target an honest device's panic
//! is answered `received` within a second and becomes a priority-1 alert.

use std::time::Duration;

use crate::on_both;
use crate::target::{Issued, Target};

/// An honest device of `d` raises a panic and must hear its signed `received` within
/// `within`; the alert must exist. Used by the attacks to show the alarm path still holds.
pub async fn panic_is_answered(target: &Target, d: &Issued, within: Duration) {
    let device = target.device(d).await;
    let started = std::time::Instant::now();
    let (boot, seq) = device
        .alarm("panic", Some(crate::common::fix_near_home()), Some(80))
        .await
        .unwrap();
    let feedback = loop {
        let f = device.next_feedback(within).await.unwrap_or_else(|e| {
            panic!(
                "no `received` for {}'s panic within {within:?} ({e}):\n{}",
                d.id,
                target.log()
            )
        });
        if (f.boot, f.seq) == (boot, seq) {
            break f;
        }
    };
    let waited = started.elapsed();
    assert_eq!(feedback.st, "received");
    assert!(
        waited <= within,
        "{}'s panic was answered after {waited:?}, more than {within:?}",
        d.id
    );
    target
        .wait_for_alert(&d.id, |a| a["kind"] == "panic" && a["priority"] == 1)
        .await;
}

async fn an_honest_panic_is_answered_within_a_second(target: &Target) {
    let d = target.issue_device("Nord").await;
    panic_is_answered(target, &d, Duration::from_secs(1)).await;
}

on_both!(
    an_honest_panic_is_answered_within_a_second_on_the_embedded_broker,
    an_honest_panic_is_answered_within_a_second_on_mosquitto_and_postgres,
    an_honest_panic_is_answered_within_a_second
);
