#!/usr/bin/env bash
# CI smoke load test: start the service on a free loopback port, run a short gated Locust test
# against it, stop it with SIGTERM, exit with the gate's exit code.
#   scripts/loadtest-smoke.sh MODELS_DIR
# The server is pinned to core 0 and Locust to core 1 when taskset exists and there are 2+ cores,
# so the load generator does not steal the server's CPU. Env: SMOKE_USERS [8],
# SMOKE_DURATION [15s], LOCUST_P95_BUDGET_MS [100: generous, CI machines are noisy],
# LOCUST_MAX_ERROR_RATE [0.01], SMOKE_READY_TIMEOUT_S [60].
set -euo pipefail

models="${1:-}"
if [[ -z "$models" || ! -d "$models" ]]; then
  echo "usage: $0 MODELS_DIR (a model repository: MODELS_DIR/<name>/<version>/)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
models="$(cd "$models" && pwd)" || exit 2

port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
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

SERVING_HOST=127.0.0.1 "${server_cpu[@]}" python -m serving --port "$port" \
  --model-repository "$models" >"$log" 2>&1 &
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
echo "loadtest-smoke: server ready on $url (pid $server_pid)" >&2

gate=0
LOADTEST_USERS="${SMOKE_USERS:-8}" LOADTEST_DURATION="${SMOKE_DURATION:-15s}" \
  LOCUST_P95_BUDGET_MS="${LOCUST_P95_BUDGET_MS:-100}" LOADTEST_CPU="$locust_cpu" \
  bash scripts/loadtest.sh "$url" || gate=$?

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
echo "loadtest-smoke: server stopped with SIGTERM (exit $server_status); gate exit $gate" >&2
exit "$gate"
