#!/usr/bin/env bash
# A two-node Ray cluster on this one machine: a head node and a worker node, each with its own
# raylet and CPUs, as the tests use it to show work spreading across nodes.
#
#   infra/local/ray-two-node.sh start   # prints RAY_ADDRESS=... and DASHBOARD=http://...
#   infra/local/ray-two-node.sh stop    # stops this cluster only (not other Rays on the machine)
#
# Settings (environment): RAY_PORT (6390), RAY_DASHBOARD_PORT (8266), CPUS_PER_NODE (1),
# RAY_AUTH_TOKEN_PATH (a token file; created if missing). Token authentication is on
# (RAY_AUTH_MODE=token): since Ray 2.59 local clusters default to it, and a node or client
# without the token is refused. Clients (zoo-audit --address, ray job submit) need the same
# RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH.
set -euo pipefail
PORT="${RAY_PORT:-6390}"
DASH="${RAY_DASHBOARD_PORT:-8266}"
CPUS="${CPUS_PER_NODE:-1}"
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/zoo-audit-two-node.token}"
export RAY_USAGE_STATS_ENABLED=0
BIN="$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin"
[ -x "$BIN/ray" ] && export PATH="$BIN:$PATH"   # the job's `python` must be the one with zoo-audit

case "${1:-start}" in
start)
  if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
    mkdir -p "$(dirname "$RAY_AUTH_TOKEN_PATH")"
    (umask 077 && python -c "import secrets; print(secrets.token_hex(32))" > "$RAY_AUTH_TOKEN_PATH")
  fi
  # Two nodes on one host must not share their agents' ports (the defaults, e.g. 52365, are fixed;
  # a clash leaves a node without a job agent and job submission fails with "No available agent").
  node_ports() {
    python - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
a, g, m, r = (s.getsockname()[1] for s in socks)
print(f"--dashboard-agent-listen-port {a} --dashboard-agent-grpc-port {g} --metrics-export-port {m} --runtime-env-agent-port {r}")
PY
  }
  # shellcheck disable=SC2046
  ray start --head --port "$PORT" --num-cpus "$CPUS" --num-gpus 0 --include-dashboard true \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASH" --disable-usage-stats $(node_ports) >/dev/null
  # shellcheck disable=SC2046
  ray start --address "127.0.0.1:$PORT" --num-cpus "$CPUS" --num-gpus 0 $(node_ports) >/dev/null
  echo "RAY_ADDRESS=127.0.0.1:$PORT"
  echo "DASHBOARD=http://127.0.0.1:$DASH"
  ;;
stop)
  # `ray stop` would stop every Ray on the machine; kill only the processes naming this GCS port.
  pkill -f -- "gcs[-_]address=[^ ]*:${PORT}( |$)|gcs_server_port=${PORT}( |$)" || true
  sleep 2
  pkill -9 -f -- "gcs[-_]address=[^ ]*:${PORT}( |$)|gcs_server_port=${PORT}( |$)" || true
  ;;
*)
  echo "usage: $0 start|stop" >&2; exit 4 ;;
esac
