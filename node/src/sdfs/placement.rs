//! Replica placement (sans-IO): rendezvous hashing of a file name over the live nodes, spread
//! over hosts.
//!
//! Every node computes the same ranking from the same inputs, and removing a node moves only
//! the files it held: each file's next-ranked node takes its place. A replica set takes the
//! best-ranked node of each host first, so that losing a machine (all its nodes) loses as few
//! copies as can be; only when every host holds one does a host get a second.

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

/// The replica set of `name` over `live` nodes (`(id, host)`): `rf` of them (fewer if fewer
/// are live), on as many hosts as can be (see [`spread`]).
pub fn replicas<'a>(name: &str, live: &[(&'a str, &'a str)], rf: usize) -> Vec<&'a str> {
    spread(name, live, &[], rf)
}

/// `need` more nodes for `name` among `live` (`(id, host)`), beside the nodes `held` already
/// holding it: in rendezvous order, but first one on each host that holds no copy yet, then on
/// hosts that hold the fewest. Never a node of `held`.
pub fn spread<'a>(
    name: &str,
    live: &[(&'a str, &'a str)],
    held: &[&str],
    need: usize,
) -> Vec<&'a str> {
    let host_of = |id: &str| live.iter().find(|(n, _)| *n == id).map(|(_, h)| *h);
    let mut copies: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for h in held.iter().filter_map(|id| host_of(id)) {
        *copies.entry(h).or_default() += 1;
    }
    let mut left: Vec<&'a str> = rank(name, live.iter().map(|(n, _)| *n));
    left.retain(|n| !held.contains(n));
    let mut picked = Vec::new();
    while picked.len() < need && !left.is_empty() {
        // The best-ranked node on a host with the fewest copies so far.
        let count = |n: &str| host_of(n).map_or(0, |h| copies.get(h).copied().unwrap_or(0));
        let fewest = left.iter().map(|n| count(n)).min().unwrap_or(0);
        let Some(i) = left.iter().position(|n| count(n) == fewest) else {
            break;
        };
        let node = left.remove(i);
        if let Some(h) = host_of(node) {
            *copies.entry(h).or_default() += 1;
        }
        picked.push(node);
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Each node on a host of its own.
    fn alone(ids: &[String]) -> Vec<(&str, &str)> {
        ids.iter().map(|n| (n.as_str(), n.as_str())).collect()
    }

    /// `hosts` hosts `h0…` with `per` nodes each, `h<i>-<k>`.
    fn machines(hosts: usize, per: usize) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for h in 0..hosts {
            for k in 0..per {
                v.push((format!("h{h}-{k}"), format!("h{h}")));
            }
        }
        v
    }

    fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(n, h)| (n.as_str(), h.as_str())).collect()
    }

    #[test]
    fn replicas_go_to_distinct_hosts_first() {
        let m = machines(3, 2);
        let live = refs(&m);
        for f in 0..200 {
            let set = replicas(&format!("f{f}"), &live, 4);
            let mut hosts: Vec<&str> = set.iter().map(|n| &n[..2]).collect();
            hosts.sort();
            hosts.dedup();
            assert_eq!((set.len(), hosts.len()), (4, 3), "f{f}: {set:?}");
        }
    }

    #[test]
    fn repairs_prefer_hosts_without_a_copy() {
        let m = machines(3, 2);
        let live = refs(&m);
        // Both copies on h0: the two new ones go to h1 and h2.
        let new = spread("f", &live, &["h0-0", "h0-1"], 2);
        let mut hosts: Vec<&str> = new.iter().map(|n| &n[..2]).collect();
        hosts.sort();
        assert_eq!(hosts, ["h1", "h2"], "{new:?}");
        // Never a node that holds it already, and never more than there are.
        assert_eq!(spread("f", &live, &["h0-0"], 9).len(), 5);
    }

    #[test]
    fn placement_is_deterministic_and_order_free() {
        let ids = nodes(7);
        let live = alone(&ids);
        let mut back = live.clone();
        back.reverse();
        let forward = replicas("a/b.txt", &live, 4);
        let backward = replicas("a/b.txt", &back, 4);
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), 4);
    }

    #[test]
    fn effective_rf_is_capped_by_live_nodes() {
        let ids = nodes(2);
        assert_eq!(replicas("x", &alone(&ids), 4).len(), 2);
    }

    #[test]
    fn losing_a_node_moves_only_its_files() {
        let ids = nodes(10);
        let all = alone(&ids);
        let without: Vec<(&str, &str)> = all.iter().copied().filter(|n| n.0 != "n3").collect();
        for f in 0..200 {
            let name = format!("file-{f}");
            let before = replicas(&name, &all, 4);
            let after = replicas(&name, &without, 4);
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
            for n in replicas(&format!("f{f}"), &alone(&ids), 1) {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        assert!(
            counts.values().all(|c| (120..=280).contains(c)),
            "{counts:?}"
        );
    }
}
