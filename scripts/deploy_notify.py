#!/usr/bin/env python3
"""Report how a release went: a GitHub job summary, and a Slack-compatible webhook if configured.

The `notify` job of .github/workflows/release.yml runs this with the runner's python3 after every
other job, whatever their results. Standard library only, so nothing is installed first.

Input, all from the environment (the workflow passes secrets and outputs through `env:`):
  NEEDS_JSON           `toJSON(needs)`: each release job's `result` and `outputs`
  DEPLOY_TARGET        cloudrun | ecs | anything else: the image only went to GHCR
  DEPLOY_WEBHOOK_URL   optional secret: an incoming-webhook URL (Slack, or anything that takes
                       Slack's `{"text": ...}`). Empty or unset: nothing is sent. Never printed.
  GITHUB_STEP_SUMMARY  file the markdown summary is appended to (printed instead when unset)
  GITHUB_SERVER_URL, GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_SHA: set by the runner

Exit status 0 whatever the webhook does: the release's own jobs carry its result, and a chat
outage must not turn a good deploy red. A failed webhook is a warning in the log and a line in
the summary. Exit status 2 only when NEEDS_JSON is missing or unreadable (a workflow bug).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

BUILD_JOB = "build-and-gate"
# DEPLOY_TARGET -> (the job that delivers the image, how people call the target).
TARGETS = {
    "cloudrun": ("deploy-cloudrun", "Cloud Run"),
    "ecs": ("deploy-ecs", "ECS"),
}
GHCR = ("publish-ghcr", "GHCR")
# The outputs read from the delivering job; the workflow's jobs must define them (a test checks).
DEPLOY_OUTPUTS = ("image", "digest", "revision", "previous", "smoke", "rollback", "url")
GHCR_OUTPUTS = ("image", "digest")
WEBHOOK_TIMEOUT_S = 10.0

ICONS = {"success": "✅", "failure": "❌", "cancelled": "⚪"}
# A step's `outcome` in words. Anything else (the ECS smoke step's own "not run: ...") is shown
# as it is.
SMOKE_WORDS = {
    "success": "passed",
    "failure": "FAILED",
    "skipped": "not run (an earlier step failed)",
    "cancelled": "cancelled",
    "": "not run",
}


@dataclass(frozen=True)
class Job:
    result: str
    outputs: Mapping[str, str]

    def out(self, name: str) -> str:
        return self.outputs.get(name, "").strip()


@dataclass(frozen=True)
class Fact:
    """One row of the report: plain `text`, then `code` (an identifier, shown as code)."""

    label: str
    text: str = ""
    code: str = ""


@dataclass(frozen=True)
class Report:
    status: str  # success | failure | cancelled
    headline: str
    facts: list[Fact] = field(default_factory=list)
    run_url: str = ""
    jobs: str = ""  # every job's result, for the summary (too noisy for chat)


@dataclass(frozen=True)
class Delivery:
    """What happened to the webhook: `sent` is False both when not configured and on failure."""

    configured: bool
    sent: bool
    detail: str


def load_needs(text: str) -> dict[str, Job]:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("NEEDS_JSON is not a JSON object")
    jobs = {}
    for name, job in raw.items():
        outputs = job.get("outputs") or {}
        jobs[str(name)] = Job(
            result=str(job.get("result", "")),
            outputs={str(k): str(v) for k, v in outputs.items()},
        )
    return jobs


def build_report(env: Mapping[str, str], needs: Mapping[str, Job]) -> Report:
    job_name, where = TARGETS.get(env.get("DEPLOY_TARGET", ""), GHCR)
    is_deploy = job_name != GHCR[0]
    noun = "task definition" if job_name == "deploy-ecs" else "revision"
    sha = env.get("GITHUB_SHA", "")
    short = sha[:7] or "(unknown commit)"
    build = needs.get(BUILD_JOB, Job("", {}))
    job = needs.get(job_name, Job("", {}))

    facts = [Fact("Target", where if is_deploy else "GHCR only (DEPLOY_TARGET is not set)")]
    facts.append(Fact("Commit", code=sha or "unknown"))
    if job.out("image"):
        facts.append(Fact("Image", code=job.out("image")))
    if job.out("digest") and job.out("digest") not in job.out("image"):
        # The job output `image` is dropped by the runner if it holds a masked value (an
        # account id, say); the bare digest still identifies what was deployed.
        facts.append(Fact("Digest", code=job.out("digest")))
    if is_deploy and build.result == "success":
        revision, previous = job.out("revision"), job.out("previous")
        label = noun.capitalize()
        facts.append(Fact(label, code=revision) if revision else Fact(label, "none"))
        if previous:
            facts.append(Fact(f"Previous {noun}", code=previous))
        if job.out("url"):
            facts.append(Fact("Service", job.out("url")))
        smoke = job.out("smoke")
        facts.append(Fact("Smoke test", SMOKE_WORDS.get(smoke, smoke)))
    server, repo = env.get("GITHUB_SERVER_URL", ""), env.get("GITHUB_REPOSITORY", "")
    run_id = env.get("GITHUB_RUN_ID", "")
    run_url = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else ""
    jobs = ", ".join(f"{name} {j.result}" for name, j in needs.items())

    def report(status: str, headline: str) -> Report:
        return Report(status, headline, facts, run_url, jobs)

    if build.result != "success":
        status = "cancelled" if build.result == "cancelled" else "failure"
        verb = "was cancelled" if status == "cancelled" else "failed"
        headline = f"Release {short} {verb} in {BUILD_JOB} (train, build, p95 gate): "
        headline += "nothing was pushed or deployed"
        return report(status, headline)

    if job.result == "success":
        done = f"deployed to {where}" if is_deploy else "pushed to GHCR"
        if is_deploy:
            facts.append(Fact("Rollback", "not needed"))
        return report("success", f"Release {short} {done}")

    if job.result == "cancelled":
        status, what = "cancelled", f"Release {short} was cancelled while going to {where}"
    elif job.result == "failure":
        status = "failure"
        how = "failed its smoke test" if job.out("smoke") == "failure" else "failed"
        what = f"Release {short} {how} on {where}"
    else:
        # The delivering job did not run although the build passed: its `if:` and DEPLOY_TARGET
        # disagree. Worth a loud message rather than a green one; there is nothing to roll back.
        what = f"Release {short}: {job_name} did not run ({job.result or 'no result'})"
        return report("failure", what)
    if not is_deploy:
        return report(status, what)

    rollback, previous = job.out("rollback"), job.out("previous")
    if rollback == "success":
        facts.append(Fact("Rollback", "rolled back to", previous))
        what += f"; rolled back to {previous}"
    elif rollback in ("failure", "cancelled"):
        # The service may be on the new image, the old one, or half-way: a human has to look.
        word = "FAILED" if rollback == "failure" else "was cancelled"
        facts.append(Fact("Rollback", f"{word}, check the service; it was going back to", previous))
        what += f"; the rollback to {previous} {word}: check the service"
    elif previous:
        facts.append(Fact("Rollback", f"not run; the {noun} before this release was", previous))
        what += "; no rollback ran"
    else:
        facts.append(Fact("Rollback", f"none: no previous {noun} (first deploy?)"))
        what += f"; no previous {noun} to roll back to"
    return report(status, what)


# ---------------------------------------------------------------- rendering


def _md(value: str) -> str:
    # One table cell: no line breaks, and a `|` must not end the cell.
    return " ".join(value.split()).replace("|", "\\|")


def _md_fact(fact: Fact) -> str:
    parts = [_md(fact.text)] if fact.text else []
    if fact.code:
        code = _md(fact.code).replace("`", "'")  # a backtick would end the code span
        parts.append(f"`{code}`")
    return " ".join(parts)


def summary_markdown(report: Report, delivery: Delivery) -> str:
    lines = [f"## {ICONS[report.status]} {_md(report.headline)}", ""]
    lines += ["| | |", "| --- | --- |"]
    lines += [f"| {fact.label} | {_md_fact(fact)} |" for fact in report.facts]
    if report.jobs:
        lines.append(f"| Jobs | {_md(report.jobs)} |")
    if not delivery.configured:
        webhook = "not sent: the `DEPLOY_WEBHOOK_URL` secret is not set"
    elif delivery.sent:
        webhook = f"sent ({_md(delivery.detail)})"
    else:
        webhook = f"**failed** ({_md(delivery.detail)}); the release result above stands"
    lines.append(f"| Webhook | {webhook} |")
    if report.run_url:
        lines += ["", f"[Workflow run]({report.run_url})"]
    return "\n".join(lines) + "\n"


def _slack(value: str) -> str:
    # Slack mrkdwn gives &, < and > meaning (links, mentions); everything else is literal.
    text = " ".join(value.split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_fact(fact: Fact) -> str:
    parts = [_slack(fact.text)] if fact.text else []
    if fact.code:
        code = _slack(fact.code).replace("`", "'")
        parts.append(f"`{code}`")
    return f"*{_slack(fact.label)}:* " + " ".join(parts)


def slack_payload(report: Report, repository: str) -> dict[str, object]:
    """`text` alone is a complete message (and the fallback Slack shows in notifications)."""
    where = f"{repository}: " if repository else ""
    title = f"{ICONS[report.status]} {where}{report.headline}"
    body = "\n".join(_slack_fact(fact) for fact in report.facts)
    link = f"<{report.run_url}|Workflow run>" if report.run_url else ""
    text = "\n".join(part for part in (_slack(title), body, link) if part)
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack(title)}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
    ]
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return {"text": text, "blocks": blocks}


# ---------------------------------------------------------------- delivery


def _redact(text: str, url: str) -> str:
    """Whatever an error says, the URL (whose path is the secret for Slack) does not get out."""
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.path + ("?" + parts.query if parts.query else ""), parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def post_webhook(url: str, payload: Mapping[str, object], timeout_s: float) -> Delivery:
    """POST `payload` as JSON. Never raises: every failure comes back as a Delivery."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return Delivery(True, False, "the URL is not http(s)")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "mnist-release-notify"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Delivery(True, True, f"HTTP {response.status}")
    except urllib.error.HTTPError as error:
        # Slack answers errors with a short reason in the body (no_service, invalid_payload...).
        try:
            body = error.read(200).decode("utf-8", "replace")
        except OSError:
            body = ""
        return Delivery(True, False, _redact(f"HTTP {error.code} {body}".strip(), url))
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return Delivery(True, False, f"timed out after {timeout_s:g} s")
        detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        return Delivery(True, False, _redact(f"{type(reason).__name__}: {detail}", url))
    except TimeoutError:
        return Delivery(True, False, f"timed out after {timeout_s:g} s")
    except Exception as error:
        # Anything else (a malformed URL, a reset while reading) is still only a failed
        # notification; its message may quote the URL, so it is redacted like the rest.
        return Delivery(True, False, _redact(f"{type(error).__name__}: {error}", url))


