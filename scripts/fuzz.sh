#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for SECONDS each (default 60), starting from the committed
# seeds in fuzz/seeds/<target> and keeping what it learns in fuzz/corpus/<target> (ignored by
# git). Any crash, abort, timeout or out-of-memory is a finding: the script then fails, and
# libFuzzer leaves the input under fuzz/artifacts/<target>. Needs a nightly toolchain (skipped,
# with a line saying so, without one) and installs cargo-fuzz on first use.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 artifact
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; skipped" >&2
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once)" >&2
  cargo install cargo-fuzz --locked --quiet
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O
# The artifact target writes a scratch file per input: memory, not disk, where there is one.
if [ -d /dev/shm ]; then export TMPDIR=/dev/shm; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  if ! cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target: a finding; its input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/fuzz: $target: /" >&2
done
