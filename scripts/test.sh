#!/usr/bin/env bash
# The whole test run, as CI does it: set-up, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# The Debian package: built, installed with dpkg, started, asked on 127.0.0.1:53 and purged
# (about 4 minutes with its release build). dpkg needs root, which CI is.
if [ "$(id -u)" -eq 0 ]; then
    scripts/deb-test.sh
else
    echo "test: not root: scripts/deb-test.sh skipped"
fi
# Each fuzz target for 2 minutes (about 15 minutes with the build; see fuzz/README.md).
scripts/fuzz.sh 120
