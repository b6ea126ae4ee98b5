//! The figures of (c), against the targets.

use crate::death::Kill;

/// The value at quantile `p` of `v` (sorted here; nearest rank).
fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `v` as "1.23, 4.56".
fn list(v: &[f64]) -> String {
    let v: Vec<String> = v.iter().map(|s| format!("{s:.2}")).collect();
    v.join(", ")
}

/// How a figure stands against its target.
fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "MISSES"
    }
}

/// One table row per kill, in the order they happened (worker's machine first).
fn rows(worker: &[Kill], coord: &[Kill]) {
    println!("| kill | machine lost | its server led | detection (events) | resumed | longest silence of results |");
    println!("|---|---|---|---|---|---|");
    let pairs = worker.iter().zip(coord);
    let kills = pairs.flat_map(|(w, c)| [("workers", w), ("coordinator", c)]);
    for (i, (kind, k)) in kills.enumerate() {
        let led = if k.leaders.is_empty() {
            "nothing".to_string()
        } else {
            k.leaders.join(", ")
        };
        println!(
            "| {} | {} ({kind}) | {led} | {:.2} s | {:.2} s | {:.2} s |",
            i + 1,
            k.machine,
            k.detect_event,
            k.resumed,
            k.stall
        );
    }
}

/// Prints (c) against the targets.
pub fn report(worker: &[Kill], coord: &[Kill]) {
    let all: Vec<&Kill> = worker.iter().chain(coord).collect();
    let events: Vec<f64> = all.iter().map(|k| k.detect_event).collect();
    let views: Vec<f64> = all.iter().map(|k| k.detect_views).collect();
    let w: Vec<f64> = worker.iter().map(|k| k.resumed).collect();
    let c: Vec<f64> = coord.iter().map(|k| k.resumed).collect();
    let named: Vec<f64> = coord.iter().filter_map(|k| k.named).collect();
    let ms = |v: f64| v * 1000.0;
    println!("### (c) a whole machine `kill -9`ed (its nats-server and 2 nodes) of 3, while `serve fixture 64` runs continuously\n");
    println!(
        "- detection, kill → `fail` events of both lost nodes delivered (a subscriber on a staying server), {} kills: p50 **{:.0} ms**, p99 **{:.0} ms**, max {:.0} ms; target p99 ≤ 1.5 s: {}",
        events.len(),
        ms(pct(&events, 0.5)),
        ms(pct(&events, 0.99)),
        ms(pct(&events, 1.0)),
        verdict(pct(&events, 0.99) <= 1.5)
    );
    println!(
        "- detection, kill → every staying node's own view shows both failed (polled): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(pct(&views, 0.5)),
        ms(pct(&views, 0.99)),
        ms(pct(&views, 1.0))
    );
    println!(
        "- worker recovery, a machine of workers only lost (every batch pending at the kill answered by others): **{} s** (median {:.2} s); target < 1 s: {}",
        list(&w),
        pct(&w, 0.5),
        verdict(pct(&w, 1.0) < 1.0)
    );
    println!(
        "- coordinator recovery, the coordinator's machine lost (first result of a batch cut by the new coordinator): **{} s** (median {:.2} s; new coordinator named after {} s); target < 2 s: {}",
        list(&c),
        pct(&c, 0.5),
        list(&named),
        verdict(pct(&c, 1.0) < 2.0)
    );
    println!();
    rows(worker, coord);
    println!();
}
