//! A bounded concurrent map for the fast path: read-mostly, many shards, a cheap hash.
//!
//! moka (used for the GeoIP cache) keeps access statistics on every read, which costs more
//! than the rest of a cached answer; here a read is one uncontended shard read-lock and a
//! probe. Bounded crudely: a shard that reaches its share of the capacity is emptied, and
//! refills from the general path. Keys are hashed with FxHash (rustc's), which is fine for
//! keys that an attacker can only vary within a bounded set of names and networks.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::RwLock;

const SHARDS: usize = 64;

/// rustc's FxHasher: a multiply and a rotate per word.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Fx = BuildHasherDefault<FxHasher>;

pub struct FastMap<K, V> {
    shards: Vec<RwLock<HashMap<K, V, Fx>>>,
    per_shard: usize,
}

impl<K: Hash + Eq, V: Clone> FastMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        FastMap {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, V, Fx>> {
        // The high bits pick the shard; the map uses the low bits.
        let h = Fx::default().hash_one(key);
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.shard(key)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_is_given_within_its_bound() {
        let m: FastMap<u64, u64> = FastMap::new(640);
        for i in 0..100 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.get(&7), Some(14));
        assert_eq!(m.get(&1000), None);
        for i in 0..100_000 {
            m.insert(i, i);
        }
        assert!(m.len() <= 640, "{}", m.len());
        m.insert(5, 55);
        assert_eq!(m.get(&5), Some(55));
    }
}
