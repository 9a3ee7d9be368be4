"""Bradley–Terry ratings of systems from side-by-side outcomes, with cluster-bootstrap intervals.

Plain Python + numpy (no Django): ``annotation.selectors.source_leaderboard`` feeds it. A tie
counts half a win for each side, as FastChat's arena leaderboard does; one virtual tie per compared
pair keeps a system that never lost from an infinite rating. Ratings are on the Elo scale
(400 · log10 of the BT strength), centred on a mean of 1000 within each connected group.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400.0
ELO_CENTRE = 1000.0


@dataclass(frozen=True)
class PairItems:
    """One item per row of a side-by-side campaign: how many of its judgments preferred ``a``,
    preferred ``b``, or called it even. Items are the bootstrap's resampling unit (judgments of
    one item share its two images)."""

    a: str
    b: str
    counts: np.ndarray  # shape (items, 3): wins of a, wins of b, ties


def fit(systems: Sequence[str], pairs: Sequence[tuple[str, str, float, float]], *, iterations: int = 1000,
        tol: float = 1e-7, start: np.ndarray | None = None) -> np.ndarray:
    """Elo-scale ratings of ``systems`` from (a, b, wins of a, wins of b) rows (ties already split),
    by Hunter's MM algorithm with one virtual tie per compared pair; ``start`` (Elo ratings) warm-
    starts it (the bootstrap starts from the point estimate)."""
    index = {s: k for k, s in enumerate(systems)}
    n = len(systems)
    wins = np.zeros((n, n))
    for a, b, wa, wb in pairs:
        i, j = index[a], index[b]
        wins[i, j] += wa + 0.5
        wins[j, i] += wb + 0.5
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    strength = np.ones(n) if start is None else 10 ** ((start - ELO_CENTRE) / ELO_SCALE)
    for _ in range(iterations):
        denom = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1.0), strength)
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(new - strength)) < tol:
            strength = new
            break
        strength = new
    ratings = ELO_SCALE * np.log10(strength)
    return ratings - ratings.mean() + ELO_CENTRE


def _pair_rows(items: Sequence[PairItems], picks: Sequence[np.ndarray] | None = None) -> list[tuple]:
    rows = []
    for k, pi in enumerate(items):
        counts = pi.counts if picks is None else pi.counts[picks[k]]
        wa, wb, ties = counts.sum(axis=0) if len(counts) else (0, 0, 0)
        rows.append((pi.a, pi.b, wa + ties / 2, wb + ties / 2))
    return rows


def leaderboard(items: Sequence[PairItems], *, bootstrap: int = 200, seed: int = 0) -> list[dict]:
    """Systems ranked by rating within their connected group, each with a 95 % interval from
    resampling items within each campaign (``bootstrap`` rounds), its judgments and the systems it
    was compared with.

    Systems that no chain of comparisons connects cannot share one scale, so each connected group
    (``component``, 0 = the largest) is fitted, centred on 1000 and ranked on its own: adding a
    campaign between unrelated systems never moves a rating in another group.
    """
    systems = sorted({s for pi in items for s in (pi.a, pi.b)})
    if not systems:
        return []
    judgments = {s: 0 for s in systems}
    opponents: dict[str, set[str]] = {s: set() for s in systems}
    for pi in items:
        n = int(pi.counts.sum())
        judgments[pi.a] += n
        judgments[pi.b] += n
        opponents[pi.a].add(pi.b)
        opponents[pi.b].add(pi.a)
    component = _components(systems, opponents)
    rows = []
    for group in range(max(component.values()) + 1):
        members = [s for s in systems if component[s] == group]
        group_items = [pi for pi in items if component[pi.a] == group]
        # Each group draws from its own generator, so one group's bootstrap never depends on another's items.
        point, lo, hi = _fit_with_intervals(members, group_items, bootstrap=bootstrap, seed=seed)
        order = sorted(range(len(members)), key=lambda k: -point[k])
        rows += [{"rank": rank, "system": members[k], "rating": float(point[k]), "ci95": [float(lo[k]), float(hi[k])],
                  "judgments": judgments[members[k]], "opponents": sorted(opponents[members[k]]), "component": group}
                 for rank, k in enumerate(order, start=1)]
    return rows


def _fit_with_intervals(systems: Sequence[str], items: Sequence[PairItems], *, bootstrap: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point ratings of one connected group and their 2.5 / 97.5 percentiles over item resamples."""
    point = fit(systems, _pair_rows(items))
    if not bootstrap:
        return point, point, point
    rng = np.random.default_rng(seed)
    draws = np.empty((bootstrap, len(systems)))
    for r in range(bootstrap):
        picks = [rng.integers(0, len(pi.counts), len(pi.counts)) if len(pi.counts) else np.zeros(0, int)
                 for pi in items]
        draws[r] = fit(systems, _pair_rows(items, picks), start=point)
    return point, np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def _components(systems: Sequence[str], neighbours: dict[str, set[str]]) -> dict[str, int]:
    """Connected groups of systems, numbered largest first."""
    seen: dict[str, int] = {}
    groups: list[list[str]] = []
    for s in systems:
        if s in seen:
            continue
        stack, group = [s], []
        seen[s] = -1
        while stack:
            x = stack.pop()
            group.append(x)
            for y in neighbours[x]:
                if y not in seen:
                    seen[y] = -1
                    stack.append(y)
        groups.append(group)
    groups.sort(key=lambda g: (-len(g), min(g)))
    return {s: k for k, g in enumerate(groups) for s in g}
