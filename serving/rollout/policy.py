"""The rollout policy: ``rollout.toml`` beside a model's version folders, and its defaults.

    models/mnist/1/  models/mnist/2/  models/mnist/rollout.toml

The file travels with the model, and is re-read on every version poll like the versions are.
Every key is optional; a key left out takes the default from the settings
(``SERVING_ROLLOUT_*`` in ``serving/settings.py``), and those take the defaults below::

    mode = "shadow"            # replace | shadow | canary
    canary_share = 0.05        # canary: share of requests the candidate answers at first
    canary_steps = [0.25, 1.0] # canary: later shares, each after its own min_samples
    min_samples = 1000         # fewest compared predictions before a promotion (per step)

    [rules.agreement]
    min_agreement = 0.95

A file is taken whole or not at all: a syntax error, an unknown key (a typo would otherwise be
ignored silently), a value out of range or contradicting another one refuses the file, and the
policy in force before stays in force. :class:`PolicySource` says so in its return value, once
per content, so that the caller can log and count it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from serving.rollout.stats import z_for

POLICY_FILE = "rollout.toml"

Mode = Literal["replace", "shadow", "canary"]
MODES: tuple[Mode, ...] = ("replace", "shadow", "canary")
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
#: Below 30 samples the normal approximations behind the rules are not trusted.
Samples = Annotated[int, msgspec.Meta(ge=30)]


class _Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A TOML table: immutable, and an unknown key is an error rather than ignored."""


class AgreementRule(_Table, frozen=True):
    """Share of compared rows where the candidate's top-1 class equals stable's.

    0.95: two MNIST models of ~98 % accuracy (a retrain, or a CNN behind the MLP) disagree on
    1-3 % of rows, and an int8 twin on well under 1 %; two swapped classes disagree on ~20 %,
    a constant model on ~90 %. At 1,000 rows a true agreement of 0.93 is caught with 80 %
    power. Agreement is a guard against a broken model, not a measure of quality: a candidate
    meant to change many answers needs a lower floor (0 disables it in effect).
    """

    enabled: bool = True
    min_agreement: Share = 0.95
    #: Compared rows before a pass; unset: the policy's ``min_samples``.
    min_samples: Samples | None = None


class AccuracyRule(_Table, frozen=True):
    """Live accuracy of each version from ``/v1/feedback`` labels.

    ``detectable_drop`` 0.01: the drop the test is sized to catch with the policy's power
    (80 %) at its level (5 % false alarms). The labels needed follow from it (``min_labels``
    unset): ~3,000 per version when canary and stable answer different requests, ~1,200 when
    each label scores both versions (shadow: the pair design needs only the rows they answer
    differently). Labels are optional for clients, so by default a promotion does not wait
    for them (``required = false``); a candidate is still rolled back as soon as its labels
    show it clearly worse.
    """

    enabled: bool = True
    detectable_drop: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.01
    #: Labels before a pass; unset: the number the power calculation asks for.
    min_labels: Samples | None = None
    required: bool = False


class ConfidenceRule(_Table, frozen=True):
    """Mean top-1 confidence of the candidate against stable's, on the same traffic.

    0.05: a retrain or an int8 twin moves it by well under 0.01; a CNN behind the MLP by ~0.02;
    a broken or uncalibrated model by more. Either direction counts: an over-confident model
    changes what clients do with the confidence as much as an under-confident one.
    """

    enabled: bool = True
    max_shift: Share = 0.05
    min_samples: Samples | None = None


class DistributionRule(_Table, frozen=True):
    """Jensen-Shannon distance (base 2) of the predicted-class distributions.

    0.1: the distance the drift gauges call "look at it". Between two samples of 1,000 rows of
    the same distribution over 10 classes the distance is ~0.06 on average and ~0.09 at the
    99th percentile, so 0.1 at 1,000 rows is just above noise; the rule also needs a G-test
    to find the difference significant. A constant model is at ~0.8; two swapped classes of
    similar frequency barely move it (the agreement rule catches those).
    """

    enabled: bool = True
    max_js: Share = 0.1
    min_samples: Samples | None = None


