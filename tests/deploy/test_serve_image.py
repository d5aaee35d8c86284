"""The serving image's promises that can be checked without building it.

Building needs a container engine (scripts/container-smoke.sh does that); these tests pin down
what the Dockerfile and the dependency set promise so a careless edit fails fast in pytest.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile.serve").read_text()
TF_FAMILY = {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "tf-keras", "tensorboard"}


def serve_closure() -> set[str]:
    """Every distribution `pip install '.[serve]'` pulls in, from the installed metadata.

    Walks Requires-Dist transitively with environment markers evaluated (extras only where asked
    for), which is what pip resolves: a package the serve extra does not need never appears.
    """
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [
        (Requirement(r), "")
        for r in project["dependencies"] + project["optional-dependencies"]["serve"]
    ]
    seen: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        wanted = [(name, "")] + [(name, e) for e in req.extras]
        for dist_name, dist_extra in wanted:
            key = f"{dist_name}[{dist_extra}]"
            if key in seen:
                continue
            seen.add(key)
            for sub in metadata.requires(dist_name) or []:
                todo.append((Requirement(sub), dist_extra))
    return {key.split("[")[0] for key in seen}


def final_stage() -> str:
    """The last stage's instructions: comments dropped, backslash continuations joined."""
    stage = DOCKERFILE.split("AS serve\n", 1)[1]
    lines = [line for line in stage.splitlines(keepends=True) if not line.startswith("#")]
    return "".join(lines).replace("\\\n", " ")


def test_serve_dependency_closure_has_no_tensorflow_family() -> None:
    closure = serve_closure()
    assert {"onnxruntime", "litestar", "numpy"} <= closure  # the walk really ran
    assert closure.isdisjoint(TF_FAMILY), sorted(closure & TF_FAMILY)


def test_builder_installs_exactly_the_serve_extra_locked_by_constraints() -> None:
    assert "['optional-dependencies']['serve']" in DOCKERFILE
    assert "-c constraints.txt -r serve-requirements.txt" in DOCKERFILE


def test_final_stage_copies_only_the_serving_packages_venv_and_models() -> None:
    copies = re.findall(r"^COPY (.+)$", final_stage(), flags=re.MULTILINE)
    assert sorted(copies) == sorted(
        [
            "--from=builder /opt/venv /opt/venv",
            "--from=models /models /models",
            "model_repository /app/model_repository",
            "serving /app/serving",
        ]
    )


def test_final_stage_is_non_root_with_exec_entrypoint_and_urllib_healthcheck() -> None:
    stage = final_stage()
    user = re.findall(r"^USER (\S+)$", stage, flags=re.MULTILINE)
    assert user == ["10001:10001"]
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", stage, flags=re.MULTILINE)
    assert json.loads(entrypoint) == ["python", "-m", "serving"]  # exec form: PID 1 gets SIGTERM
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.+\])$", stage, flags=re.MULTILINE)
    assert healthcheck is not None
    command = json.loads(healthcheck.group(1))
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/readyz" in command[2]
    assert "curl" not in stage
    assert "wget" not in stage
    assert "SERVING_HOST=0.0.0.0" in stage
    assert "PORT=8000" in stage


def test_the_build_time_import_check_runs_against_this_code(tiny_model_repository: Path) -> None:
    """The image build runs a one-line Python check of the app; run the same line here, so
    that an API change it relies on fails in pytest, not minutes into the container build."""
    match = re.search(r'^RUN python -c "(.+)"$', final_stage(), re.MULTILINE)
    assert match is not None, "Dockerfile.serve lost its build-time import check"
    code = match.group(1).replace("'/models'", repr(str(tiny_model_repository)))
    assert code != match.group(1)  # the check names the image's model folder
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
