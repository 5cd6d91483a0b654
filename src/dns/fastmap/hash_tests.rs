use std::hash::Hasher;

use proptest::prelude::*;

use super::{FxHasher, hash_lower};

/// What `hash_lower` must equal: the same words, lower-cased one octet at a time.
fn reference(name: &[u8]) -> u64 {
    let lower = name.to_ascii_lowercase();
    let mut h = FxHasher::default();
    h.write_usize(lower.len());
    let mut chunks = lower.chunks_exact(8);
    for c in &mut chunks {
        h.write_u64(u64::from_le_bytes(c.try_into().unwrap()));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h.write_u64(u64::from_le_bytes(last));
    h.finish()
}

#[test]
fn the_name_hash_folds_ascii_letters_only() {
    assert_eq!(
        hash_lower(b"\x03WwW\x07ExAmPlE\x03CoM\x00"),
        hash_lower(b"\x03www\x07example\x03com\x00")
    );
    // '@' and '[' border 'A'..='Z'; 0xC1 and 0xDA are 'A' and 'Z' with the high bit set.
    for (a, b) in [(b'@', b'`'), (b'[', b'{'), (0xC1, 0xE1), (0xDA, 0xFA)] {
        assert_ne!(
            hash_lower(&[1, a, 0]),
            hash_lower(&[1, b, 0]),
            "{a:#x} is not {b:#x}"
        );
    }
}

proptest! {
    #[test]
    fn the_name_hash_is_the_hash_of_the_lower_case_name(name in prop::collection::vec(any::<u8>(), 0..=255)) {
        prop_assert_eq!(hash_lower(&name), reference(&name));
        prop_assert_eq!(hash_lower(&name), hash_lower(&name.to_ascii_uppercase()));
    }
}
