#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/ (cargo-fuzz, libFuzzer): builds them once,
# then runs each for SECONDS (the argument, else $FUZZ_SECONDS, else 60) from its kept corpus,
# with a per-input time limit (a hang), a memory limit (runaway allocation) and an input size
# suited to the target. What the run discovers goes to a scratch directory: the kept corpus
# changes only by hand (`cargo fuzz cmin`, see fuzz/README.md). Exits non-zero if any target
# fails; its input is then in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-60}}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# No sanitizer: AddressSanitizer needs a nightly compiler. Panics (overflow checks and debug
# assertions are on), hangs and memory limits are still caught.
cargo fuzz build --sanitizer none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
# target and largest input: a few queries; a pipelined stream; an option or a message; a
# zone file; a body past the API's 16 KiB limit.
for entry in "packet 4096" "tcp_stream 8192" "ecs 1024" "zone_file 16384" "admin_body 20000"; do
    read -r target max_len <<<"$entry"
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for ${seconds}s"
    if ! cargo fuzz run --sanitizer none "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len="$max_len" \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
