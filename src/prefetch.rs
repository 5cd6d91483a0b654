//! A prefetch hint, for code that knows what it will read a little before it reads it (a
//! batch of received queries).

/// Asks the CPU to bring `item` into the cache: the line it starts in and, when it straddles
/// two, the next one. A hint only: nothing changes if it is not taken.
pub fn read<T>(item: &T) {
    let first = std::ptr::from_ref(item).cast::<i8>();
    line(first);
    let last = first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
    if (first as usize) / 64 != (last as usize) / 64 {
        line(last);
    }
}

#[cfg(target_arch = "x86_64")]
fn line(p: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch never faults, whatever the address; SSE is part of x86-64.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) }
}

#[cfg(not(target_arch = "x86_64"))]
fn line(_: *const i8) {}
