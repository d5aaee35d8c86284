"""rollout.toml: a good file, the defaults, a bad file refused as a whole, re-reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.rollout.policy import (
    POLICY_FILE,
    Policy,
    PolicyError,
    PolicySource,
    parse_policy,
)
from serving.rollout_service import default_policy
from serving.settings import Settings

GOOD = """
mode = "canary"
canary_share = 0.05
canary_steps = [0.25, 1.0]
min_samples = 500

[rules.agreement]
min_agreement = 0.9

[rules.accuracy]
required = true
"""


def test_a_good_file_overrides_only_what_it_names() -> None:
    policy = parse_policy(GOOD, Policy())
    assert policy.mode == "canary"
    assert policy.shares == (0.05, 0.25, 1.0)
    assert policy.min_samples == 500
    assert policy.rules.agreement.min_agreement == 0.9
    assert policy.rules.accuracy.required is True
    # Everything else keeps its default, including the other keys of a table it touched.
    assert policy.rules.accuracy.detectable_drop == Policy().rules.accuracy.detectable_drop
    assert policy.rules.latency == Policy().rules.latency
    assert policy.evaluation_interval_s == Policy().evaluation_interval_s


def test_an_empty_file_is_the_defaults_and_the_defaults_are_today_s_behaviour() -> None:
    assert parse_policy("", Policy()) == Policy()
    assert Policy().mode == "replace"


def test_an_integer_where_a_share_is_expected_is_accepted() -> None:
    assert parse_policy("canary_share = 1", Policy()).canary_share == 1.0


def test_settings_are_the_defaults_a_file_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_ROLLOUT_MODE", "shadow")
    monkeypatch.setenv("SERVING_ROLLOUT_MIN_SAMPLES", "2000")
    defaults = default_policy(Settings())
    assert (defaults.mode, defaults.min_samples) == ("shadow", 2000)
    policy = parse_policy("min_samples = 300", defaults)
    assert (policy.mode, policy.min_samples) == ("shadow", 300)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('mode = "blue-green"', "Invalid enum value 'blue-green' - at `$.mode`"),
        ("canary_share = 1.5", "<= 1.0 - at `$.canary_share`"),
        ("canary_shares = 0.1", "unknown field `canary_shares`"),
        ("[rules.agreement]\nmin_agreemnt = 0.9", "unknown field `min_agreemnt`"),
        ("[rules.speed]\nmax = 1", "unknown field `speed`"),
        ('min_samples = "many"', "Expected `int`, got `str` - at `$.min_samples`"),
        ("min_samples = 10", ">= 30 - at `$.min_samples`"),
        ("mode = ", "not valid TOML"),
        ("canary_share = 0.25\ncanary_steps = [0.1, 1.0]", "canary_steps must each be above"),
        ('mode = "canary"\ncanary_share = 0', "canary_share is 0"),
        ("early_stop_z = 1.0", "early_stop_z 1.0 is below"),
    ],
)
def test_a_bad_file_is_refused_with_where_and_why(text: str, says: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, Policy())
    assert says in str(error.value)


def test_a_refused_file_changes_nothing_even_where_its_keys_were_good(tmp_path: Path) -> None:
    """Taken whole or not at all: a good mode beside a bad share does not switch the mode."""
    source = PolicySource(tmp_path, Policy())
    (tmp_path / POLICY_FILE).write_text('mode = "shadow"\nmin_samples = 400\n')
    before = source.read()
    assert (before.status, before.changed, before.policy.mode) == ("loaded", True, "shadow")

    (tmp_path / POLICY_FILE).write_text('mode = "canary"\ncanary_share = 2\n')
    refused = source.read()
    assert refused.status == "refused"
    assert refused.changed is True  # new bad content: log and count it once
    assert refused.policy == before.policy
    assert refused.error is not None
    assert "canary_share" in refused.error
    assert "stays" in refused.error

    again = source.read()  # the same bad file on the next poll: not reported again
    assert (again.status, again.changed, again.policy) == ("refused", False, before.policy)

    (tmp_path / POLICY_FILE).write_text('mode = "canary"\ncanary_share = 0.1\n')
    fixed = source.read()
    assert (fixed.status, fixed.changed, fixed.policy.mode) == ("loaded", True, "canary")
    assert fixed.policy.min_samples == Policy().min_samples  # re-read whole, not patched


def test_re_reading_an_unchanged_file_reports_no_change(tmp_path: Path) -> None:
    source = PolicySource(tmp_path, Policy())
    first = source.read()
    assert (first.status, first.changed, first.policy) == ("absent", False, Policy())
    (tmp_path / POLICY_FILE).write_text('mode = "shadow"\n')
    assert source.read().changed is True
    assert source.read().changed is False


def test_removing_the_file_returns_to_the_defaults(tmp_path: Path) -> None:
    source = PolicySource(tmp_path, Policy(min_samples=700))
    (tmp_path / POLICY_FILE).write_text('mode = "shadow"\n')
    source.read()
    (tmp_path / POLICY_FILE).unlink()
    gone = source.read()
    assert (gone.status, gone.changed, gone.policy) == ("absent", True, Policy(min_samples=700))


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / POLICY_FILE).write_bytes(b'mode = "\xff"\n')
    load = PolicySource(tmp_path, Policy()).read()
    assert load.status == "refused"
    assert load.policy == Policy()


def test_every_rollout_setting_is_documented_in_one_line_and_named_serving_rollout() -> None:
    """The ``SERVING_ROLLOUT_*`` settings are ordinary settings (docs/configuration.md)."""
    fields = {n: f for n, f in Settings.model_fields.items() if n.startswith("rollout_")}
    assert set(fields) >= {"rollout_mode", "rollout_min_samples", "rollout_store"}
    for field in fields.values():
        assert field.description
        assert "\n" not in field.description
    assert default_policy(Settings()) == Policy()  # the settings' defaults agree
