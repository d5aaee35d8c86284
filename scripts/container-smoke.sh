#!/usr/bin/env bash
# Container smoke test: build Dockerfile.serve, run it, wait for /readyz, check one /v1/predict
# answer, check that unloading the model without a key is refused (403: the control API is off
# without a keys file, docs/security.md), run the image's HEALTHCHECK, report the image size, stop
# it with SIGTERM and require exit code 0 (graceful drain).
#
# Engine: Docker when a daemon answers, else podman. Where no registry can be reached (this
# project's build machine), podman needs a stand-in for python:3.11-slim-bookworm: with
# SMOKE_STANDIN_BASE=auto (default) one is built with debootstrap when the tag is missing locally:
# Debian bookworm minbase + Debian's python3 (3.11) + python3-venv, with /usr/local/bin/python3
# and /usr/local/bin/python symlinked to /usr/bin/python3 as in the official image. It is NOT the
# official image (different Python build, different size); docs/deploy.md says so.
#
# Usage: bash scripts/container-smoke.sh [MODELS_DIR]   (a path inside the repository; default models)
# Env:   SMOKE_ENGINE=docker|podman, SMOKE_IMAGE (tag to build), SMOKE_PORT, SMOKE_READY_TIMEOUT (s),
#        SMOKE_STANDIN_BASE=auto|never|always, SMOKE_CA_BUNDLE (a CA file mounted into build steps
#        when the network needs a private CA; default: $PIP_CERT if it is a file), SMOKE_KEEP_IMAGE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
models_dir=${1:-models}
image=${SMOKE_IMAGE:-mnist-serve:smoke}
base_image=python:3.11-slim-bookworm
ready_timeout=${SMOKE_READY_TIMEOUT:-120}
name="mnist-serve-smoke-$$"

