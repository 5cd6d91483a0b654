//! The fuzz targets without libFuzzer: every input in `fuzz/regressions/<target>/` (a failure
//! the fuzzer once found) and in the kept corpus `fuzz/corpus/<target>/` goes through the
//! same calls and checks as under `cargo fuzz` (`fuzz/src`, compiled here as a module).

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

/// Runs `run` on every file of the target's regression and corpus directories.
fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for kind in ["regressions", "corpus"] {
        let Ok(listing) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = listing
            .map(|e| e.expect("directory entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("input reads");
            let passed = std::panic::catch_unwind(|| run(&data)).is_ok();
            assert!(passed, "{} fails its checks", path.display());
            inputs += 1;
        }
    }
    assert!(inputs > 0, "no inputs for {target}");
}

#[test]
fn packet() {
    replay("packet", harness::packet::run);
}

#[test]
fn tcp_stream() {
    replay("tcp_stream", harness::tcp_stream::run);
}

#[test]
fn ecs() {
    replay("ecs", harness::ecs::run);
}

#[test]
fn zone_file() {
    replay("zone_file", harness::zone_file::run);
}

#[test]
fn admin_body() {
    replay("admin_body", harness::admin_body::run);
}
