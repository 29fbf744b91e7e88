#!/usr/bin/env bash
# Compile time of the macros: generates two binary crates in a temporary folder, both with a
# path dependency on this repository's `pipeline-runtime` and the same `main`:
#   components/  N `#[component]` functions called in a chain from a `#[pipeline]` function
#   plain/       the same N functions without attributes, called in the same chain
# builds each once (dependencies), then REBUILDS times touches each source and rebuilds it
# (debug profile, the two crates in turn so that a change in the machine's load hits both), and
# prints the median rebuild time of each and their ratio.
#
# Usage: scripts/compile-time.sh [N=200] [REBUILDS=9]
# Honours CARGO_TARGET_DIR (shared by both crates; dependencies are built once) and CARGO_FLAGS
# (e.g. CARGO_FLAGS="-j 1"). Needs python3 for the clock.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
n=${1:-200}
rebuilds=${2:-9}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tmp/target}
read -r -a flags <<<"${CARGO_FLAGS:-}"

generate() { # generate NAME ATTRIBUTES(yes|no)
  local dir=$tmp/$1 attrs=$2
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "compile-time-$1"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
pipeline-runtime = { path = "$repo/pipeline-runtime" }

[workspace]
EOF
  {
    echo "use pipeline_runtime::prelude::*;"
    echo
    for i in $(seq 0 $((n - 1))); do
      [ "$attrs" = yes ] && echo "#[component]"
      echo "fn step_$i(x: u64) -> u64 {"
      echo "    x.wrapping_mul(31).wrapping_add($i)"
      echo "}"
      echo
    done
    if [ "$attrs" = yes ]; then
      echo "#[pipeline(name = \"chain\", project = \"compile-time\")]"
      echo "fn chain(x: u64) -> Result<u64, HandleError> {"
      echo "    let v = step_0(x);"
      for i in $(seq 1 $((n - 1))); do echo "    let v = step_$i(v);"; done
      echo "    v.get()"
    else
      echo "fn chain(x: u64) -> Result<u64, HandleError> {"
      echo "    let v = step_0(x);"
      for i in $(seq 1 $((n - 1))); do echo "    let v = step_$i(v);"; done
      echo "    Ok(v)"
    fi
    echo "}"
    echo
    echo "fn main() {"
    echo "    debug_pipeline();"
    echo "    println!(\"{:?}\", chain(1));"
    echo "}"
  } >"$dir/src/main.rs"
}

now() { python3 -c 'import time; print(time.monotonic())'; }

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

rebuild() { # rebuild NAME: touches the crate's source, rebuilds it, prints the seconds taken
  local dir=$tmp/$1 start end
  touch "$dir/src/main.rs"
  start=$(now)
  cargo build "${flags[@]}" --quiet --manifest-path "$dir/Cargo.toml" >&2
  end=$(now)
  python3 -c "print(f'{$end - $start:.3f}')"
}

generate plain no
generate components yes
for name in plain components; do
  cargo build "${flags[@]}" --quiet --manifest-path "$tmp/$name/Cargo.toml" >&2
done
plain_times=() component_times=()
for _ in $(seq 1 "$rebuilds"); do
  plain_times+=("$(rebuild plain)")
  component_times+=("$(rebuild components)")
done
echo "plain rebuilds:      ${plain_times[*]} s" >&2
echo "components rebuilds: ${component_times[*]} s" >&2
plain=$(printf '%s\n' "${plain_times[@]}" | median)
components=$(printf '%s\n' "${component_times[@]}" | median)
python3 - "$n" "$plain" "$components" <<'EOF'
import sys
n, plain, comp = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"{n} plain functions:  {plain:.2f} s (median rebuild)")
print(f"{n} components:       {comp:.2f} s (median rebuild)")
print(f"ratio {comp / plain:.2f}x, {1000 * (comp - plain) / n:.1f} ms per component")
EOF
