//! A map bounded by bytes that evicts the least recently used entries: the engine's models
//! and splits. Values are handles (`Arc`s), so an evicted entry stays alive for whoever still
//! holds it (a job serving it) and is freed when the last holder lets go.

use std::collections::HashMap;
use std::hash::Hash;

struct Entry<V> {
    value: V,
    bytes: u64,
    used: u64,
}

/// Entries of at most `budget` bytes in all (an entry larger than the budget alone is kept
/// until the next insertion, so the newest always fits).
pub struct ByteLru<K, V> {
    entries: HashMap<K, Entry<V>>,
    budget: u64,
    total: u64,
    clock: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> ByteLru<K, V> {
    /// An empty map holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            budget,
            total: 0,
            clock: 0,
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.clock;
        Some(entry.value.clone())
    }

    /// Inserts `value` of `bytes` (replacing any value of `key`), then evicts the least
    /// recently used other entries until the total fits the budget; returns the evicted keys.
    pub fn insert(&mut self, key: K, value: V, bytes: u64) -> Vec<K> {
        self.clock += 1;
        let entry = Entry {
            value,
            bytes,
            used: self.clock,
        };
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.total -= old.bytes;
        }
        self.total = self.total.saturating_add(bytes);
        let mut evicted = Vec::new();
        while self.total > self.budget {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.total -= e.bytes;
            }
            evicted.push(oldest);
        }
        evicted
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn the_least_recently_used_entries_go_first_and_holders_keep_theirs() {
        let mut lru = ByteLru::new(100);
        assert!(lru.insert("a", Arc::new(1), 40).is_empty());
        assert!(lru.insert("b", Arc::new(2), 40).is_empty());
        let held = lru.get(&"a").unwrap(); // "a" is now newer than "b"
        assert_eq!(lru.insert("c", Arc::new(3), 40), ["b"]);
        assert_eq!((lru.len(), lru.bytes()), (2, 80));
        assert!(lru.get(&"b").is_none());
        assert_eq!(lru.insert("d", Arc::new(4), 90), ["a", "c"]);
        assert_eq!(*held, 1, "an evicted value lives on in its holders");
        assert_eq!((lru.len(), lru.bytes()), (1, 90));
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_kept_alone_until_the_next() {
        let mut lru = ByteLru::new(10);
        lru.insert("a", Arc::new(()), 5);
        assert_eq!(lru.insert("big", Arc::new(()), 50), ["a"]);
        assert!(lru.get(&"big").is_some());
        assert_eq!(lru.insert("b", Arc::new(()), 5), ["big"]);
        assert_eq!(lru.insert("b", Arc::new(()), 7), Vec::<&str>::new());
        assert_eq!(lru.bytes(), 7);
    }

    proptest! {
        #[test]
        fn the_total_stays_within_the_budget(
            ops in proptest::collection::vec((0u8..8, 0u64..60, any::<bool>()), 1..200),
        ) {
            let mut lru = ByteLru::new(100);
            for (key, bytes, read) in ops {
                if read {
                    lru.get(&key);
                } else {
                    lru.insert(key, Arc::new(()), bytes);
                    prop_assert!(lru.bytes() <= 100);
                    prop_assert!(lru.get(&key).is_some());
                }
            }
        }
    }
}
