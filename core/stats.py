"""Small statistics shared by readers of accuracies and win rates (plain Python, no Django)."""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: float, *, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` (95 % by default), or None for
    n = 0. Unlike the normal interval it stays inside [0, 1] and never collapses to a point at
    0 or 1: 4 of 4 correct gives about [0.51, 1], not "100–100 %". ``successes`` may be
    fractional (a tie counted as half a win)."""
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def t_quantile_975(df: int) -> float:
    """Student's t 97.5 % quantile for ``df`` degrees of freedom (tabled for 1–4, a Cornish–Fisher
    expansion above, within 0.005 of the table from 5 on; the normal 1.96 as df → ∞).
    With few clusters the normal quantile would claim more confidence than the data hold."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= 4:
        return (12.706204736, 4.302652730, 3.182446305, 2.776445105)[df - 1]
    z = Z95
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def cluster_interval(successes: Sequence[float], counts: Sequence[float]) -> tuple[float, float] | None:
    """95 % interval of the proportion sum(successes) / sum(counts) when the units come in clusters.

    ``successes[i]`` and ``counts[i]`` are cluster i's wins (a tie counting ½) and units: pairs of
    one condition share its candidate images, items of one condition share its scene, so they are
    not independent. The interval is the ratio estimator's cluster-robust one, with Student's t
    for (clusters − 1) degrees of freedom:

        r = Σw / Σn,  se² = Σ(w_i − r n_i)² / (k (k − 1) n̄²)

    It is never narrower than the Wilson interval over the units (the units' own sampling error,
    when clustering happens to look favourable), and is the Wilson interval where a spread cannot
    be estimated (one cluster, or every cluster alike). None when there are no units.
    """
    if len(successes) != len(counts):
        raise ValueError("successes and counts must have one entry per cluster")
    n = float(sum(counts))
    if n <= 0:
        return None
    wins = float(sum(successes))
    wilson = wilson_interval(wins, n)
    assert wilson is not None
    k = sum(1 for c in counts if c > 0)
    if k < 2:
        return wilson
    rate = wins / n
    nbar = n / k
    se = math.sqrt(sum((w - rate * c) ** 2 for w, c in zip(successes, counts, strict=True) if c > 0)
                   / (k * (k - 1))) / nbar
    half = t_quantile_975(k - 1) * se
    return max(0.0, min(rate - half, wilson[0])), min(1.0, max(rate + half, wilson[1]))


def grouped_interval(outcomes: Iterable[tuple[Hashable, float]]) -> tuple[float, float] | None:
    """``cluster_interval`` of (cluster key, outcome in [0, 1]) units, e.g. (condition id, 1 if
    the reward model agreed with the oracle on a pair of that condition)."""
    wins: dict[Hashable, float] = {}
    counts: dict[Hashable, int] = {}
    for key, value in outcomes:
        wins[key] = wins.get(key, 0.0) + float(value)
        counts[key] = counts.get(key, 0) + 1
    return cluster_interval([wins[k] for k in counts], [counts[k] for k in counts])
