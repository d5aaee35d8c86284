#!/usr/bin/env bash
# Post-deploy smoke test against a deployed URL: /readyz answers 200 and one /v1/predict with 784
# zeros answers 200 with 10 probabilities. Retries while a new revision/task comes up.
#   .github/scripts/post-deploy-smoke.sh URL
# Env (all optional): SMOKE_API_KEY, the service's API key (docs/security.md), sent as
# "Authorization: Bearer"; SMOKE_ID_TOKEN, a Cloud Run identity token for a private service, sent
# as "X-Serverless-Authorization: Bearer" (Cloud Run checks it there and leaves Authorization to
# the service); SMOKE_BEARER_TOKEN, the former name of SMOKE_ID_TOKEN, sent as Authorization when
# there is no API key. They reach curl through a private file (printf is a shell builtin), never
# on a command line, where other processes could read them.
set -euo pipefail
url=${1:?usage: post-deploy-smoke.sh URL}
url=${url%/}
headers=$(mktemp)  # mode 0600
trap 'rm -f "$headers"' EXIT
if [[ -n ${SMOKE_API_KEY:-} ]]; then
    printf 'Authorization: Bearer %s\n' "$SMOKE_API_KEY" >>"$headers"
fi
if [[ -n ${SMOKE_ID_TOKEN:-} ]]; then
    printf 'X-Serverless-Authorization: Bearer %s\n' "$SMOKE_ID_TOKEN" >>"$headers"
elif [[ -n ${SMOKE_BEARER_TOKEN:-} && -z ${SMOKE_API_KEY:-} ]]; then
    printf 'Authorization: Bearer %s\n' "$SMOKE_BEARER_TOKEN" >>"$headers"
fi
auth=(--header "@$headers")
for attempt in $(seq 1 30); do
    if curl --fail --silent --show-error --max-time 5 "${auth[@]}" "$url/readyz" >/dev/null; then
        break
    fi
    if ((attempt == 30)); then
        echo "post-deploy smoke: $url/readyz not ready after 30 attempts" >&2
        exit 1
    fi
    sleep 5
done
body=$(python3 -c 'import json; print(json.dumps({"instances": [[0.0] * 784]}))')
answer=$(curl --fail --silent --show-error --max-time 10 "${auth[@]}" \
    --header 'Content-Type: application/json' --data "$body" "$url/v1/predict")
python3 - "$answer" <<'PY'
import json, sys
answer = json.loads(sys.argv[1])
(pred,) = answer["predictions"]
assert len(pred["probabilities"]) == 10, pred
print(f"post-deploy smoke ok: label={pred['label']} model={answer['model']}")
PY
