#!/usr/bin/env bash
# Gated Locust run against a running service: scripts/loadtest.sh URL [extra locust args...]
#
# Writes Locust's HTML, CSV and JSON stats into runs/loadtest/<timestamp>/ and prints the
# one-line SUMMARY last; exits non-zero when p95 > budget or error rate > max (the gate).
# Environment (defaults in brackets):
#   LOADTEST_USERS [8]  LOADTEST_SPAWN_RATE [=users]  LOADTEST_DURATION [30s]
#   LOADTEST_SHAPE [steady|step|spike]  LOADTEST_PROCESSES [1; N>1 = master + N workers]
#   LOCUST_P95_BUDGET_MS [50]  LOCUST_MAX_ERROR_RATE [0.01]  MNIST_DIR [../shared/data/mnist]
#   LOADTEST_CPU [unset; a core number pins Locust there with taskset]
#   LOADTEST_RUN_DIR [runs/loadtest/<UTC timestamp>]
set -euo pipefail

url="${1:-}"
if [[ -z "$url" ]]; then
  echo "usage: $0 URL [extra locust args]   (e.g. $0 http://127.0.0.1:8000)" >&2
  exit 2
fi
shift

cd "$(dirname "$0")/.."
users="${LOADTEST_USERS:-8}"
run_dir="${LOADTEST_RUN_DIR:-runs/loadtest/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$run_dir"

cmd=(locust -f loadtest/locustfile.py --headless --host "$url"
  --users "$users" --spawn-rate "${LOADTEST_SPAWN_RATE:-$users}"
  --run-time "${LOADTEST_DURATION:-30s}" --shape "${LOADTEST_SHAPE:-steady}"
  --html "$run_dir/report.html" --csv "$run_dir/stats" --json-file "$run_dir/stats"
  --only-summary --loglevel WARNING)
if [[ "${LOADTEST_PROCESSES:-1}" != "1" ]]; then
  cmd+=(--processes "$LOADTEST_PROCESSES")
fi
if [[ -n "${LOADTEST_CPU:-}" ]] && command -v taskset >/dev/null; then
  cmd=(taskset -c "$LOADTEST_CPU" "${cmd[@]}")
fi

echo "loadtest: $url -> $run_dir" >&2
status=0
"${cmd[@]}" "$@" || status=$?
exit "$status"
