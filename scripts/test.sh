#!/usr/bin/env bash
# The whole test run, as CI does it: set-up, formatting, lints, then every test, the Debian
# package and a bounded fuzzing round. About 35 minutes on 2 cores. Ends with a summary line:
# the tests passed and failed, and how long it all took.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
log=$(mktemp)
summary() {
    local status=$?
    local passed failed
    passed=$(awk '/^test result:/ {n += $4} END {print n + 0}' "$log")
    failed=$(awk '/^test result:/ {n += $6} END {print n + 0}' "$log")
    local took=$(($(date +%s) - started))
    echo "test: $passed passed, $failed failed; $((took / 60)) min $((took % 60)) s; $([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")"
    rm -f "$log"
}
trap summary EXIT
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Every test binary runs even after one fails, so one CI run shows every failure.
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log"
# The Debian package: built, installed with dpkg, started, asked on 127.0.0.1:53 and purged
# (about 4 minutes with its release build). dpkg needs root, which CI is.
if [ "$(id -u)" -eq 0 ]; then
    scripts/deb-test.sh
else
    echo "test: not root: scripts/deb-test.sh skipped"
fi
# Each fuzz target for 2 minutes (about 15 minutes with the build; see fuzz/README.md).
scripts/fuzz.sh 120
