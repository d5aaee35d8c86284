"""scripts/deploy_notify.py, the release workflow's last job: the job summary it writes and the
JSON it posts, against a real HTTP server on 127.0.0.1 standing in for Slack's webhook.

The script runs as the workflow runs it (a subprocess with only the environment the runner
gives it); the timeout and escaping cases call its functions directly.
"""

from __future__ import annotations

import ast
import http.server
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "deploy_notify.py"
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"

SHA = "0123456789abcdef0123456789abcdef01234567"
SECRET = "T0SECRET/B0SECRET/xoxSecretToken42"  # the part of a Slack webhook URL that is the key
RUN_URL = "https://github.com/acme/mnist/actions/runs/42"
PREVIOUS_SUMMARY = "## gate\n\nan earlier step's summary\n"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_notify", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    # scripts/ is not one of the packages mypy's config lists: this import is what makes mypy
    # check the script (strictly) and type these tests against it. At run time it is loaded by
    # path, because scripts/ is on sys.path only when pytest runs from the repository root.
    from scripts import deploy_notify
else:
    deploy_notify = _load(SCRIPT)


# ---------------------------------------------------------------- the stand-in webhook


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    body: dict[str, Any]

    @property
    def blocks_text(self) -> str:
        texts = []
        for block in self.body["blocks"]:
            if block["type"] == "section":
                texts.append(block["text"]["text"])
            else:
                texts += [element["text"] for element in block["elements"]]
        return "\n".join(texts)