log() { printf '[container-smoke] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if ! ls "$models_dir"/*/[0-9]*/metadata.json >/dev/null 2>&1; then
    die "no model version under $models_dir/<name>/<version>/ (train one: make train)"
fi
case "$(realpath "$models_dir")/" in
    "$(pwd -P)"/*) ;;
    *) die "$models_dir must be inside the build context $(pwd -P)" ;;
esac
models_rel=$(realpath --relative-to=. "$models_dir")

engine=${SMOKE_ENGINE:-}
if [[ -z $engine ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
    elif command -v podman >/dev/null; then engine=podman
    else die "neither a Docker daemon nor podman is available"
    fi
fi
log "engine: $engine"

build_args=(--file Dockerfile.serve --tag "$image" --build-arg "MODELS_DIR=$models_rel")
run_args=(--detach --name "$name")
if [[ $engine == podman ]]; then
    # chroot isolation and runc: what works on hosts without full cgroup v2 / user namespaces.
    build_args+=(--isolation chroot --pull=never --format docker)
    # --health-interval=disable: no systemd timer here; `podman healthcheck run` below runs it once.
    run_args+=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --health-interval=disable)
    ca_bundle=${SMOKE_CA_BUNDLE:-${PIP_CERT:-}}
    if [[ -n $ca_bundle && -f $ca_bundle ]]; then
        # A network behind a TLS-inspecting proxy: give build steps the host's CA bundle and tell
        # pip (which otherwise trusts only certifi) to use it. Nothing of this lands in the image.
        pipconf=$(mktemp)
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$pipconf"
        build_args+=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" -v "$pipconf:/etc/pip.conf:ro")
    fi
fi

build_standin_base() {
    command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
    [[ $(id -u) == 0 ]] || die "building the stand-in base needs root (debootstrap)"
    local dir rootfs t0
    t0=$(date +%s)
    dir=$(mktemp -d)
    rootfs="$dir/rootfs"
    log "building a stand-in $base_image with debootstrap (bookworm minbase + python3 3.11)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$dir/debootstrap.log" 2>&1 \
        || { tail -20 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
    # The official image's python lives in /usr/local/bin; Dockerfiles and venvs refer to it there.
    for exe in python3 python python3.11; do ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/$exe"; done
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        - "docker.io/library/$base_image" >/dev/null
    rm -rf "$dir"
    log "stand-in base built in $(($(date +%s) - t0)) s"
}

if [[ $engine == podman ]]; then
    standin=${SMOKE_STANDIN_BASE:-auto}
    if [[ $standin == always ]] || { [[ $standin == auto ]] && ! podman image exists "$base_image"; }; then
        build_standin_base
    fi
    podman image exists "$base_image" || die "$base_image is not available locally"
fi

cleanup() {
    "$engine" rm --force "$name" >/dev/null 2>&1 || true
    [[ -n ${pipconf:-} ]] && rm -f "$pipconf"
    if [[ ${SMOKE_KEEP_IMAGE:-1} != 1 ]]; then "$engine" rmi "$image" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

t_build=$(date +%s)
if [[ $engine == podman ]]; then
    # buildah (1.28 on Debian 12) does not resolve `FROM ${MODELS_FROM}` to a stage name, which
    # BuildKit does: build the model stage as an image first and pass it by name instead.
    "$engine" build "${build_args[@]}" --target models-from-context --tag "$image-models" . >&2
    build_args+=(--build-arg "MODELS_FROM=localhost/$image-models")
fi
log "building $image from Dockerfile.serve (models: $models_rel)"
"$engine" build "${build_args[@]}" . >&2
build_s=$(($(date +%s) - t_build))

size_bytes=$("$engine" image inspect --format '{{.Size}}' "$image")
size_mb=$((size_bytes / 1000 / 1000))
log "image $image: $size_mb MB ($size_bytes bytes, uncompressed), built in $build_s s"

engine_flags=()
[[ $engine == podman ]] && engine_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
# Exit 0 only when the check itself ran and found no TensorFlow (a failed `run` must not pass).
"$engine" run --rm "${engine_flags[@]}" --entrypoint python "$image" -c \
    "import importlib.util, sys; sys.exit(3 if importlib.util.find_spec('tensorflow') else 0)" \
    || die "tensorflow check failed in the serving image (exit $?; 3 = tensorflow importable)"
log "no tensorflow in the image"
user=$("$engine" image inspect --format '{{.Config.User}}' "$image")
[[ -n $user && $user != root && $user != 0* ]] || die "image runs as root (User='$user')"

port=${SMOKE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
"$engine" run "${run_args[@]}" --publish "127.0.0.1:$port:8000" "$image" >/dev/null
url="http://127.0.0.1:$port"
log "container $name started, waiting for $url/readyz (<= ${ready_timeout}s)"

t_run=$(date +%s)
until python3 - "$url/readyz" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
do
    if [[ $("$engine" inspect --format '{{.State.Running}}' "$name") != true ]]; then
        "$engine" logs "$name" >&2 || true
        die "container exited before it was ready"
    fi
    if (($(date +%s) - t_run > ready_timeout)); then
        "$engine" logs "$name" >&2 || true
        die "not ready after ${ready_timeout}s"
    fi
    sleep 0.5
done
ready_s=$(($(date +%s) - t_run))
log "ready after ~${ready_s}s"

python3 - "$url/v1/predict" <<'PY' || { "$engine" logs "$name" >&2; die "/v1/predict check failed"; }
import json, math, sys, urllib.request
body = json.dumps({"instances": [[0.0] * 784]}).encode()
req = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as resp:
    assert resp.status == 200, resp.status
    answer = json.load(resp)
(pred,) = answer["predictions"]
probs = pred["probabilities"]
assert len(probs) == 10, probs
assert all(0.0 <= p <= 1.0 for p in probs) and math.isclose(sum(probs), 1.0, abs_tol=1e-3), probs
assert pred["label"] == max(range(10), key=probs.__getitem__), pred
print(f"[container-smoke] predict ok: label={pred['label']} model={answer.get('model')}", file=sys.stderr)
with urllib.request.urlopen(sys.argv[1].replace("/v1/predict", "/metrics"), timeout=10) as resp:
    text = resp.read().decode()
wanted = ('method="POST"', 'protocol="http"', 'route="/v1/predict"', 'status="200"')
counted = [
    line for line in text.splitlines()
    if line.startswith("inference_http_requests_total{") and all(w in line for w in wanted)
]
assert [line.rsplit(" ", 1)[1] for line in counted] == ["1.0"], ("not counted once", counted)
assert "inference_model_info{" in text
print("[container-smoke] /metrics ok: the request is counted", file=sys.stderr)
PY

# One request without a key must not be able to take the model down (issue 25).
python3 - "$url" <<'PY' || { "$engine" logs "$name" >&2; die "unload without a key was not refused"; }
import json, sys, urllib.error, urllib.request
url = sys.argv[1]
req = urllib.request.Request(f"{url}/v2/repository/models/mnist/unload", data=b"", method="POST")
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        sys.exit(f"[container-smoke] unload without a key answered {resp.status}: the model is unloaded")
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read().decode()
assert status == 403, (status, body)
message = json.loads(body)["error"]  # the OIP shape on /v2 paths
assert "SERVING_KEYS_FILE" in message, message
with urllib.request.urlopen(f"{url}/v2/models/mnist/ready", timeout=10) as resp:
    assert resp.status == 200, resp.status  # still served
print("[container-smoke] unload without a key: 403, the model is still served", file=sys.stderr)
PY

if [[ $engine == podman ]]; then
    podman healthcheck run "$name" >/dev/null || die "HEALTHCHECK failed on a ready container"
else
    # Docker runs the HEALTHCHECK itself every 10 s: wait for its verdict.
    for _ in $(seq 1 45); do
        health=$(docker inspect --format '{{.State.Health.Status}}' "$name")
        [[ $health == healthy ]] && break
        sleep 1
    done
    [[ $health == healthy ]] || die "HEALTHCHECK status: $health"
fi
log "HEALTHCHECK (urllib on /readyz) passed"

log "stopping with SIGTERM"
"$engine" stop --time 30 "$name" >/dev/null
exit_code=$("$engine" inspect --format '{{.State.ExitCode}}' "$name")
[[ $exit_code == 0 ]] || { "$engine" logs "$name" >&2; die "exit code after SIGTERM: $exit_code (want 0)"; }
log "exited 0 after SIGTERM"

log "PASS: image $size_mb MB, build ${build_s}s, ready ${ready_s}s, total $(($(date +%s) - started))s"
