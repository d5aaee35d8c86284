"""The rollout's service-wide settings, ``SERVING_ROLLOUT_*``: the policy of a model without a
``rollout.toml``, and where the workers share the rollout's state.

Standalone for now; each field is written as it will appear in ``serving/settings.py`` (one
Field per knob, a one-line description), to be moved under a ``# ---- rollout`` heading there.
A ``rollout.toml`` key overrides the setting of the same name (``policy.PolicySource``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.rollout.policy import Mode, Policy


class RolloutSettings(BaseSettings):
    """Environment variable = ``SERVING_<FIELD NAME IN UPPER CASE>``, as in ``Settings``."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", frozen=True)

    rollout_mode: Mode = Field(
        default="replace",
        description="What a newly published version does when its model has no rollout.toml: "
        "replace the served one at once, or become a shadow or canary candidate beside it.",
    )
    rollout_canary_share: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of requests a canary candidate answers at first (rollout.toml: "
        "canary_share).",
    )
    rollout_shadow_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of requests a shadow candidate also computes; clients get stable's "
        "answer (rollout.toml: shadow_share).",
    )
    rollout_min_samples: int = Field(
        default=1000,
        ge=30,
        description="Fewest predictions compared between candidate and stable before a promotion, "
        "per canary step (rollout.toml: min_samples).",
    )
    rollout_evaluation_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often one worker judges the rollout's evidence, merged from all "
        "workers (rollout.toml: evaluation_interval_s).",
    )
    rollout_client_header: str = Field(
        default="x-client-id",
        description="Request header naming the client: a canary keeps each client on one "
        "version (hashed); a request without it is routed at random.",
    )
    rollout_store: Path | None = Field(
        default=None,
        description="SQLite file the workers share for rollout state and evidence; on a "
        "persistent volume a restart resumes a rollout. Unset: a temporary file per start.",
    )
    rollout_resume_window_s: float = Field(
        default=300.0,
        gt=0,
        description="At start-up, a rollout whose state is older than this reverts to stable "
        "and starts over instead of resuming.",
    )

    def default_policy(self) -> Policy:
        """The policy of a model without ``rollout.toml``, and the base a file overrides."""
        return Policy(
            mode=self.rollout_mode,
            canary_share=self.rollout_canary_share,
            shadow_share=self.rollout_shadow_share,
            min_samples=self.rollout_min_samples,
            evaluation_interval_s=self.rollout_evaluation_interval_s,
        )
