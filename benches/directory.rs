//! A coordinator's change at a million devices: what one change costs the directory and
//! supervision while the ingest holds a snapshot, at 10k, 100k and 1M devices.
//!
//! The fleet is built in memory (sealed keys opened as at start): half as many cases as
//! devices, each with one alarm device, one tag and one order with a zone. Each change is
//! what the directory does once the store has been read (a case's order changed: the
//! case's devices get their new context; a device re-keyed: its entry is read again),
//! then what supervision does with the change it is told (the devices named followed in
//! the liveness table). The store's reads (a handful of indexed queries) are not in it.
//!
//! `cargo bench --bench directory` prints a Markdown table (medians of 3 runs) that
//! docs/benchmarks.md quotes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vakt::config::Config;
use vakt::directory::{CaseRecord, Change, Directory, Register};
use vakt::domain::{
    Area, Case, DeviceKind, DeviceStatus, Order, OrderKind, Person, Restrained, Risk, Zone,
};
use vakt::keys::KeyVault;
use vakt::protocol::DeviceKey;
use vakt::store::DeviceRecord;
use vakt::supervise::{follow, Known, Liveness};

/// Changes measured per kind and run.
const CHANGES: usize = 1000;

/// A small deterministic generator: the same changes on every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn person(i: usize) -> Person {
    Person {
        id: format!("p-{i:07}"),
        name: "Anna Berg".into(),
        phone: None,
        address: None,
        protected_identity: i.is_multiple_of(10),
        region: Some("Stockholm".into()),
    }
}

fn case(i: usize) -> Case {
    Case {
        id: format!("c-{i:07}"),
        reference: format!("2026-{i}"),
        person_id: format!("p-{i:07}"),
        risk: Risk::High,
        region: "Stockholm".into(),
        response_plan: None,
        relatives: vec![],
        closed_at: None,
    }
}

fn order(i: usize, valid_to: i64) -> Order {
    Order {
        id: format!("o-{i:07}"),
        case_id: format!("c-{i:07}"),
        kind: OrderKind::ContactBan,
        restrained: Restrained {
            name: "Erik Nilsson".into(),
            description: None,
            vehicle: None,
            photo_ref: None,
        },
        valid_from: 0,
        valid_to,
        zones: vec![Zone {
            name: "Home".into(),
            area: Area::Circle {
                centre: (59.33, 18.06),
                radius_m: 300.0,
            },
        }],
        tag_device_id: None,
    }
}

/// Device `2i` is case i's alarm device, `2i + 1` its tag.
fn device(vault: &KeyVault, j: usize, key: &DeviceKey) -> DeviceRecord {
    let id = format!("d-{j:07}");
    let kind = if j.is_multiple_of(2) {
        DeviceKind::Alarm
    } else {
        DeviceKind::Tag
    };
    let mut d = DeviceRecord::in_stock(&id, kind, vault.seal(key, &id), 0);
    d.status = DeviceStatus::Issued;
    d.case_id = Some(format!("c-{:07}", j / 2));
    d
}

struct Run {
    order_changed: Vec<Duration>,
    rekeyed: Vec<Duration>,
    supervision: Vec<Duration>,
    release: Vec<Duration>,
    build: Duration,
}

