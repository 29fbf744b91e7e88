#!/usr/bin/env bash
# Runs a command beside a single-node Ray cluster and an S3-compatible server (moto), both on
# loopback, for the remote-mode tests: installs Ray and moto from PyPI into .venv-ray on first
# use, starts moto with a bucket `pipeline-tests` and a Ray head on free ports serving the queues
# `default` (100 slots) and `gpu` (1 slot), runs the command with PIPELINE_RAY_ADDRESS and the
# AWS_* variables pointing at them, and stops both by process id whatever the outcome.
#
# Usage: scripts/with-ray.sh COMMAND [ARGS...]     e.g. scripts/with-ray.sh cargo test --workspace
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-ray
if [ ! -x "$venv/bin/ray" ] || [ ! -x "$venv/bin/moto_server" ]; then
  echo "with-ray: installing Ray and moto into $venv (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]==2.60.0" "moto[server]==5.2.5"
fi

free_ports() {
  python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()'
}
read -r gcs_port dashboard_port agent_port client_port s3_port < <(free_ports)

# Short: Ray puts unix sockets under it, and their paths are limited in length.
tmp=$(mktemp -d /tmp/ray.XXXXXX)

head_pid=""
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
stop_all() {
  kill $head_pid "$moto_pid" 2>/dev/null || true
  wait $head_pid "$moto_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop_all EXIT
# Exported before Ray starts, so that its workers see the same object storage.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true

export RAY_USAGE_STATS_ENABLED=0
"$venv/bin/ray" start --head --block \
  --port "$gcs_port" --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" \
  --dashboard-agent-listen-port "$agent_port" --ray-client-server-port "$client_port" \
  --num-cpus 2 --resources '{"queue_default": 100, "queue_gpu": 1}' \
  --temp-dir "$tmp" --disable-usage-stats >"$tmp/head.log" 2>&1 &
head_pid=$!

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
for _ in $(seq 1 60); do
  if python3 -c "import urllib.request as u; u.urlopen(u.Request('$AWS_ENDPOINT/pipeline-tests', method='PUT'), timeout=2)" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
echo "with-ray: Ray head at $address (pid $head_pid), S3 at $AWS_ENDPOINT (pid $moto_pid)" >&2
export PIPELINE_RAY_ADDRESS="$address"
"$@"
