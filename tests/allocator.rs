//! The allocator as `meridian serve` sets it up ([`meridian::cli::fix_mmap_threshold`]): alone
//! in its process, since it reads process-wide counters.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::hint::black_box;

/// Bytes in blocks that have maps of their own.
fn mapped() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.hblkhd
}

#[test]
fn a_large_block_gets_a_map_of_its_own_after_a_larger_one_was_freed() {
    meridian::cli::fix_mmap_threshold();
    // On a thread of its own, as the steering compiler runs: its blocks come from a thread
    // arena, whose top glibc gives back only past the trim threshold.
    std::thread::spawn(|| {
        // Left dynamic, the threshold would now be 24 MiB, and the next block would come from
        // the arena, where it would stay resident once freed.
        drop(black_box(vec![1u8; 24 << 20]));
        let before = mapped();
        let block = black_box(vec![1u8; 2 << 20]);
        assert!(
            mapped() >= before + block.len(),
            "a 2 MiB block was not mapped: {before} then {} bytes mapped",
            mapped()
        );
    })
    .join()
    .unwrap();
}
