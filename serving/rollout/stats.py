"""The statistics of the rollout rules: intervals, tests, quantile bounds and sample sizes.

Stdlib and NumPy only: the serving image has no SciPy (the tests compare these with SciPy).
Every test here is one-sided, because each rule asks one question ("is the candidate worse?"),
and takes the normal quantile ``z`` rather than a level, so that callers can use the nominal
level at a rule's planned sample size and a stricter one for early stopping (``judge``).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

_NORMAL = NormalDist()


def z_for(level: float) -> float:
    """The one-sided normal quantile of ``level`` (0.95 -> 1.645)."""
    return _NORMAL.inv_cdf(level)


def upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 1.0 - _NORMAL.cdf(z)


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score bounds of a proportion, each one-sided at ``z``; (0, 1) when ``n`` is 0.

    Chosen over the Wald interval because it stays inside [0, 1] and keeps its coverage at
    proportions near 0 or 1 (agreement near 0.99, error rates near 0) and at small ``n``.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At p = 0 or 1 one bound is exactly 0 or 1; rounding would leave it a hair inside.
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def newcombe(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float
) -> tuple[float, float]:
    """Bounds of ``p_a - p_b`` (Newcombe's hybrid score interval from two Wilson intervals).

    Unlike the Wald difference it behaves with zero counts (no errors at all on one side).
    """
    p_a = successes_a / n_a if n_a else 0.0
    p_b = successes_b / n_b if n_b else 0.0
    low_a, high_a = wilson(successes_a, n_a, z)
    low_b, high_b = wilson(successes_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return low, high


def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Pooled z statistic of ``p_a - p_b`` (0 when it is undefined: no data or no variance)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0
    return (successes_a / n_a - successes_b / n_b) / math.sqrt(variance)


def mcnemar_z(a_only: int, b_only: int) -> float:
    """McNemar's z for paired outcomes: positive when A is right more often than B.

    ``a_only``: pairs where only A was right; ``b_only``: only B. The pairs both got right or
    both got wrong carry no information about the difference, which is why a paired design
    needs far fewer labels than two independent samples.
    """
    discordant = a_only + b_only
    return (a_only - b_only) / math.sqrt(discordant) if discordant else 0.0


def mean_difference(
    total: float, squares: float, n: int, other_total: float, other_squares: float, other_n: int
) -> tuple[float, float]:
    """Difference of two means and its Welch standard error, from sums and sums of squares."""
    mean, variance = _mean_variance(total, squares, n)
    other_mean, other_variance = _mean_variance(other_total, other_squares, other_n)
    return mean - other_mean, math.sqrt(variance / n + other_variance / other_n)


def paired_mean(total: float, squares: float, n: int) -> tuple[float, float]:
    """Mean of paired differences and its standard error, from their sum and sum of squares."""
    mean, variance = _mean_variance(total, squares, n)
    return mean, math.sqrt(variance / n)


def _mean_variance(total: float, squares: float, n: int) -> tuple[float, float]:
    mean = total / n
    # Sums of squares lose a little to rounding: a tiny negative variance is 0.
    variance = max(squares - total * total / n, 0.0) / (n - 1) if n > 1 else 0.0
    return mean, variance


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square with ``df`` degrees of freedom (the regularized upper
    incomplete gamma Q(df/2, x/2): series below a + 1, Lentz's continued fraction above)."""
    if df <= 0:
        return 1.0
    if x <= 0:
        return 1.0
    a, y = df / 2.0, x / 2.0
    log_prefix = -y + a * math.log(y) - math.lgamma(a)
    if y < a + 1:
        term = total = 1.0 / a
        shape = a
        for _ in range(1000):
            shape += 1
            term *= y / shape
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_prefix)))
    tiny = 1e-300
    b = y + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, max(0.0, math.exp(log_prefix) * h))


def g_test(counts_a: npt.ArrayLike, counts_b: npt.ArrayLike) -> tuple[float, int, float]:
    """G-test of homogeneity of two count vectors: (G, degrees of freedom, p-value).

    G = 2 * sum(O ln(O / E)) over the 2 x k table, with the classes neither side saw dropped.
    With equal sizes n it equals 4 n times the Jensen-Shannon divergence (in nats) of the two
    distributions: this is the test that says whether an observed JS distance is more than
    sampling noise.
    """
    table = np.vstack([np.asarray(counts_a, np.float64), np.asarray(counts_b, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return 0.0, 0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    observed = table > 0
    g = 2.0 * float(np.sum(table[observed] * np.log(table[observed] / expected[observed])))
    df = table.shape[1] - 1
    return g, df, chi2_sf(g, df)


def histogram_quantile(
    counts: npt.ArrayLike, edges: npt.ArrayLike, q: float, z: float
) -> tuple[float, float, float] | None:
    """(lower bound, estimate, upper bound) of the ``q`` quantile of histogrammed samples.

    Distribution-free: the bounds are order statistics whose ranks are ``n q -/+ z sqrt(n q
    (1 - q))`` (the binomial count of samples below the quantile, normal approximation). A rank
    falls in a bin; the lower bound takes that bin's lower edge and the upper bound its upper
    edge, so the histogram's coarseness only widens the interval. The estimate is the
    geometric middle of the bin holding rank ``ceil(n q)``. None without samples.
    """
    cells = np.asarray(counts, dtype=np.int64)
    bounds = np.asarray(edges, dtype=np.float64)
    n = int(cells.sum())
    if n == 0:
        return None
    cumulative = np.cumsum(cells)
    spread = z * math.sqrt(n * q * (1 - q))
    low_rank = min(max(math.floor(n * q - spread), 1), n)
    high_rank = min(max(math.ceil(n * q + spread), 1), n)
    point_rank = min(max(math.ceil(n * q), 1), n)

    def cell(rank: int) -> int:
        return int(np.searchsorted(cumulative, rank, side="left"))

    low, point, high = cell(low_rank), cell(point_rank), cell(high_rank)
    return (
        float(bounds[low]),
        float(math.sqrt(bounds[point] * bounds[point + 1])),
        float(bounds[high + 1]),
    )


def labels_unpaired(accuracy: float, drop: float, z_alpha: float, z_beta: float) -> int:
    """Labels per version for a one-sided two-proportion test to catch an accuracy ``drop``
    from ``accuracy`` (Fleiss' formula, pooled variance under the null).

    98 % accuracy, a 1-point drop, 5 % false alarms, 80 % power: 3,013 labels per version.
    """
    p1, p2 = accuracy, max(accuracy - drop, 0.0)
    mean = (p1 + p2) / 2
    null_spread = math.sqrt(2 * mean * (1 - mean))
    alternative_spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    needed = (z_alpha * null_spread + z_beta * alternative_spread) ** 2 / drop**2
    return math.ceil(needed)


def labels_paired(discordance: float, drop: float, z_alpha: float, z_beta: float) -> int:
    """Labelled rows, each scored for both versions, for a one-sided McNemar test to catch an
    accuracy ``drop`` when the versions disagree on ``discordance`` of the rows (Connor, 1987).

    The discordance is at least the drop (a drop needs that many rows judged differently).
    Two MNIST models of ~98 % disagreeing on 2 % of rows, a 1-point drop, 5 % / 80 %: 1,235.
    """
    p = max(discordance, drop)
    needed = (z_alpha * math.sqrt(p) + z_beta * math.sqrt(max(p - drop * drop, 0.0))) ** 2 / drop**2
    return math.ceil(needed)
