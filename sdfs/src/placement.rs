//! Replica placement (sans-IO): rendezvous hashing of a file name over the live nodes, spread
//! over hosts and zones.
//!
//! Every node computes the same ranking from the same inputs, and removing a node moves only
//! the files it held: each file's next-ranked node takes its place. A replica set takes the
//! best-ranked node of each host first, so that losing a machine (all its nodes) loses as few
//! copies as can be; only when every host holds one does a host get a second. Among hosts
//! with as few copies, those in a zone (`--zone`) with fewer copies come first.

use bus_schemas::membership::Placed;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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

/// The replica set of `name` over `live` nodes: `rf` of them (fewer if fewer are live), on as
/// many hosts, then zones, as can be (see [`spread`]).
pub fn replicas(name: &str, live: &[Placed], rf: usize) -> Vec<String> {
    spread(name, live, &[], rf)
}

/// `need` more nodes for `name` among `live`, beside the nodes `held` already holding it: in
/// rendezvous order, but first on a host that holds the fewest copies, and among those on a
/// zone that holds the fewest. Never a node of `held`.
pub fn spread(name: &str, live: &[Placed], held: &[&str], need: usize) -> Vec<String> {
    let place = |id: &str| live.iter().find(|p| p.id == id);
    let mut on_host: HashMap<&str, usize> = HashMap::new();
    let mut in_zone: HashMap<&str, usize> = HashMap::new();
    for p in held.iter().filter_map(|id| place(id)) {
        *on_host.entry(&p.host).or_default() += 1;
        *in_zone.entry(&p.zone).or_default() += 1;
    }
    let mut left: Vec<&str> = rank(name, live.iter().map(|p| p.id.as_str()));
    left.retain(|n| !held.contains(n));
    let mut picked = Vec::new();
    while picked.len() < need && !left.is_empty() {
        // The best-ranked node with the fewest copies on its host, then in its zone.
        let count = |n: &str| {
            place(n).map_or((0, 0), |p| {
                let host = on_host.get(p.host.as_str()).copied().unwrap_or(0);
                (host, in_zone.get(p.zone.as_str()).copied().unwrap_or(0))
            })
        };
        let fewest = left.iter().map(|n| count(n)).min().unwrap_or((0, 0));
        let Some(i) = left.iter().position(|n| count(n) == fewest) else {
            break;
        };
        let node = left.remove(i);
        if let Some(p) = place(node) {
            *on_host.entry(&p.host).or_default() += 1;
            *in_zone.entry(&p.zone).or_default() += 1;
        }
        picked.push(node.to_string());
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn at(id: &str, host: &str, zone: &str) -> Placed {
        Placed {
            id: id.into(),
            host: host.into(),
            zone: zone.into(),
        }
    }

    /// Each node on a host of its own.
    fn alone(ids: &[String]) -> Vec<Placed> {
        ids.iter().map(|n| at(n, n, "")).collect()
    }

    /// `hosts` hosts `h0…` with `per` nodes each, `h<i>-<k>`.
    fn machines(hosts: usize, per: usize) -> Vec<Placed> {
        let mut v = Vec::new();
        for h in 0..hosts {
            for k in 0..per {
                v.push(at(&format!("h{h}-{k}"), &format!("h{h}"), ""));
            }
        }
        v
    }

    #[test]
    fn replicas_go_to_distinct_hosts_first() {
        let live = machines(3, 2);
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
        let live = machines(3, 2);
        // Both copies on h0: the two new ones go to h1 and h2.
        let new = spread("f", &live, &["h0-0", "h0-1"], 2);
        let mut hosts: Vec<&str> = new.iter().map(|n| &n[..2]).collect();
        hosts.sort();
        assert_eq!(hosts, ["h1", "h2"], "{new:?}");
        // Never a node that holds it already, and never more than there are.
        assert_eq!(spread("f", &live, &["h0-0"], 9).len(), 5);
    }

    #[test]
    fn replicas_spread_over_zones_once_hosts_are_even() {
        // Zone z0 has 4 hosts, z1 and z2 one each: 3 of 4 copies go to 3 zones, and no host
        // holds two.
        let mut live = Vec::new();
        for (h, zone) in ["a", "b", "c", "d", "e", "f"]
            .iter()
            .zip(["z0", "z0", "z0", "z0", "z1", "z2"])
        {
            live.push(at(&format!("{h}1"), h, zone));
            live.push(at(&format!("{h}2"), h, zone));
        }
        for f in 0..200 {
            let set = replicas(&format!("f{f}"), &live, 4);
            let place = |n: &String| live.iter().find(|p| &p.id == n).cloned().unwrap();
            let mut hosts: Vec<String> = set.iter().map(|n| place(n).host).collect();
            let mut zones: Vec<String> = set.iter().map(|n| place(n).zone).collect();
            hosts.sort();
            hosts.dedup();
            zones.sort();
            zones.dedup();
            assert_eq!((hosts.len(), zones.len()), (4, 3), "f{f}: {set:?}");
        }
        // A repair of a file held in z0 only goes to the other zones first.
        let new = spread("f", &live, &["a1", "b1"], 2);
        let zones: Vec<String> = new
            .iter()
            .map(|n| live.iter().find(|p| &p.id == n).unwrap().zone.clone())
            .collect();
        assert!(
            zones.contains(&"z1".to_string()) && zones.contains(&"z2".to_string()),
            "{new:?}"
        );
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
        let without: Vec<Placed> = all.iter().filter(|n| n.id != "n3").cloned().collect();
        for f in 0..200 {
            let name = format!("file-{f}");
            let before = replicas(&name, &all, 4);
            let after = replicas(&name, &without, 4);
            let kept: Vec<&String> = before.iter().filter(|n| *n != "n3").collect();
            assert!(
                kept.iter().all(|n| after.contains(*n)),
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
