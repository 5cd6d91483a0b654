#!/usr/bin/env bash
# The whole test run, as CI does it: set-up, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Each fuzz target for 2 minutes (about 15 minutes with the build; see fuzz/README.md).
scripts/fuzz.sh 120