fn run(n: usize) -> Run {
    let vault = Arc::new(KeyVault::new(&[7; 32]));
    let key = DeviceKey::generate();
    let cases = n / 2;
    let started = Instant::now();
    let register = Register {
        devices: (0..n).map(|j| device(&vault, j, &key)).collect(),
        cases: (0..cases).map(case).collect(),
        persons: (0..cases).map(person).collect(),
        orders: (0..cases).map(|i| order(i, 2_000_000_000_000)).collect(),
    };
    let directory = Directory::new(vault.clone());
    directory.load(register);
    let config = Config::default();
    let (records, reported) = (HashMap::new(), HashMap::new());
    let known = Known {
        config: &config,
        records: &records,
        reported: &reported,
        started: 0,
        now: 1_000,
    };
    let mut liveness = Liveness::new(0);
    {
        let index = directory.snapshot();
        let alarms: Vec<String> = (0..n).step_by(2).map(|j| format!("d-{j:07}")).collect();
        follow(
            &mut liveness,
            &index,
            alarms.iter().map(String::as_str),
            &known,
        );
    }
    let build = started.elapsed();
    let mut changes = directory.changes();

    let mut rng = Lcg(11);
    let mut out = Run {
        order_changed: Vec::with_capacity(CHANGES),
        rekeyed: Vec::with_capacity(CHANGES),
        supervision: Vec::with_capacity(2 * CHANGES),
        release: Vec::with_capacity(2 * CHANGES),
        build,
    };
    // What supervision does with one change: the devices it names, followed.
    let mut supervise = |changes: &mut tokio::sync::broadcast::Receiver<Change>| {
        let started = Instant::now();
        let devices: Vec<String> = match changes.try_recv().expect("a change is told") {
            Change::Device(id) => vec![id],
            Change::Case { devices, .. } => devices.to_vec(),
            Change::Reloaded => unreachable!(),
        };
        let index = directory.snapshot();
        follow(
            &mut liveness,
            &index,
            devices.iter().map(String::as_str),
            &known,
        );
        started.elapsed()
    };
    for k in 0..CHANGES {
        // A case's order gets a new end: its devices get their new context.
        let i = rng.next() as usize % cases;
        let record = CaseRecord {
            case: case(i),
            person: person(i),
            orders: vec![order(i, 2_000_000_000_000 + k as i64)],
        };
        // The ingest holds a snapshot, as it does for every message.
        let held = directory.snapshot();
        let started = Instant::now();
        directory.apply_case(&record.case.id.clone(), Some(record));
        out.order_changed.push(started.elapsed());
        out.supervision.push(supervise(&mut changes));
        let started = Instant::now();
        drop(held);
        out.release.push(started.elapsed());

        // A device is re-keyed: its entry is read again, with its case.
        let j = rng.next() as usize % n;
        let rekeyed = device(&vault, j, &DeviceKey::generate());
        let i = j / 2;
        let record = CaseRecord {
            case: case(i),
            person: person(i),
            orders: vec![order(i, 2_000_000_000_000)],
        };
        let held = directory.snapshot();
        let started = Instant::now();
        directory.apply_device(&rekeyed.id.clone(), Some(rekeyed), Some(record));
        out.rekeyed.push(started.elapsed());
        out.supervision.push(supervise(&mut changes));
        let started = Instant::now();
        drop(held);
        out.release.push(started.elapsed());
    }
    assert_eq!(
        liveness.tracked_count(),
        n / 2,
        "every alarm device supervised"
    );
    out
}

fn percentile(v: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p) as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn over_1_ms(v: &[Duration]) -> f64 {
    v.iter().filter(|d| **d > Duration::from_millis(1)).count() as f64
}

fn main() {
    let runs = 3;
    println!("| devices | order changed: median / p95 / p99 (µs) | device re-keyed: median / p95 / p99 (µs) | changes over 1 ms (of {}) | supervision follows it: median / p99 (µs) | reader lets go of its snapshot: median (µs) | built in (s) |", 2 * CHANGES);
    println!("|---|---|---|---|---|---|---|");
    for n in [10_000usize, 100_000, 1_000_000] {
        let results: Vec<Run> = (0..runs).map(|_| run(n)).collect();
        let m = |f: &dyn Fn(&Run) -> f64| median(results.iter().map(f).collect());
        println!(
            "| {n} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.0} | {:.1} / {:.1} | {:.0} | {:.1} |",
            m(&|r| percentile(&r.order_changed, 0.5)),
            m(&|r| percentile(&r.order_changed, 0.95)),
            m(&|r| percentile(&r.order_changed, 0.99)),
            m(&|r| percentile(&r.rekeyed, 0.5)),
            m(&|r| percentile(&r.rekeyed, 0.95)),
            m(&|r| percentile(&r.rekeyed, 0.99)),
            m(&|r| over_1_ms(&r.order_changed) + over_1_ms(&r.rekeyed)),
            m(&|r| percentile(&r.supervision, 0.5)),
            m(&|r| percentile(&r.supervision, 0.99)),
            m(&|r| percentile(&r.release, 0.5)),
            m(&|r| r.build.as_secs_f64()),
        );
    }
}
