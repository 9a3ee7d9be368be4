"""Simulated annotators: a Bradley–Terry choice model with ties, position bias and carelessness.

Pairwise model (per judgment). With oracle scores ``s_l`` (displayed left) and ``s_r``:

    u = (s_l − s_r) + noise · (b + ε),   ε ~ Logistic(0, 1),   b = logit(0.5 + left_bias)
    choice = 'left' if u > τ, 'right' if u < −τ, else 'tie'          (τ = tie_threshold)

so with τ = 0 this is exactly Bradley–Terry with a position bias:
``P(left) = sigmoid((s_l − s_r) / noise + b)``; at equal scores P(left) = 0.5 + left_bias.
With ``noise = 0`` the annotator is a perfect (bias-free) oracle up to the tie threshold.
A careless annotator ignores the images: left/right with probability ½ each, never a tie.

Best–worst of N uses the Plackett–Luce extension (Gumbel noise, whose pairwise differences are
logistic, so it agrees with the pairwise model): best = argmax(s_i + noise·g_i) with the first
displayed item favoured by ``noise·b``; worst = argmin(s_i − noise·g'_i) over the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Choice = Literal["left", "right", "tie"]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated annotator (see module docstring for the choice model).

    noise: Bradley–Terry temperature in score units (scores are in [0, 1]); 0 = deterministic.
    tie_threshold: perceived differences within ±τ are reported as a tie / "no clear difference".
    left_bias: probability shift towards the displayed-left (first) option, in [−0.5, 0.5).
    careless: answers at random, ignoring the images.
    """

    name: str
    noise: float = 0.05
    tie_threshold: float = 0.0
    left_bias: float = 0.0
    careless: bool = False

    @property
    def bias_logit(self) -> float:
        return _logit(0.5 + self.left_bias)

    def p_left(self, score_left: float, score_right: float) -> float:
        """P(choice = 'left') ignoring ties (exact when tie_threshold = 0)."""
        if self.careless:
            return 0.5
        d = score_left - score_right
        if self.noise <= 0:
            return 1.0 if d > 0 else 0.0 if d < 0 else 0.5
        return 1.0 / (1.0 + math.exp(-(d / self.noise + self.bias_logit)))

    def choose_pairwise(self, score_left: float, score_right: float, rng: np.random.Generator) -> Choice:
        """'left', 'right' or 'tie' for one displayed pair."""
        if self.careless:
            return "left" if rng.uniform() < 0.5 else "right"
        u = score_left - score_right
        if self.noise > 0:
            eps = float(rng.logistic(0.0, 1.0))
            u += self.noise * (self.bias_logit + eps)
        if u > self.tie_threshold:
            return "left"
        if u < -self.tie_threshold:
            return "right"
        return "tie"

    def choose_best_worst(self, scores: Sequence[float], rng: np.random.Generator) -> tuple[int, int] | None:
        """(best_index, worst_index) among displayed candidates, or None for "no clear difference".

        None when the true spread max − min is below ``tie_threshold`` (the dimension is dropped,
        as in the paper's protocol). Careless annotators pick two distinct indices at random.
        """
        n = len(scores)
        if n < 2:
            raise ValueError("best-worst needs at least two candidates")
        if self.careless:
            best, worst = rng.choice(n, size=2, replace=False)
            return int(best), int(worst)
        s = np.asarray(scores, dtype=np.float64)
        if s.max() - s.min() < self.tie_threshold:
            return None
        if self.noise <= 0:
            best = int(np.argmax(s))
            rest = [i for i in range(n) if i != best]
            return best, rest[int(np.argmin(s[rest]))]
        up = s + self.noise * rng.gumbel(size=n)
        up[0] += self.noise * self.bias_logit  # first displayed ≈ "left"
        best = int(np.argmax(up))
        down = s - self.noise * rng.gumbel(size=n)
        down[best] = np.inf
        return best, int(np.argmin(down))


def make_pool(
    n: int,
    careless_fraction: float = 0.1,
    seed: int = 0,
    *,
    noise_range: tuple[float, float] = (0.03, 0.10),
    tie_range: tuple[float, float] = (0.0, 0.03),
    bias_range: tuple[float, float] = (0.0, 0.08),
) -> list[SimulatedAnnotator]:
    """A deterministic pool: exactly round(n·careless_fraction) careless annotators, the rest
    with noise / tie threshold / left bias drawn uniformly from the given ranges."""
    rng = np.random.default_rng(seed)
    n_careless = int(round(n * careless_fraction))
    careless = set(rng.choice(n, size=n_careless, replace=False).tolist()) if n_careless else set()
    pool = []
    for i in range(n):
        pool.append(
            SimulatedAnnotator(
                name=f"sim-{i:03d}",
                noise=round(float(rng.uniform(*noise_range)), 4),
                tie_threshold=round(float(rng.uniform(*tie_range)), 4),
                left_bias=round(float(rng.uniform(*bias_range)), 4),
                careless=i in careless,
            )
        )
    return pool


def agreement_stats(
    pool: Sequence[SimulatedAnnotator],
    score_pairs: Iterable[tuple[float, float]],
    seed: int = 0,
    votes_per_pair: int = 1,
) -> dict[str, float]:
    """Simulate the pool judging each (score_a, score_b) pair and compare with the oracle.

    Each vote goes to a random annotator with a random left/right order. Pairs with equal oracle
    scores are skipped. Returns ``agreement`` (share of decisive votes picking the higher
    score), ``tie_rate``, ``majority_agreement`` (per pair, majority of decisive votes; pairs
    without a majority skipped) and ``n_pairs``/``n_votes``.
    """
    if not pool:
        raise ValueError("empty annotator pool")
    rng = np.random.default_rng(seed)
    agree = decisive = ties = votes = 0
    maj_agree = maj_n = 0
    n_pairs = 0
    for a, b in score_pairs:
        if a == b:
            continue
        n_pairs += 1
        pair_votes = 0
        for _ in range(votes_per_pair):
            ann = pool[int(rng.integers(len(pool)))]
            a_left = rng.uniform() < 0.5
            choice = ann.choose_pairwise(a if a_left else b, b if a_left else a, rng)
            votes += 1
            if choice == "tie":
                ties += 1
                continue
            decisive += 1
            picked_a = (choice == "left") == a_left
            ok = picked_a == (a > b)
            agree += ok
            pair_votes += 1 if ok else -1
        if pair_votes != 0:
            maj_n += 1
            maj_agree += pair_votes > 0
    return {
        "agreement": agree / decisive if decisive else float("nan"),
        "tie_rate": ties / votes if votes else float("nan"),
        "majority_agreement": maj_agree / maj_n if maj_n else float("nan"),
        "n_pairs": float(n_pairs),
        "n_votes": float(votes),
    }


def human_ceiling(
    pool: Sequence[SimulatedAnnotator],
    score_pairs: Iterable[tuple[float, float]],
    seed: int = 0,
    votes_per_pair: int = 1,
) -> float:
    """Expected accuracy of a *perfect* (oracle-equivalent) reward model on labels from this pool.

    That is the share of decisive simulated votes that agree with the oracle's ordering — the
    "noise ceiling" the demo reports RM accuracy against.
    """
    return agreement_stats(pool, score_pairs, seed=seed, votes_per_pair=votes_per_pair)["agreement"]