class ErrorRule(_Table, frozen=True):
    """Rows whose batch failed: the candidate's error rate minus stable's.

    0.001 (0.1 point): normally neither version fails at all; a candidate that fails five rows
    in 1,000 more than stable is rolled back. In canary mode each of those is a failed client
    request.
    """

    enabled: bool = True
    max_increase: Share = 0.001
    min_samples: Samples | None = None


class LatencyRule(_Table, frozen=True):
    """p95 batch compute time of the candidate over stable's.

    2.0: a candidate may cost up to twice stable's compute at p95. Compute is a fraction of a
    request's time (1 ms deadlines in the default batcher are mostly queueing), so this guards
    against a far slower model, not a slightly slower one; shadowing a CNN behind the MLP
    needs a higher ratio here. Batches, not rows, are the independent samples: 100 batches
    put 5 beyond the p95, and bound it between about the 91st and the 99th percentile. Under
    load a batch holds many rows, so this can take longer than ``min_samples`` rows.
    """

    enabled: bool = True
    max_p95_ratio: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    min_batches: Samples = 100


class Rules(_Table, frozen=True):
    agreement: AgreementRule = msgspec.field(default_factory=AgreementRule)
    accuracy: AccuracyRule = msgspec.field(default_factory=AccuracyRule)
    confidence: ConfidenceRule = msgspec.field(default_factory=ConfidenceRule)
    distribution: DistributionRule = msgspec.field(default_factory=DistributionRule)
    errors: ErrorRule = msgspec.field(default_factory=ErrorRule)
    latency: LatencyRule = msgspec.field(default_factory=LatencyRule)


class Policy(_Table, frozen=True):
    """How a model's new versions are rolled out; the defaults are the reasoned ones.

    - ``mode`` ``replace``: today's behaviour (a new version replaces the served one once
      loaded), so that ``make run`` and the tutorial stay simple.
    - ``canary_share`` 0.05: one request in twenty risks a bad answer while evidence builds.
    - ``canary_steps`` empty: promote after the first step; e.g. ``[0.25, 1.0]`` widens the
      canary twice, each step after its own ``min_samples``.
    - ``shadow_share`` 1.0: shadowing costs the candidate's compute only, and every shadowed
      row is evidence.
    - ``min_samples`` 1,000: enough rows for every per-prediction rule to catch its default
      harm with ~80 % power (see each rule), and at 1,000 requests per second one second.
    - ``evaluation_interval_s`` 5: one worker judges the merged evidence this often.
    - ``confidence_level`` 0.95 and ``power`` 0.8: each rule's one-sided test at its planned
      sample size, and the power its sample size is sized for.
    - ``early_stop_z`` 3.0: before a rule's sample size, it rolls back only on evidence this
      strong (p < 0.0013, the Haybittle-Peto boundary): a broken model is stopped after tens
      of rows, and the looks before the planned one barely add false alarms.
    - ``stable``: the version that is stable when nothing is known yet (a fresh state file);
      unset: the newest but one when a rollout mode is set, so that a version never becomes
      stable without a verdict.
    """

    mode: Mode = "replace"
    canary_share: Share = 0.05
    canary_steps: tuple[Share, ...] = ()
    shadow_share: Share = 1.0
    min_samples: Samples = 1000
    evaluation_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    confidence_level: Annotated[float, msgspec.Meta(ge=0.5, lt=1)] = 0.95
    power: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.8
    early_stop_z: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    stable: Annotated[int, msgspec.Meta(ge=1)] | None = None
    rules: Rules = msgspec.field(default_factory=Rules)

    @property
    def shares(self) -> tuple[float, ...]:
        """The canary's shares, step by step."""
        return (self.canary_share, *self.canary_steps)


