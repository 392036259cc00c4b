//! A least-recently-used map bounded by bytes: decoded contents in the code store, compiled
//! modules in the tier manager.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::hash::Hash;

use hashbrown::HashMap;

/// Entries with a size in bytes; the least recently used are evicted to stay within capacity.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<K, (V, usize, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// A map holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, marked as most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, _, last) = self.entries.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.clone());
        Some(value.clone())
    }

    /// The value of `key`, without marking it used.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _, _)| v)
    }

    /// Inserts `value` of `bytes` bytes as `key` (replacing any previous value), evicting the
    /// least recently used entries to make room; returns what was evicted. A value larger than
    /// the whole capacity is not kept (and is returned as evicted).
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> Vec<(K, V)> {
        let mut evicted = Vec::new();
        if let Some((old, _)) = self.remove(&key) {
            let _ = old;
        }
        if bytes > self.capacity {
            evicted.push((key, value));
            return evicted;
        }
        while self.used + bytes > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((v, n, _)) = self.entries.remove(&oldest) {
                self.used -= n;
                evicted.push((oldest, v));
            }
        }
        self.tick += 1;
        self.used += bytes;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, bytes, self.tick));
        evicted
    }

    /// Removes `key`; returns its value and size.
    pub fn remove(&mut self, key: &K) -> Option<(V, usize)> {
        let (value, bytes, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        self.used -= bytes;
        Some((value, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let mut c: Lru<u8, u8> = Lru::new(100);
        assert!(c.insert(1, 1, 40).is_empty());
        assert!(c.insert(2, 2, 40).is_empty());
        assert_eq!(c.get(&1), Some(1)); // 2 is now the oldest
        assert_eq!(c.insert(3, 3, 40), [(2, 2)]);
        assert_eq!(c.get(&2), None);
        assert_eq!(c.used(), 80);
        assert_eq!(c.insert(4, 4, 101), [(4, 4)]);
        assert_eq!(c.insert(1, 9, 10).len(), 0);
        assert_eq!(c.used(), 50);
        assert_eq!(c.remove(&3), Some((3, 40)));
        assert_eq!(c.len(), 1);
    }
}
