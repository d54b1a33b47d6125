//! A map that is cheap to change while readers hold an older copy of it.
//!
//! The ingest holds a snapshot of the directory for every message, so a change almost
//! always finds the current index shared and must copy what it touches. One `HashMap`
//! would be copied whole, a million devices for one coordinator's click. Here the map is
//! cut into a fixed number of shards, each behind its own `Arc`: a change copies the list
//! of shard pointers (a few thousand reference counts) and the one shard it touches (a few
//! hundred entries at a million devices, each a pair of reference counts, as keys and
//! values are `Arc`s too). Readers look a key up with two pointer hops and no lock.
//!
//! Why not a persistent map crate: the mature ones (`im`, `imbl`, `rpds`) are MPL-2.0,
//! outside the licences this project takes in, and a fixed shard count keeps a change
//! well under a millisecond for any fleet the police will run (a shard holds 2,500
//! entries at ten million devices).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// Shards per map: copying the pointer list costs this many reference counts, and a shard
/// holds `len / SHARDS` entries.
const SHARDS: usize = 4096;

type Shard<V> = HashMap<Arc<str>, Arc<V>>;

/// A map from text keys to `V`, cloned in constant time and changed in time proportional
/// to one shard.
#[derive(Debug)]
pub struct SharedMap<V> {
    /// Chooses a key's shard; shared by every copy, so copies agree.
    hasher: RandomState,
    shards: Arc<Vec<Arc<Shard<V>>>>,
    len: usize,
}

impl<V> Clone for SharedMap<V> {
    fn clone(&self) -> Self {
        SharedMap {
            hasher: self.hasher.clone(),
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<V> Default for SharedMap<V> {
    fn default() -> Self {
        SharedMap {
            hasher: RandomState::new(),
            shards: Arc::new((0..SHARDS).map(|_| Arc::new(HashMap::new())).collect()),
            len: 0,
        }
    }
}

impl<V> SharedMap<V> {
    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// The shard of `key`, copied first if another snapshot shares it.
    fn shard_mut(&mut self, key: &str) -> &mut Shard<V> {
        let i = self.shard_of(key);
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i])
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.shards[self.shard_of(key)].get(key).map(|v| &**v)
    }

    /// The value as stored, to tell whether two snapshots share it.
    pub fn get_shared(&self, key: &str) -> Option<&Arc<V>> {
        self.shards[self.shard_of(key)].get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.shards[self.shard_of(key)].contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (&**k, &**v)))
    }

    pub fn insert(&mut self, key: &str, value: V) -> Option<Arc<V>> {
        let old = self.shard_mut(key).insert(key.into(), Arc::new(value));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<Arc<V>> {
        // A key that is not there leaves its shard shared.
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }
}

impl<K: AsRef<str>, V> FromIterator<(K, V)> for SharedMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SharedMap::default();
        {
            // Nobody shares a map being built: no copies.
            let hasher = map.hasher.clone();
            let shards = Arc::make_mut(&mut map.shards);
            for (k, v) in iter {
                let k = k.as_ref();
                let shard = Arc::make_mut(&mut shards[(hasher.hash_one(k) as usize) % SHARDS]);
                if shard.insert(k.into(), Arc::new(v)).is_none() {
                    map.len += 1;
                }
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_leaves_an_older_copy_as_it_was() {
        let mut map: SharedMap<u32> = [("a", 1), ("b", 2)].into_iter().collect();
        let before = map.clone();
        map.insert("a", 10);
        map.remove("b");
        map.insert("c", 3);
        assert_eq!(
            (before.get("a"), before.get("b"), before.get("c")),
            (Some(&1), Some(&2), None)
        );
        assert_eq!(
            (map.get("a"), map.get("b"), map.get("c")),
            (Some(&10), None, Some(&3))
        );
        assert_eq!((before.len(), map.len()), (2, 2));
    }

    #[test]
    fn entries_not_changed_are_shared_between_copies() {
        let mut map: SharedMap<u32> = (0..10_000).map(|i| (format!("d{i}"), i)).collect();
        let before = map.clone();
        map.insert("d1", 7);
        for i in (0..10_000).filter(|&i| i != 1) {
            let key = format!("d{i}");
            assert!(Arc::ptr_eq(
                before.get_shared(&key).unwrap(),
                map.get_shared(&key).unwrap()
            ));
        }
        assert_eq!(map.iter().count(), 10_000);
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut map: SharedMap<u32> = [("a", 1)].into_iter().collect();
        assert!(map.remove("b").is_none());
        assert_eq!(map.len(), 1);
        assert!(!map.is_empty());
    }
}