class Webhook:
    """An HTTP server in a thread that records every POST and answers with ``status``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.hang = False  # hold each request until the test ends (a webhook that times out)
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                content_type = self.headers.get("Content-Type", "")
                hook.received.append(Received(self.path, content_type, json.loads(body)))
                if hook.hang:
                    hook.release.wait(30)
                    return  # the client gave up long ago: nobody to answer
                # Like Slack: "ok", or a short reason. This one also quotes the request path,
                # which is the secret: the script must not repeat it.
                answer = b"ok" if hook.status == 200 else f"no_service {self.path}".encode()
                self.send_response(hook.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the secret path; keep it out of pytest's output

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for the loop's next look at its flag.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        hook.server.shutdown()
        hook.server.server_close()
        hook.thread.join(10)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so nothing else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/services/{SECRET}"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy variables; a developer's proxy must not stand between the script
    # and the loopback server in the in-process tests.
    for key in list(os.environ):
        if key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)


# ---------------------------------------------------------------- running the script


@dataclass(frozen=True)
class Run:
    returncode: int
    log: str  # stdout + stderr, what the workflow log shows
    summary: str

    def assert_secret_kept(self) -> None:
        for part in SECRET.split("/"):
            assert part not in self.log
            assert part not in self.summary


def needs(
    target: str = "cloudrun",
    *,
    build: str = "success",
    result: str = "success",
    **outputs: str,
) -> dict[str, Any]:
    """`toJSON(needs)` as GitHub gives it: every job, the delivering one with ``outputs``."""
    delivering = {"cloudrun": "deploy-cloudrun", "ecs": "deploy-ecs"}.get(target, "publish-ghcr")
    jobs: dict[str, Any] = {
        name: {"result": "skipped", "outputs": {}}
        for name in ("publish-ghcr", "deploy-cloudrun", "deploy-ecs")
    }
    if build == "success":
        jobs[delivering] = {"result": result, "outputs": outputs}
    return {"build-and-gate": {"result": build, "outputs": {}}, **jobs}


def run_notify(
    tmp_path: Path, target: str, needs_json: Mapping[str, Any] | str, url: str | None
) -> Run:
    summary = tmp_path / "step_summary.md"
    summary.write_text(PREVIOUS_SUMMARY)  # the runner's file may already hold other steps' text
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/mnist",
        "GITHUB_RUN_ID": "42",
        "GITHUB_SHA": SHA,
        "GITHUB_STEP_SUMMARY": str(summary),
        "DEPLOY_TARGET": target,
        "NEEDS_JSON": needs_json if isinstance(needs_json, str) else json.dumps(needs_json),
    }
    if url is not None:
        env["DEPLOY_WEBHOOK_URL"] = url
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout + done.stderr, summary.read_text())


CLOUDRUN_IMAGE = "europe-west1-docker.pkg.dev/acme/mnist/mnist-serve@sha256:" + "a" * 64
ECR_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mnist@sha256:" + "b" * 64
CLOUDRUN = {
    "image": CLOUDRUN_IMAGE,
    "digest": "sha256:" + "a" * 64,
    "revision": "mnist-inference-00042-xyz",
    "previous": "mnist-inference-00041-abc",
    "url": "https://mnist-inference-abc-ew.a.run.app",
}
ECS = {
    "image": ECR_IMAGE,
    "digest": "sha256:" + "b" * 64,
    "revision": "mnist-inference:8",
    "previous": "mnist-inference:7",
}


@dataclass(frozen=True)
class Case:
    target: str
    needs: dict[str, Any]
    headline: str  # in the summary's heading and the message's first line
    rows: tuple[str, ...]  # summary table rows
    slack: tuple[str, ...] = ()  # lines of the message's text
    absent: tuple[str, ...] = ()  # in neither


CASES = {
    "cloudrun deployed": Case(
        "cloudrun",
        needs(smoke="success", rollback="skipped", **CLOUDRUN),
        "✅ Release 0123456 deployed to Cloud Run",
        (
            f"| Image | `{CLOUDRUN_IMAGE}` |",
            "| Revision | `mnist-inference-00042-xyz` |",
            "| Previous revision | `mnist-inference-00041-abc` |",
            "| Service | https://mnist-inference-abc-ew.a.run.app |",
            "| Smoke test | passed |",
            "| Rollback | not needed |",
        ),
        (f"*Image:* `{CLOUDRUN_IMAGE}`", "*Revision:* `mnist-inference-00042-xyz`"),
        absent=("Digest",),  # already in the image reference
    ),
    "ecs smoke test failed, rolled back": Case(
        "ecs",
        needs("ecs", result="failure", smoke="failure", rollback="success", **ECS),
        "❌ Release 0123456 failed its smoke test on ECS; rolled back to mnist-inference:7",
        (
            "| Target | ECS |",
            "| Task definition | `mnist-inference:8` |",
            "| Smoke test | FAILED |",
            "| Rollback | rolled back to `mnist-inference:7` |",
        ),
        ("*Smoke test:* FAILED", "*Rollback:* rolled back to `mnist-inference:7`"),
    ),
    "cloudrun deploy step failed, rolled back": Case(
        "cloudrun",
        needs(result="failure", smoke="skipped", rollback="success", **CLOUDRUN),
        "❌ Release 0123456 failed on Cloud Run; rolled back to mnist-inference-00041-abc",
        (
            "| Smoke test | not run (an earlier step failed) |",
            "| Rollback | rolled back to `mnist-inference-00041-abc` |",
        ),
    ),
    "rollback failed": Case(
        "cloudrun",
        needs(result="failure", smoke="failure", rollback="failure", **CLOUDRUN),
        "❌ Release 0123456 failed its smoke test on Cloud Run; the rollback to "
        "mnist-inference-00041-abc FAILED: check the service",
        (
            "| Rollback | FAILED, check the service; it was going back to "
            "`mnist-inference-00041-abc` |",
        ),
    ),
    "first deploy failed, nothing to roll back to": Case(
        "ecs",
        needs("ecs", result="failure", smoke="failure", rollback="skipped", revision="mi:1"),
        "❌ Release 0123456 failed its smoke test on ECS; no previous task definition to roll "
        "back to",
        ("| Rollback | none: no previous task definition (first deploy?) |",),
        absent=("Previous task definition",),
    ),
    "ecs without a smoke-test URL": Case(
        "ecs",
        needs("ecs", smoke="not run: ECS_SERVICE_URL is not set", rollback="skipped", **ECS),
        "✅ Release 0123456 deployed to ECS",
        ("| Smoke test | not run: ECS_SERVICE_URL is not set |",),
    ),
    "gate failed, nothing deployed": Case(
        "cloudrun",
        needs(build="failure"),
        "❌ Release 0123456 failed in build-and-gate (train, build, p95 gate): nothing was "
        "pushed or deployed",
        (
            "| Jobs | build-and-gate failure, publish-ghcr skipped, deploy-cloudrun skipped, "
            "deploy-ecs skipped |",
        ),
        absent=("Image", "Revision", "Smoke test", "Rollback"),
    ),
    "cancelled during the build": Case(
        "ecs",
        needs("ecs", build="cancelled"),
        "⚪ Release 0123456 was cancelled in build-and-gate",
        ("| Target | ECS |",),
    ),
    "no deploy target: pushed to GHCR": Case(
        "",
        needs("", image="ghcr.io/acme/mnist/mnist-serve@sha256:" + "c" * 64),
        "✅ Release 0123456 pushed to GHCR",
        ("| Target | GHCR only (DEPLOY_TARGET is not set) |",),
        absent=("Smoke test", "Rollback", "Revision"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_summary_and_webhook_message(tmp_path: Path, webhook: Webhook, case: Case) -> None:
    run = run_notify(tmp_path, case.target, case.needs, webhook.url)

    assert run.returncode == 0, run.log
    assert run.summary.startswith(PREVIOUS_SUMMARY)  # appended, not overwritten
    summary = run.summary.removeprefix(PREVIOUS_SUMMARY)
    assert summary.splitlines()[0].startswith(f"## {case.headline}")
    for row in case.rows:
        assert row in summary.splitlines(), summary
    assert f"| Commit | `{SHA}` |" in summary
    assert "| Webhook | sent (HTTP 200) |" in summary
    assert f"[Workflow run]({RUN_URL})" in summary

    (request,) = webhook.received
    assert request.path == f"/services/{SECRET}"
    assert request.content_type == "application/json"
    text = request.body["text"]
    first_line = case.headline.replace("Release", "acme/mnist: Release", 1)
    assert text.splitlines()[0].startswith(first_line), text
    for line in case.slack:
        assert line in text.splitlines()
        assert line in request.blocks_text  # the blocks say what the fallback text says
    assert f"<{RUN_URL}|Workflow run>" in text
    assert f"<{RUN_URL}|Workflow run>" in request.blocks_text
    for word in case.absent:
        assert word not in summary
        assert word not in text

    assert "webhook: sent (HTTP 200)" in run.log
    run.assert_secret_kept()


@pytest.mark.parametrize("url", [None, ""], ids=["unset", "empty (secret not defined)"])
def test_no_url_sends_nothing_and_the_summary_says_so(
    tmp_path: Path, webhook: Webhook, url: str | None
) -> None:
    run = run_notify(tmp_path, "cloudrun", needs(smoke="success", **CLOUDRUN), url)

    assert run.returncode == 0, run.log
    assert webhook.received == []
    assert "| Webhook | not sent: the `DEPLOY_WEBHOOK_URL` secret is not set |" in run.summary
    assert "## ✅ Release 0123456 deployed to Cloud Run" in run.summary
    assert "webhook: not sent" in run.log


def test_webhook_answering_500_is_a_warning_not_a_failure(tmp_path: Path, webhook: Webhook) -> None:
    webhook.status = 500
    run = run_notify(tmp_path, "cloudrun", needs(smoke="success", **CLOUDRUN), webhook.url)

    assert run.returncode == 0, run.log
    assert len(webhook.received) == 1  # it was tried, once
    # The answer quoted the secret path; it comes back redacted.
    detail = "HTTP 500 no_service ***"
    assert f"| Webhook | **failed** ({detail}); the release result above stands |" in run.summary
    assert f"::warning title=Deploy notification::webhook failed: {detail}" in run.log
    run.assert_secret_kept()


def test_refused_connection_is_a_warning_not_a_failure(tmp_path: Path, refused_url: str) -> None:
    failed_needs = needs(result="failure", smoke="failure", rollback="success", **CLOUDRUN)
    run = run_notify(tmp_path, "cloudrun", failed_needs, refused_url)

    assert run.returncode == 0, run.log
    detail = "ConnectionRefusedError: Connection refused"
    assert f"| Webhook | **failed** ({detail}); the release result above stands |" in run.summary
    assert "## ❌ Release 0123456 failed its smoke test on Cloud Run" in run.summary
    assert f"::warning title=Deploy notification::webhook failed: {detail}" in run.log
    run.assert_secret_kept()


def test_a_hanging_webhook_times_out(webhook: Webhook) -> None:
    webhook.hang = True
    start = time.monotonic()
    delivery = deploy_notify.post_webhook(webhook.url, {"text": "x"}, timeout_s=0.5)
    assert time.monotonic() - start < 5
    assert delivery == deploy_notify.Delivery(True, False, "timed out after 0.5 s")
    assert len(webhook.received) == 1


@pytest.mark.parametrize(
    "url", [f"file:///services/{SECRET}", f"ftp://example.com/{SECRET}", f"not a url {SECRET}"]
)
def test_a_url_that_is_not_http_is_refused_without_quoting_it(url: str) -> None:
    delivery = deploy_notify.post_webhook(url, {"text": "x"}, timeout_s=1)
    assert not delivery.sent
    assert delivery.configured
    assert SECRET.split("/")[0] not in delivery.detail


def test_text_from_outputs_cannot_mention_a_channel_or_break_the_table() -> None:
    fact = deploy_notify.Fact("Smoke test", "a|b <!channel> & <@U123>", code="x`y")
    report = deploy_notify.Report("failure", "boom <!here>", [fact])
    payload = deploy_notify.slack_payload(report, "acme/mnist")
    text = str(payload["text"])
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "*Smoke test:* a|b &lt;!channel&gt; &amp; &lt;@U123&gt; `x'y`" in text.splitlines()
    markdown = deploy_notify.summary_markdown(report, deploy_notify.Delivery(False, False, ""))
    assert "| Smoke test | a\\|b <!channel> & <@U123> `x'y` |" in markdown.splitlines()


def test_summary_goes_to_the_log_when_there_is_no_summary_file(
    tmp_path: Path, webhook: Webhook
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DEPLOY_TARGET": "cloudrun",
        "NEEDS_JSON": json.dumps(needs(smoke="success", **CLOUDRUN)),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "| Revision | `mnist-inference-00042-xyz` |" in done.stdout.splitlines()
    assert "| Commit | `unknown` |" in done.stdout.splitlines()


@pytest.mark.parametrize("needs_json", ["", "[1, 2]", "{not json"])
def test_unreadable_needs_is_a_workflow_bug_and_fails(tmp_path: Path, needs_json: str) -> None:
    run = run_notify(tmp_path, "cloudrun", needs_json, None)
    assert run.returncode == 2
    assert "::error::deploy_notify: NEEDS_JSON must be toJSON(needs)" in run.log
    assert run.summary == PREVIOUS_SUMMARY


# ---------------------------------------------------------------- the workflow's side


def test_script_needs_only_the_standard_library() -> None:
    # The notify job runs it with the runner's python3 and installs nothing.
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    top = {name.split(".")[0] for name in imported} - {"__future__"}
    assert top <= sys.stdlib_module_names, top - sys.stdlib_module_names


def test_release_workflow_feeds_the_script_what_it_reads() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    notify = jobs["notify"]
    # Runs after every other job, whatever happened to them (a new job must be added here).
    assert set(notify["needs"]) == set(jobs) - {"notify"}
    assert notify["if"] == "${{ always() }}"
    (step,) = [s for s in notify["steps"] if "scripts/deploy_notify.py" in s.get("run", "")]
    assert step["run"].split() == ["python3", "scripts/deploy_notify.py"]
    assert step["env"]["NEEDS_JSON"] == "${{ toJSON(needs) }}"
    assert step["env"]["DEPLOY_WEBHOOK_URL"] == "${{ secrets.DEPLOY_WEBHOOK_URL }}"
    assert step["env"]["DEPLOY_TARGET"] == "${{ vars.DEPLOY_TARGET }}"

    delivering: dict[str, tuple[str, ...]] = {
        job: deploy_notify.DEPLOY_OUTPUTS for job, _ in deploy_notify.TARGETS.values()
    }
    delivering[deploy_notify.GHCR[0]] = deploy_notify.GHCR_OUTPUTS
    for name, wanted in delivering.items():
        outputs = jobs[name]["outputs"]
        assert set(wanted) <= set(outputs), name
        step_ids = {s["id"] for s in jobs[name]["steps"] if "id" in s}
        for expression in outputs.values():
            assert set(re.findall(r"steps\.([\w-]+)\.", expression)) <= step_ids, expression
    for target, (name, _) in deploy_notify.TARGETS.items():
        assert f"vars.DEPLOY_TARGET == '{target}'" in jobs[name]["if"]
