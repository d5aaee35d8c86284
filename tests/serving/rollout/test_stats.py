"""The rules' statistics against SciPy, and the sample sizes against simulation: the sizes in
the docs must deliver the power and the false-alarm rate they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats  # type: ignore[import-untyped]

from serving.rollout.evidence import LATENCY_EDGES
from serving.rollout.stats import (
    chi2_sf,
    g_test,
    histogram_quantile,
    labels_paired,
    labels_unpaired,
    mcnemar_z,
    newcombe,
    two_proportion_z,
    wilson,
    z_for,
)

Z95, Z80 = z_for(0.95), z_for(0.80)


@pytest.mark.parametrize(
    ("x", "df"), [(0.5, 1), (3.0, 2), (21.7, 9), (100.0, 9), (5.0, 30), (1e-3, 3), (400.0, 99)]
)
def test_chi2_tail_matches_scipy(x: float, df: int) -> None:
    assert chi2_sf(x, df) == pytest.approx(scipy_stats.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_g_test_matches_scipy_log_likelihood_ratio() -> None:
    a = [120, 80, 0, 40, 10]
    b = [100, 95, 0, 30, 25]
    statistic, df, p = g_test(a, b)
    expected = scipy_stats.chi2_contingency(
        np.array([[120, 80, 40, 10], [100, 95, 30, 25]]), lambda_="log-likelihood", correction=False
    )
    assert statistic == pytest.approx(expected.statistic)
    assert df == expected.dof == 3  # the class neither side saw is dropped
    assert p == pytest.approx(expected.pvalue)


@pytest.mark.parametrize(("successes", "n"), [(95, 100), (3, 40), (999, 1000)])
def test_wilson_matches_scipy_and_stays_in_range(successes: int, n: int) -> None:
    # One-sided bounds at 95 % each are the two ends of a two-sided 90 % interval.
    expected = scipy_stats.binomtest(successes, n).proportion_ci(0.90, method="wilson")
    assert wilson(successes, n, Z95) == pytest.approx((expected.low, expected.high))


def test_wilson_at_the_edges() -> None:
    assert wilson(0, 50, Z95)[0] == 0.0
    assert wilson(50, 50, Z95)[1] == 1.0
    assert wilson(0, 0, Z95) == (0.0, 1.0)


def test_newcombe_bounds_contain_the_difference_and_handle_zero_counts() -> None:
    low, high = newcombe(5, 1000, 0, 1000, Z95)
    assert low < 0.005 < high
    assert low > 0  # five errors against none in a thousand is an increase, one-sided at 95 %
    low, high = newcombe(1, 1000, 0, 1000, Z95)
    assert low < 0 < high


def test_the_z_statistics_point_the_right_way() -> None:
    assert two_proportion_z(90, 100, 80, 100) > 0
    assert two_proportion_z(0, 0, 80, 100) == 0.0
    assert mcnemar_z(10, 30) == pytest.approx(-20 / math.sqrt(40))
    assert mcnemar_z(0, 0) == 0.0


def test_quantile_bounds_cover_the_true_p95_about_as_often_as_promised() -> None:
    """Lognormal compute times, histogrammed into the latency bins: each one-sided bound is
    at 95 %, so both hold together in at least ~90 % of samples."""
    rng = np.random.default_rng(7)
    true_p95 = math.exp(math.log(2e-4) + 0.5 * scipy_stats.norm.ppf(0.95))
    covered = 0
    trials = 400
    for _ in range(trials):
        samples = rng.lognormal(math.log(2e-4), 0.5, size=150)
        counts, _ = np.histogram(samples, bins=np.asarray(LATENCY_EDGES))
        bounds = histogram_quantile(counts, LATENCY_EDGES, 0.95, Z95)
        assert bounds is not None
        low, point, high = bounds
        assert low <= point <= high
        covered += low <= true_p95 <= high
    assert covered / trials >= 0.88


def test_unpaired_label_count_is_the_documented_one() -> None:
    assert labels_unpaired(0.98, 0.01, Z95, Z80) == 3013


def test_paired_label_count_is_the_documented_one() -> None:
    assert labels_paired(0.02, 0.01, Z95, Z80) == 1235
    assert labels_paired(0.001, 0.01, Z95, Z80) == labels_paired(0.01, 0.01, Z95, Z80)


def test_the_unpaired_size_gives_its_power_and_its_false_alarm_rate() -> None:
    rng = np.random.default_rng(1)
    n = labels_unpaired(0.98, 0.01, Z95, Z80)
    trials = 4000
    stable = rng.binomial(n, 0.98, size=trials)
    worse = rng.binomial(n, 0.97, size=trials)
    same = rng.binomial(n, 0.98, size=trials)
    caught = np.mean(
        [two_proportion_z(c, n, s, n) < -Z95 for c, s in zip(worse, stable, strict=True)]
    )
    alarms = np.mean(
        [two_proportion_z(c, n, s, n) < -Z95 for c, s in zip(same, stable, strict=True)]
    )
    assert caught == pytest.approx(0.80, abs=0.03)
    assert alarms == pytest.approx(0.05, abs=0.015)


def test_the_paired_size_gives_its_power() -> None:
    """Versions that disagree on 2 % of the rows, the candidate right on 0.5 % of them and
    stable on 1.5 %: a 1-point drop."""
    rng = np.random.default_rng(2)
    n = labels_paired(0.02, 0.01, Z95, Z80)
    draws = rng.multinomial(n, [0.015, 0.005, 0.98], size=4000)
    caught = np.mean([mcnemar_z(int(c), int(s)) < -Z95 for s, c, _ in draws])
    assert caught == pytest.approx(0.80, abs=0.03)
