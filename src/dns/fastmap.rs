//! A bounded map for the fast path's per-thread caches: one owner, open addressing, a
//! cheap hash, and a prefetch hint.
//!
//! moka (used for the GeoIP cache) keeps access statistics on every read, and a shared map
//! needs a lock and a reference count per read: each costs more than the rest of a cached
//! answer. Here a read is a hash and a linear probe over entries stored inline, so a caller
//! that knows a key early (a batch of received queries) can [`FastMap::prefetch`] its slot
//! and overlap the cache misses of a whole batch; std's map hides where an entry lives.
//! No entry is ever removed, which keeps linear probing simple. Bounded crudely: a shard that
//! reaches its share of the capacity is emptied, and refills from the general path; sharding
//! keeps that refill to a small part of the cache at a time. Keys are hashed with FxHash
//! (rustc's), which is fine for keys that an attacker can only vary within a bounded set of
//! names and networks.

use crate::prefetch::read;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

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

const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// Slots a shard starts with; it doubles up to twice its share of the capacity.
const FIRST_SLOTS: usize = 16;

pub struct FastMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    per_shard: usize,
}

struct Shard<K, V> {
    /// A power of two long, at most half full, so that every probe meets an empty slot.
    slots: Box<[Option<(K, V)>]>,
    len: usize,
}

impl<K, V> Shard<K, V> {
    fn with_slots(n: usize) -> Self {
        Shard {
            slots: (0..n).map(|_| None).collect(),
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.len = 0;
    }

    /// The first slot to probe for hash `h`: FxHash mixes best into its high bits, and the
    /// highest ones already picked the shard.
    fn start(&self, h: u64) -> usize {
        (h >> (64 - SHARD_BITS - self.slots.len().trailing_zeros())) as usize
            & (self.slots.len() - 1)
    }
}

impl<K: Hash + Eq, V> FastMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        FastMap {
            shards: (0..SHARDS)
                .map(|_| Shard::with_slots(FIRST_SLOTS))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn locate(&self, key: &K) -> (u64, usize) {
        let h = Fx::default().hash_one(key);
        (h, (h >> (64 - SHARD_BITS)) as usize)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let (h, shard) = self.locate(key);
        let shard = &self.shards[shard];
        let mask = shard.slots.len() - 1;
        let mut i = shard.start(h);
        loop {
            match &shard.slots[i] {
                Some((k, v)) if k == key => return Some(v),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }

    /// Asks the CPU to load the slot where `key` would be found, so that a `get` soon after
    /// does not wait for memory. A hint only: nothing changes if it is not taken.
    pub fn prefetch(&self, key: &K) {
        let (h, shard) = self.locate(key);
        let shard = &self.shards[shard];
        read(&shard.slots[shard.start(h)]);
    }

    pub fn insert(&mut self, key: K, value: V) {
        let (h, index) = self.locate(&key);
        let per_shard = self.per_shard;
        let shard = &mut self.shards[index];
        let mask = shard.slots.len() - 1;
        let mut i = shard.start(h);
        while let Some((k, v)) = &mut shard.slots[i] {
            if *k == key {
                *v = value;
                return;
            }
            i = (i + 1) & mask;
        }
        if shard.len >= per_shard {
            shard.clear();
        } else if 2 * (shard.len + 1) > shard.slots.len() {
            self.grow(index);
        }
        self.place(index, h, key, value);
    }

    /// Doubles a shard's slots, moving its entries.
    fn grow(&mut self, index: usize) {
        let bigger = Shard::with_slots(2 * self.shards[index].slots.len());
        let old = std::mem::replace(&mut self.shards[index], bigger);
        for (k, v) in old.slots.into_iter().flatten() {
            let (h, _) = self.locate(&k);
            self.place(index, h, k, v);
        }
    }

    /// Puts an entry that is not in the shard into its first free slot.
    fn place(&mut self, index: usize, h: u64, key: K, value: V) {
        let shard = &mut self.shards[index];
        let mask = shard.slots.len() - 1;
        let mut i = shard.start(h);
        while shard.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        shard.slots[i] = Some((key, value));
        shard.len += 1;
    }

    /// Empties every shard, keeping their slots.
    pub fn clear(&mut self) {
        self.shards.iter_mut().for_each(Shard::clear);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }
}

/// The FxHash of `name.to_ascii_lowercase()`, eight octets at a time without copying it.
pub fn hash_lower(name: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Sets 0x20 in every octet that is 'A'..='Z'; the 0x7f mask keeps the additions from
    // carrying into the next octet, and `!w` leaves octets with the high bit alone.
    let lower = |w: u64| {
        let low7 = w & (0x7f * ONES);
        let from_a = low7 + (0x80 - u64::from(b'A')) * ONES;
        let past_z = low7 + (0x80 - u64::from(b'Z') - 1) * ONES;
        w | ((from_a & !past_z & !w & (0x80 * ONES)) >> 2)
    };
    let mut h = FxHasher::default();
    h.write_usize(name.len());
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        h.write_u64(lower(u64::from_le_bytes(c.try_into().expect("8 octets"))));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h.write_u64(lower(u64::from_le_bytes(last)));
    h.finish()
}

#[cfg(test)]
mod hash_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_is_given_within_its_bound() {
        let mut m: FastMap<u64, u64> = FastMap::new(640);
        for i in 0..100 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.get(&7), Some(&14));
        assert_eq!(m.get(&1000), None);
        m.insert(7, 70);
        assert_eq!((m.get(&7), m.len()), (Some(&70), 100));
        for i in 0..100_000 {
            m.insert(i, i);
            assert_eq!(m.get(&i), Some(&i));
        }
        assert!(m.len() <= 640, "{}", m.len());
        m.insert(5, 55);
        assert_eq!(m.get(&5), Some(&55));
        m.clear();
        assert_eq!((m.len(), m.get(&5)), (0, None));
    }

    /// Keys that share a hash collide in one shard and probe past each other.
    #[test]
    fn colliding_keys_are_all_found() {
        #[derive(PartialEq, Eq)]
        struct Same(u32);
        impl Hash for Same {
            fn hash<H: Hasher>(&self, h: &mut H) {
                h.write_u8(1);
            }
        }
        let mut m = FastMap::new(10_000);
        for i in 0..300 {
            m.insert(Same(i), i);
            m.prefetch(&Same(i));
        }
        assert!((0..300).all(|i| m.get(&Same(i)) == Some(&i)));
        assert_eq!(m.get(&Same(300)), None);
    }
}
