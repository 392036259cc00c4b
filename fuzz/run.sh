#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 60) each, one after another; stops at the
# first target that finds something (libFuzzer writes the input under fuzz/artifacts/TARGET/).
# Installs cargo-fuzz when it is missing. RUSTC_BOOTSTRAP=1 lets a stable toolchain accept the
# flags cargo-fuzz passes.
#
# Built without AddressSanitizer (`-s none`): the code under test is safe Rust (the core forbids
# `unsafe`), so ASan finds nothing there that a panic would not, while it slows the engines of
# `tiers` tenfold; one build then serves every target.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || [ -x "$HOME/.cargo/bin/cargo-fuzz" ] \
    || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
flags=(-O -s none)
# Build them all first, so that the time given is spent fuzzing.
cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    # Seeds: the project's contracts for the instrumenter (read only; what the fuzzer finds
    # goes to the first directory).
    seeds=()
    [ "$target" = instrument ] && seeds=(../tests/contracts/wasm)
    echo "== $target: ${seconds}s"
    # Inputs long from the start (wasm-smith and the stores need bytes to build from);
    # `optimistic` starts threads per input, whose exit LeakSanitizer may misreport.
    cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len=8192 -len_control=0 -detect_leaks=0 \
        -rss_limit_mb=4096 -print_final_stats=1
done
