//! A tiny least-recently-inserted cache keyed by content address.

use std::collections::VecDeque;

use oblivion_protocol::BlobId;

/// Keeps the last `capacity` inserted values.
pub struct Lru<V> {
    capacity: usize,
    entries: VecDeque<(BlobId, V)>,
}

impl<V: Clone> Lru<V> {
    /// An empty cache.
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Whether `key` is cached.
    pub fn contains(&self, key: BlobId) -> bool {
        self.entries.iter().any(|(k, _)| *k == key)
    }

    /// The value for `key`.
    pub fn get(&self, key: BlobId) -> Option<V> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// Caches `value`, evicting the oldest entry when full.
    pub fn insert(&mut self, key: BlobId, value: V) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest() {
        let [a, b, c] = [b"a", b"b", b"c"].map(|k| BlobId::of(k));
        let mut cache = Lru::new(2);
        cache.insert(a, 1);
        cache.insert(b, 2);
        cache.insert(c, 3);
        assert!(!cache.contains(a));
        assert_eq!(cache.get(c), Some(3));
    }
}
