#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the release binary, its man pages and shell
# completions (written from the CLI definition by `meridian generate`), then `cargo deb`
# with the [package.metadata.deb] of Cargo.toml. cargo-deb is a tool of this script, not a
# dependency of the crate: it is installed here when missing. Extra arguments go to
# `cargo deb`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
cargo build --release --locked
rm -rf target/generated
target/release/meridian generate --out target/generated >/dev/null
cargo deb --no-build "$@"