def _warn(message: str) -> None:
    # A workflow command: `%` and line breaks in its data must be escaped, or text from the
    # webhook's answer could end the annotation early.
    data = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    print(f"::warning title=Deploy notification::{data}")


def main(env: Mapping[str, str]) -> int:
    try:
        needs = load_needs(env["NEEDS_JSON"])
    except (KeyError, ValueError, AttributeError) as error:
        print(f"::error::deploy_notify: NEEDS_JSON must be toJSON(needs): {error!r}")
        return 2
    report = build_report(env, needs)
    print(f"release {report.status}: {report.headline}")

    url = env.get("DEPLOY_WEBHOOK_URL", "").strip()
    if url:
        payload = slack_payload(report, env.get("GITHUB_REPOSITORY", ""))
        delivery = post_webhook(url, payload, WEBHOOK_TIMEOUT_S)
        if delivery.sent:
            print(f"webhook: sent ({delivery.detail})")
        else:
            _warn(f"webhook failed: {delivery.detail}")
    else:
        delivery = Delivery(False, False, "not configured")
        print("webhook: not sent, the DEPLOY_WEBHOOK_URL secret is not set")

    markdown = summary_markdown(report, delivery)
    summary = env.get("GITHUB_STEP_SUMMARY", "")
    if not summary:
        print(markdown, end="")
        return 0
    try:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(markdown)
    except OSError as error:
        _warn(f"job summary not written: {error}")
        print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
