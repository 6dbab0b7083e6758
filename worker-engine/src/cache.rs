//! A tiny least-recently-inserted cache keyed by content address.

use std::collections::VecDeque;

/// Keeps the last `capacity` inserted values.
pub struct Lru<V> {
    capacity: usize,
    entries: VecDeque<(String, V)>,
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
    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Caches `value`, evicting the oldest entry when full.
    pub fn insert(&mut self, key: String, value: V) {
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
        let mut c = Lru::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        c.insert("c".into(), 3);
        assert!(!c.contains("a"));
        assert_eq!(c.get("c"), Some(3));
    }
}
