#!/usr/bin/env bash
# How many lines `#[component]` expands to: builds a crate holding one component of one
# parameter and one output (path dependency on this repository's `pipeline-runtime`) with
# `rustc -Zunpretty=expanded` (through RUSTC_BOOTSTRAP, so a stable toolchain works), formats
# the result with rustfmt's defaults, prints it without the crate's preamble (the prelude
# imports and the `use` line), and counts its lines. Every macro is expanded, including
# `inventory::submit!`.
#
# Usage: scripts/expansion-lines.sh          Honours CARGO_TARGET_DIR and CARGO_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tmp/target}
read -r -a flags <<<"${CARGO_FLAGS:-}"

mkdir -p "$tmp/probe/src"
cat >"$tmp/probe/Cargo.toml" <<TOML
[package]
name = "expansion-probe"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
pipeline-runtime = { path = "$repo/pipeline-runtime" }

[workspace]
TOML
cat >"$tmp/probe/src/lib.rs" <<'RUST'
use pipeline_runtime::prelude::*;

#[component]
pub fn double(x: u64) -> u64 {
    x * 2
}
RUST
RUSTC_BOOTSTRAP=1 cargo rustc "${flags[@]}" --quiet --lib --manifest-path "$tmp/probe/Cargo.toml" \
  -- -Zunpretty=expanded >"$tmp/expanded.rs"
rustfmt --edition 2024 "$tmp/expanded.rs"
# The preamble: `#![feature(prelude_import)]`, `extern crate std;`, the user's `use`, the
# two lines of the prelude import and a blank line.
tail -n +7 "$tmp/expanded.rs" | tee "$tmp/component.rs"
echo "#[component] fn double(x: u64) -> u64: $(wc -l <"$tmp/component.rs") lines (rustfmt'd, every macro expanded)"
