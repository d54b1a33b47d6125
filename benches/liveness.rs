//! Liveness at scale: memory per device, CPU per heartbeat, sweep time and detection
//! lateness for 100k and 1M supervised devices.
//!
//! `cargo bench --bench liveness` prints a Markdown table (medians of 5 runs) that
//! docs/benchmarks.md quotes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use vakt::supervise::{Liveness, LivenessEvent};

/// Counts live heap bytes, so memory per device is measured, not estimated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const S: i64 = 1000;

/// A small deterministic generator: the same fleet on every run.
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

struct Run {
    bytes_per_device: f64,
    ns_per_heartbeat: f64,
    sweep_ms_per_simulated_s: f64,
    lateness_p50_ms: i64,
    lateness_p99_ms: i64,
    lateness_max_ms: i64,
    silent: usize,
}

/// One run: `n` devices with 60 s heartbeats (30 s grace) at random phases; every 1000th
/// device stops after 2 minutes; the sweep runs every 200 ms of simulated time for 10
/// simulated minutes.
fn run(n: usize) -> Run {
    let ids: Vec<String> = (0..n).map(|i| format!("dev-{i:07}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut l = Liveness::new(0);
    for id in &ids {
        l.track(id, 60 * S, 30 * S, 0);
    }
    let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64;

    let mut rng = Lcg(7);
    let phase: Vec<i64> = (0..n).map(|_| (rng.next() % 60_000) as i64).collect();
    let stops_at = |i: usize| i.is_multiple_of(1000).then_some(120 * S);
    let mut beats = 0u64;
    let mut beat_time = std::time::Duration::ZERO;
    let mut sweep_time = std::time::Duration::ZERO;
    let mut lateness = Vec::new();
    let mut last_beat = vec![0i64; n];
    let step = 200;
    let mut t = 0;
    // Heartbeats due in each 200 ms step, bucketed by phase.
    let mut by_step: Vec<Vec<u32>> = vec![Vec::new(); (60 * S / step) as usize];
    for (i, p) in phase.iter().enumerate() {
        by_step[(p / step) as usize].push(i as u32);
    }
    while t < 600 * S {
        // The beats of this 200 ms step, each at its own millisecond.
        let bucket = &by_step[((t % (60 * S)) / step) as usize];
        let started = Instant::now();
        for &i in bucket {
            let i = i as usize;
            let at = t + phase[i] % step;
            if stops_at(i).is_some_and(|stop| at >= stop) {
                continue;
            }
            l.heard(&ids[i], at);
            last_beat[i] = at;
            beats += 1;
        }
        beat_time += started.elapsed();
        // The leader sweeps at the end of the step, as it does every 200 ms.
        let started = Instant::now();
        let events = l.sweep(t + step);
        sweep_time += started.elapsed();
        for e in events {
            if let LivenessEvent::Silent {
                device, deadline, ..
            } = e
            {
                let i: usize = device[4..].parse().unwrap();
                assert!(stops_at(i).is_some(), "false silence for {device}");
                let exact_deadline = last_beat[i] + 150 * S;
                assert!(deadline >= exact_deadline, "declared early");
                lateness.push(t + step - exact_deadline);
            }
        }
        t += step;
    }
    lateness.sort_unstable();
    let pct = |p: f64| lateness[((lateness.len() - 1) as f64 * p) as usize];
    Run {
        bytes_per_device: bytes / n as f64,
        ns_per_heartbeat: beat_time.as_nanos() as f64 / beats as f64,
        sweep_ms_per_simulated_s: sweep_time.as_secs_f64() * 1000.0 / 600.0,
        lateness_p50_ms: pct(0.5),
        lateness_p99_ms: pct(0.99),
        lateness_max_ms: *lateness.last().unwrap(),
        silent: l.silent_count(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs = 5;
    println!("| devices | bytes per device | ns per heartbeat | sweep CPU ms per second | lateness p50 / p99 / max (ms) | silent (expected) |");
    println!("|---|---|---|---|---|---|");
    for n in [100_000usize, 1_000_000] {
        let results: Vec<Run> = (0..runs).map(|_| run(n)).collect();
        let r = &results[0];
        println!(
            "| {n} | {:.0} | {:.0} | {:.3} | {} / {} / {} | {} ({}) |",
            median(results.iter().map(|r| r.bytes_per_device).collect()),
            median(results.iter().map(|r| r.ns_per_heartbeat).collect()),
            median(results.iter().map(|r| r.sweep_ms_per_simulated_s).collect()),
            r.lateness_p50_ms,
            r.lateness_p99_ms,
            r.lateness_max_ms,
            r.silent,
            n / 1000,
        );
    }
}
