//! A least-recently-used cache of decoded content, bounded by bytes.
//!
//! Records that others refer to are decoded again for every reader; the cache keeps the most
//! recently used ones. Entries are immutable (content-addressed), so nothing ever invalidates.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use hashbrown::HashMap;

use crate::digest::CodeId;

/// Decoded content by identity, least recently used evicted first.
#[derive(Debug, Default)]
pub struct ContentCache {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<CodeId, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, CodeId>,
}

impl ContentCache {
    /// A cache holding at most `capacity` bytes of content.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The content of `id`, marked as most recently used.
    pub fn get(&mut self, id: &CodeId) -> Option<Arc<[u8]>> {
        self.tick += 1;
        let tick = self.tick;
        let (content, last) = self.entries.get_mut(id)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, *id);
        Some(content.clone())
    }

    /// Adds `content` as `id`, evicting the least recently used entries to make room.
    /// Content larger than the whole cache is not kept.
    pub fn insert(&mut self, id: CodeId, content: Arc<[u8]>) {
        if content.len() > self.capacity || self.entries.contains_key(&id) {
            return;
        }
        while self.used + content.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = self.entries.remove(&oldest) {
                self.used -= evicted.len();
            }
        }
        self.tick += 1;
        self.used += content.len();
        self.order.insert(self.tick, id);
        self.entries.insert(id, (content, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use alloc::vec;

    fn id(n: u8) -> CodeId {
        Digest([n; 32])
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let mut c = ContentCache::new(100);
        c.insert(id(1), vec![0u8; 40].into());
        c.insert(id(2), vec![0u8; 40].into());
        assert!(c.get(&id(1)).is_some()); // 2 is now the oldest
        c.insert(id(3), vec![0u8; 40].into());
        assert!(c.get(&id(2)).is_none());
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.used(), 80);
        c.insert(id(4), vec![0u8; 101].into());
        assert!(c.get(&id(4)).is_none());
    }
}
