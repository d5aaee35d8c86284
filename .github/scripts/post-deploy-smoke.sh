#!/usr/bin/env bash
# Post-deploy smoke test against a deployed URL: /readyz answers 200 and one /v1/predict with 784
# zeros answers 200 with 10 probabilities. Retries while a new revision/task comes up.
#   .github/scripts/post-deploy-smoke.sh URL      (env SMOKE_BEARER_TOKEN: optional auth token)
set -euo pipefail
url=${1:?usage: post-deploy-smoke.sh URL}
url=${url%/}
auth=()
if [[ -n ${SMOKE_BEARER_TOKEN:-} ]]; then
    auth=(--header "Authorization: Bearer $SMOKE_BEARER_TOKEN")
fi
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
