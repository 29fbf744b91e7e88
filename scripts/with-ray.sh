#!/usr/bin/env bash
# Runs a command beside a two-node Ray cluster and an S3-compatible server (moto), all on
# loopback, for the remote-mode tests: installs Ray and moto from PyPI into .venv-ray on first
# use, starts moto with a bucket `pipeline-tests`, a Ray head on free ports serving the queues
# `default` (100 slots) and `gpu` (1 slot), and a second node, the only one serving the queue
# `isolated`, that cannot see this machine's files as the head does: it runs in a private mount
# namespace where a tmpfs covers the repository (all but .venv-ray) and the folder named by
# PIPELINE_TEST_HIDDEN (tests put state folders there), as a worker machine without a shared
# folder would. Its processes' temporary folder is PIPELINE_TEST_NODE_TMP. The command runs with
# PIPELINE_RAY_ADDRESS and the AWS_* variables pointing at the services; all are stopped by
# process id whatever the outcome.
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
socks = [socket.socket() for _ in range(16)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()'
}
# Every port pinned: one Ray picks itself may collide with a cluster just stopped (its agent's
# port taken makes job submission answer "No available agent").
read -r gcs_port dashboard_port agent_port client_port s3_port \
  node_agent_port node_agent_grpc_port node_env_port node_metrics_port node_manager_port node_object_port \
  agent_grpc_port env_port metrics_port manager_port object_port \
  < <(free_ports)

# Short: Ray puts unix sockets under it, and their paths are limited in length.
tmp=$(mktemp -d /tmp/ray.XXXXXX)

head_pid=""
node_pid=""
"$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
stop_all() {
  local status=$?
  kill $node_pid $head_pid "$moto_pid" 2>/dev/null || true
  wait $node_pid $head_pid "$moto_pid" 2>/dev/null || true
  # A failure's evidence (a Ray worker that died, a job's driver log) lives only in these logs:
  # kept, with the services' own, where `cargo clean` removes them.
  if [ "$status" -ne 0 ]; then
    keep="target/with-ray-logs/$(date +%Y%m%d-%H%M%S)-$$"
    mkdir -p "$keep/head" "$keep/node"
    cp "$tmp"/*.log "$keep/" 2>/dev/null || true
    cp -r "$tmp"/ray/session_latest/logs/. "$keep/head/" 2>/dev/null || true
    cp -r "$tmp"/node/ray/session_latest/logs/. "$keep/node/" 2>/dev/null || true
    echo "with-ray: the command failed (status $status); the logs of Ray and moto are in $keep" >&2
  fi
  rm -rf "$tmp"
}
trap stop_all EXIT
# Exported before Ray starts, so that its workers see the same object storage.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true

export RAY_USAGE_STATS_ENABLED=0
# Jobs find the venv's Python (with `ray`) as `python3`, as on a cluster started from an
# activated environment: the warm runner's job needs it.
PATH="$(pwd)/$venv/bin:$PATH" "$venv/bin/ray" start --head --block \
  --port "$gcs_port" --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" \
  --dashboard-agent-listen-port "$agent_port" --ray-client-server-port "$client_port" \
  --dashboard-agent-grpc-port "$agent_grpc_port" --runtime-env-agent-port "$env_port" \
  --metrics-export-port "$metrics_port" --node-manager-port "$manager_port" --object-manager-port "$object_port" \
  --num-cpus 2 --resources '{"queue_default": 100, "queue_gpu": 1}' \
  --temp-dir "$tmp/ray" --disable-usage-stats >"$tmp/head.log" 2>&1 &
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

# The second node. Ray's agents find a node's logs under the head's temporary folder, so the
# node's own folder is mounted there in its namespace: same path, other files, as on another
# machine.
mkdir -p "$tmp/hidden" "$tmp/node/ray" "$tmp/node/tmp" "$tmp/node/venv"
repo=$(pwd)
# Root makes a mount namespace directly; anyone else through a user namespace of their own.
namespace=(unshare --mount --propagation private)
[ "$(id -u)" = 0 ] || namespace=(unshare --user --map-root-user --mount --propagation private)
"${namespace[@]}" -- bash -c '
  set -e
  tmp=$1 repo=$2; shift 2
  mount --bind "$tmp/node/ray" "$tmp/ray"
  mount -t tmpfs tmpfs "$tmp/hidden"
  mount --bind "$repo/.venv-ray" "$tmp/node/venv"
  mount -t tmpfs tmpfs "$repo"
  mkdir "$repo/.venv-ray"
  mount --bind "$tmp/node/venv" "$repo/.venv-ray"
  cd /
  TMPDIR="$tmp/node/tmp" PATH="$repo/.venv-ray/bin:$PATH" exec "$repo/.venv-ray/bin/ray" "$@"
' with-ray-node "$tmp" "$repo" start --block --address "127.0.0.1:$gcs_port" \
  --num-cpus 1 --resources '{"queue_isolated": 4}' --temp-dir "$tmp/ray" \
  --dashboard-agent-listen-port "$node_agent_port" --dashboard-agent-grpc-port "$node_agent_grpc_port" \
  --runtime-env-agent-port "$node_env_port" --metrics-export-port "$node_metrics_port" \
  --node-manager-port "$node_manager_port" --object-manager-port "$node_object_port" \
  --disable-usage-stats >"$tmp/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 120); do
  if "$venv/bin/ray" status --address "127.0.0.1:$gcs_port" 2>/dev/null | grep -q queue_isolated; then
    break
  fi
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "with-ray: the second Ray node did not start (it needs mount namespaces: root, or unprivileged user namespaces):" >&2
    tail -n 30 "$tmp/node.log" >&2
    exit 1
  fi
  sleep 1
done
export PIPELINE_TEST_HIDDEN="$tmp/hidden" PIPELINE_TEST_NODE_TMP="$tmp/node/tmp"

echo "with-ray: Ray head at $address (pid $head_pid), a second node (pid $node_pid), S3 at $AWS_ENDPOINT (pid $moto_pid)" >&2
export PIPELINE_RAY_ADDRESS="$address"
"$@"
