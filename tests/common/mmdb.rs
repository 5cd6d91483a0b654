//! Damage to a MaxMind DB's search tree, for the tests that show a damaged database refused:
//! shared by `src/geo/tests.rs` (through `#[path]`) and the whole-binary tests.

/// Where the search tree of an MMDB ends, its node count and its record size in bits.
pub fn tree_layout(bytes: &[u8]) -> (usize, usize, usize) {
    let reader = maxminddb::Reader::from_source(bytes).unwrap();
    let m = reader.metadata();
    let (nodes, bits) = (m.node_count as usize, usize::from(m.record_size));
    (nodes * bits / 4, nodes, bits)
}

/// Record `side` (0 left, 1 right) of node `node` in a tree of `bits`-bit records.
pub fn record(bytes: &[u8], node: usize, side: usize, bits: usize) -> usize {
    let n = &bytes[node * bits / 4..(node + 1) * bits / 4];
    let be = |b: &[u8]| b.iter().fold(0usize, |v, &x| v << 8 | usize::from(x));
    match (bits, side) {
        (24, s) => be(&n[s * 3..s * 3 + 3]),
        (28, 0) => usize::from(n[3] & 0xf0) << 20 | be(&n[0..3]),
        (28, _) => usize::from(n[3] & 0x0f) << 24 | be(&n[4..7]),
        (32, s) => be(&n[s * 4..s * 4 + 4]),
        _ => unreachable!("record sizes are 24, 28 or 32 bits"),
    }
}

/// Sets record `side` of node `node` to `value`: the inverse of [`record`].
pub fn set_record(bytes: &mut [u8], node: usize, side: usize, bits: usize, value: usize) {
    let n = &mut bytes[node * bits / 4..(node + 1) * bits / 4];
    let put = |b: &mut [u8], v: usize| {
        let len = b.len();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (v >> (8 * (len - 1 - i))) as u8;
        }
    };
    match (bits, side) {
        (24, s) => put(&mut n[s * 3..s * 3 + 3], value),
        (28, 0) => {
            put(&mut n[0..3], value & 0xff_ffff);
            n[3] = (n[3] & 0x0f) | ((value >> 20) as u8 & 0xf0);
        }
        (28, _) => {
            put(&mut n[4..7], value & 0xff_ffff);
            n[3] = (n[3] & 0xf0) | ((value >> 24) as u8 & 0x0f);
        }
        (32, s) => put(&mut n[s * 4..s * 4 + 4], value),
        _ => unreachable!("record sizes are 24, 28 or 32 bits"),
    }
}

/// `bytes` with every data pointer of the tree aimed at the record of `addr`: a tree intact in
/// shape that places every known network where `addr` is.
pub fn one_record_tree(mut bytes: Vec<u8>, addr: &str) -> Vec<u8> {
    let (_, nodes, bits) = tree_layout(&bytes);
    let target = {
        let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
        let offset = reader.lookup(addr.parse().unwrap()).unwrap().offset();
        offset.expect("the address has a record") + nodes + 16
    };
    for node in 0..nodes {
        for side in 0..2 {
            if record(&bytes, node, side, bits) > nodes {
                set_record(&mut bytes, node, side, bits, target);
            }
        }
    }
    bytes
}
