#!/usr/bin/env bash
# CI smoke load test: start the service on free loopback ports (HTTP and gRPC), run a short gated
# Locust test against each door (v1 HTTP, then OIP gRPC ModelInfer), stop it with SIGTERM, exit
# non-zero when either gate failed.
#   scripts/loadtest-smoke.sh MODELS_DIR
# The server is pinned to core 0 and Locust to core 1 when taskset exists and there are 2+ cores,
# so the load generator does not steal the server's CPU. Env: SMOKE_USERS [8],
# SMOKE_DURATION [15s], SMOKE_GRPC [1; 0 skips the gRPC leg], SMOKE_GRPC_USERS [4],
# SMOKE_GRPC_DURATION [5s: short, the door's gate, not a second load test],
# LOCUST_P95_BUDGET_MS [100: generous, CI machines are noisy], LOCUST_MAX_ERROR_RATE [0.01],
# SMOKE_READY_TIMEOUT_S [60].
set -euo pipefail

models="${1:-}"
if [[ -z "$models" || ! -d "$models" ]]; then
  echo "usage: $0 MODELS_DIR (a model repository: MODELS_DIR/<name>/<version>/)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
models="$(cd "$models" && pwd)" || exit 2

free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port="$(free_port)"
grpc_port=0
if [[ "${SMOKE_GRPC:-1}" != "0" ]]; then
  grpc_port="$(free_port)"
  while [[ "$grpc_port" == "$port" ]]; do grpc_port="$(free_port)"; done
fi
url="http://127.0.0.1:$port"
server_cpu=() locust_cpu=""
if command -v taskset >/dev/null && [[ "$(nproc)" -ge 2 ]]; then
  server_cpu=(taskset -c 0) locust_cpu=1
fi

log="$(mktemp -t loadtest-smoke-server.XXXXXX.log)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SERVING_HOST=127.0.0.1 SERVING_GRPC_PORT="$grpc_port" "${server_cpu[@]}" python -m serving \
  --port "$port" --model-repository "$models" >"$log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + ${SMOKE_READY_TIMEOUT_S:-60}))
until python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$url/readyz', timeout=1).status != 200)" 2>/dev/null; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "loadtest-smoke: the server exited before it was ready; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "loadtest-smoke: not ready after ${SMOKE_READY_TIMEOUT_S:-60}s; server log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "loadtest-smoke: server ready on $url, gRPC port $grpc_port (pid $server_pid)" >&2

gate=0
LOADTEST_USERS="${SMOKE_USERS:-8}" LOADTEST_DURATION="${SMOKE_DURATION:-15s}" \
  LOCUST_P95_BUDGET_MS="${LOCUST_P95_BUDGET_MS:-100}" LOADTEST_CPU="$locust_cpu" \
  bash scripts/loadtest.sh "$url" || gate=$?
if [[ "$grpc_port" != "0" ]]; then
  # The gRPC door under the same gate (Locust's custom-client pattern: loadtest/oip_grpc.py);
  # its own run directory, as two runs can start within the same second.
  grpc_gate=0
  LOADTEST_USERS="${SMOKE_GRPC_USERS:-4}" LOADTEST_DURATION="${SMOKE_GRPC_DURATION:-5s}" \
    LOCUST_P95_BUDGET_MS="${LOCUST_P95_BUDGET_MS:-100}" LOADTEST_CPU="$locust_cpu" \
    LOADTEST_RUN_DIR="runs/loadtest/$(date -u +%Y%m%dT%H%M%SZ)-grpc" \
    bash scripts/loadtest.sh "$url" --protocol grpc --grpc-host "127.0.0.1:$grpc_port" \
    || grpc_gate=$?
  echo "loadtest-smoke: gRPC gate exit $grpc_gate" >&2
  if ((gate == 0)); then gate=$grpc_gate; fi
fi

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
echo "loadtest-smoke: server stopped with SIGTERM (exit $server_status); gate exit $gate" >&2
exit "$gate"
