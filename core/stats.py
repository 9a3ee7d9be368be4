"""Small statistics shared by readers of accuracies and win rates (plain Python, no Django)."""
from __future__ import annotations

import math

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
