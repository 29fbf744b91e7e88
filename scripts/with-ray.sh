#!/usr/bin/env bash
# Runs a command beside a single-node Ray cluster on loopback, for the remote-mode tests:
# installs Ray from PyPI into .venv-ray on first use, starts a head on free ports serving the
# queues `default` (100 slots) and `gpu` (1 slot), runs the command with PIPELINE_RAY_ADDRESS
# pointing at it, and stops the head by its process id whatever the command's outcome.
#
# Usage: scripts/with-ray.sh COMMAND [ARGS...]     e.g. scripts/with-ray.sh cargo test --workspace
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-ray
if [ ! -x "$venv/bin/ray" ]; then
  echo "with-ray: installing Ray into $venv (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]==2.60.0"
fi

free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()'
}
read -r gcs_port dashboard_port agent_port client_port < <(free_ports)

# Short: Ray puts unix sockets under it, and their paths are limited in length.
tmp=$(mktemp -d /tmp/ray.XXXXXX)
export RAY_USAGE_STATS_ENABLED=0
"$venv/bin/ray" start --head --block \
  --port "$gcs_port" --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" \
  --dashboard-agent-listen-port "$agent_port" --ray-client-server-port "$client_port" \
  --num-cpus 2 --resources '{"queue_default": 100, "queue_gpu": 1}' \
  --temp-dir "$tmp" --disable-usage-stats >"$tmp/head.log" 2>&1 &
head_pid=$!

stop_head() {
  kill "$head_pid" 2>/dev/null || true
  wait "$head_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop_head EXIT

address="http://127.0.0.1:$dashboard_port"
for _ in $(seq 1 120); do
  if python3 -c "import urllib.request; urllib.request.urlopen('$address/api/version', timeout=2)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$head_pid" 2>/dev/null; then
    echo "with-ray: the Ray head did not start:" >&2
    tail -n 30 "$tmp/head.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "with-ray: Ray head at $address (pid $head_pid)" >&2
export PIPELINE_RAY_ADDRESS="$address"
"$@"