class PolicyError(ValueError):
    """A policy file that is refused as a whole; the message says where and why."""


def problems(policy: Policy) -> list[str]:
    """What contradicts itself in an otherwise well-typed policy (empty: nothing)."""
    found = []
    if policy.mode == "canary" and policy.canary_share == 0:
        found.append("canary_share is 0: the candidate would get no request and never be judged")
    if policy.mode == "shadow" and policy.shadow_share == 0:
        found.append("shadow_share is 0: the candidate would compute nothing and never be judged")
    previous = policy.canary_share
    for step in policy.canary_steps:
        if step <= previous:
            found.append(
                f"canary_steps must each be above the share before (canary_share "
                f"{policy.canary_share}, then {list(policy.canary_steps)})"
            )
            break
        previous = step
    nominal = z_for(policy.confidence_level)
    if policy.early_stop_z < nominal:
        found.append(
            f"early_stop_z {policy.early_stop_z} is below the z of confidence_level "
            f"({nominal:.3f}): a decision before the planned sample size must be the stricter one"
        )
    return found


def parse_policy(text: str, defaults: Policy) -> Policy:
    """The policy a ``rollout.toml`` text gives over ``defaults``; raises :class:`PolicyError`."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from None
    merged = _merge(msgspec.to_builtins(defaults), table)
    try:
        policy = msgspec.convert(merged, Policy)
    except msgspec.ValidationError as exc:
        raise PolicyError(str(exc)) from None
    found = problems(policy)
    if found:
        raise PolicyError("; ".join(found))
    return policy


def _merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``, table by table (arrays and values are replaced whole)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


PolicyStatus = Literal["absent", "loaded", "refused"]


@dataclass(frozen=True, slots=True)
class PolicyLoad:
    """The result of one read of ``rollout.toml``.

    ``policy`` is the policy in force after the read. ``status``: ``absent`` (no file: the
    defaults), ``loaded`` (the file's policy) or ``refused`` (the file is bad: ``error`` says
    why, and ``policy`` is the one in force before). ``changed`` is true when the policy in
    force changed, or when a refusal is of content not refused before: log and count those.
    """

    policy: Policy
    status: PolicyStatus
    changed: bool
    path: Path
    error: str | None = None


class PolicySource:
    """Re-reads one model's ``rollout.toml``; a bad file keeps the previous policy."""

    def __init__(self, model_dir: Path, defaults: Policy) -> None:
        self.path = model_dir / POLICY_FILE
        self.defaults = defaults
        self.policy = defaults
        self._content: bytes | None = None  # what the last read saw (None: no file)
        self._status: PolicyStatus = "absent"
        self._error: str | None = None

    def read(self) -> PolicyLoad:
        try:
            content: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            content = None
        except OSError as exc:  # unreadable: like a bad file, the previous policy stays
            # The error text stands in for the content, so the same failure is reported once.
            return self._refuse(f"\0{exc}".encode(), f"cannot read: {exc}")
        if content == self._content and (content is not None or self._status == "absent"):
            return PolicyLoad(self.policy, self._status, False, self.path, self._error)
        if content is None:
            changed = self.policy != self.defaults
            self._content, self._status, self._error = None, "absent", None
            self.policy = self.defaults
            return PolicyLoad(self.policy, "absent", changed, self.path)
        try:
            policy = parse_policy(content.decode("utf-8"), self.defaults)
        except (PolicyError, UnicodeDecodeError) as exc:
            return self._refuse(content, str(exc))
        changed = policy != self.policy
        self._content, self._status, self._error = content, "loaded", None
        self.policy = policy
        return PolicyLoad(policy, "loaded", changed, self.path)

    def _refuse(self, content: bytes, reason: str) -> PolicyLoad:
        new = content != self._content or self._status != "refused"
        error = f"{self.path}: {reason}; the policy in force before stays"
        self._content, self._status, self._error = content, "refused", error
        return PolicyLoad(self.policy, "refused", new, self.path, error)
