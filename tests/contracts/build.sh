#!/usr/bin/env bash
# Rebuilds the test contracts into wasm/ (committed; the store benchmark embeds them and the
# tier tests run them). Needs the wasm32-unknown-unknown target:
#   rustup target add wasm32-unknown-unknown
# Built for the MVP feature set plus sign extension and mutable globals, which every synor tier
# supports identically; the contracts use no floating point (the matmul program does).
# The benchmark programs (the `kernels` crate, one build per kernel feature) go to wasm/programs/:
# import-free, exporting memory, setup, run and teardown like the corpus programs.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-C target-cpu=mvp -C target-feature=+sign-ext,+mutable-globals"
out=wasm
mkdir -p "$out"
for contract in token compute registry; do
  for version in v1 v2; do
    features=""
    [ "$version" = v2 ] && features="--features v2"
    cargo build --release --target wasm32-unknown-unknown -p "$contract" $features --target-dir target
    cp "target/wasm32-unknown-unknown/release/$contract.wasm" "$out/${contract}_$version.wasm"
  done
done
printf 'kind\told\tnew\n' > "$out/PAIRS.tsv"
for contract in token compute registry; do
  printf 'history\t%s_v1.wasm\t%s_v2.wasm\n' "$contract" "$contract" >> "$out/PAIRS.tsv"
done
mkdir -p "$out/programs"
for kernel in sieve matmul keccak quicksort fib crc32; do
  cargo build --release --target wasm32-unknown-unknown -p kernels --features "$kernel" --target-dir target
  cp target/wasm32-unknown-unknown/release/kernels.wasm "$out/programs/$kernel.wasm"
done
ls -l "$out" "$out/programs"
