//! Replica placement (sans-IO): rendezvous hashing of a file name over the live nodes.
//!
//! Every node computes the same ranking from the same inputs, and removing a node moves only
//! the files it held: each file's next-ranked node takes its place.

use sha2::{Digest, Sha256};

/// The score of `node` for `name`: the first 8 bytes of sha256(name, NUL, node).
fn score(name: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// All `nodes` ranked for `name`, best first (ties broken by id).
pub fn rank<'a>(name: &str, nodes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = nodes.into_iter().map(|n| (score(name, n), n)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, n)| n).collect()
}

/// The replica set of `name`: the `rf` best-ranked live nodes (fewer if fewer are live).
pub fn replicas<'a>(
    name: &str,
    live: impl IntoIterator<Item = &'a str>,
    rf: usize,
) -> Vec<&'a str> {
    let mut ranked = rank(name, live);
    ranked.truncate(rf);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn placement_is_deterministic_and_order_free() {
        let ids = nodes(7);
        let forward = replicas("a/b.txt", ids.iter().map(String::as_str), 4);
        let backward = replicas("a/b.txt", ids.iter().rev().map(String::as_str), 4);
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), 4);
    }

    #[test]
    fn effective_rf_is_capped_by_live_nodes() {
        let ids = nodes(2);
        assert_eq!(replicas("x", ids.iter().map(String::as_str), 4).len(), 2);
    }

    #[test]
    fn losing_a_node_moves_only_its_files() {
        let ids = nodes(10);
        let all: Vec<&str> = ids.iter().map(String::as_str).collect();
        let without: Vec<&str> = all.iter().copied().filter(|n| *n != "n3").collect();
        for f in 0..200 {
            let name = format!("file-{f}");
            let before = replicas(&name, all.iter().copied(), 4);
            let after = replicas(&name, without.iter().copied(), 4);
            let kept: Vec<&str> = before.iter().copied().filter(|n| *n != "n3").collect();
            assert!(
                kept.iter().all(|n| after.contains(n)),
                "{name}: {before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn load_is_spread() {
        let ids = nodes(5);
        let mut counts = std::collections::HashMap::new();
        for f in 0..1000 {
            for n in replicas(&format!("f{f}"), ids.iter().map(String::as_str), 1) {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        assert!(
            counts.values().all(|c| (120..=280).contains(c)),
            "{counts:?}"
        );
    }
}
