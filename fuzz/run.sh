#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 60) each, one after another; stops at the
# first target that finds something (libFuzzer writes the input under fuzz/artifacts/TARGET/).
# Installs cargo-fuzz when it is missing. RUSTC_BOOTSTRAP=1 lets a stable toolchain accept the
# sanitizer flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
# Build them all first, so that the time given is spent fuzzing.
cargo fuzz build -O
for target in $targets; do
    mkdir -p "corpus/$target"
    # Seeds: the project's contracts for the module targets.
    seeds=()
    case "$target" in
        instrument) seeds=(../tests/contracts/wasm) ;;
    esac
    echo "== $target: ${seconds}s"
    # `optimistic` starts threads per input, whose exit LeakSanitizer may misreport.
    cargo fuzz run -O "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -detect_leaks=0 -rss_limit_mb=4096 -print_final_stats=1
done
