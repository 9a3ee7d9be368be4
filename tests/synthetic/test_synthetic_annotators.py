"""Simulated annotators: choice statistics and the human-ceiling helper."""

import math

import numpy as np
import pytest

from synthetic.annotators import SimulatedAnnotator, agreement_stats, human_ceiling, make_pool

N = 2000


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, size=500)
    b = rng.uniform(0, 1, size=500)
    return list(zip(a.tolist(), b.tolist(), strict=True))


def test_noiseless_unbiased_annotator_agrees_with_oracle(pairs):
    ann = SimulatedAnnotator("perfect", noise=0.0)
    assert human_ceiling([ann], pairs) == 1.0
    almost = SimulatedAnnotator("almost", noise=1e-4)
    assert human_ceiling([almost], pairs) > 0.99


def test_left_bias_shifts_choices_left():
    rng = np.random.default_rng(1)
    fair = SimulatedAnnotator("fair", noise=0.05)
    biased = SimulatedAnnotator("biased", noise=0.05, left_bias=0.15)
    fair_left = sum(fair.choose_pairwise(0.5, 0.5, rng) == "left" for _ in range(N)) / N
    biased_left = sum(biased.choose_pairwise(0.5, 0.5, rng) == "left" for _ in range(N)) / N
    assert abs(fair_left - 0.5) < 0.05
    assert abs(biased_left - 0.65) < 0.04  # equal scores → P(left) = 0.5 + left_bias
    assert biased_left - fair_left > 0.08


def test_careless_is_coin_flip(pairs):
    rng = np.random.default_rng(2)
    ann = SimulatedAnnotator("lazy", careless=True)
    # Even with a large score gap a careless annotator picks left ~half the time.
    left = sum(ann.choose_pairwise(0.9, 0.1, rng) == "left" for _ in range(N)) / N
    assert abs(left - 0.5) < 0.05
    assert abs(human_ceiling([ann], pairs * 4, seed=3) - 0.5) < 0.05


def test_matches_bradley_terry_probability():
    rng = np.random.default_rng(4)
    ann = SimulatedAnnotator("bt", noise=0.1, left_bias=0.05)
    expected = 1 / (1 + math.exp(-((0.6 - 0.5) / 0.1 + math.log(0.55 / 0.45))))
    assert ann.p_left(0.6, 0.5) == pytest.approx(expected)
    freq = sum(ann.choose_pairwise(0.6, 0.5, rng) == "left" for _ in range(N)) / N
    assert abs(freq - expected) < 0.04


def test_ties_within_threshold():
    rng = np.random.default_rng(5)
    ann = SimulatedAnnotator("tie", noise=0.0, tie_threshold=0.05)
    assert ann.choose_pairwise(0.52, 0.5, rng) == "tie"
    assert ann.choose_pairwise(0.6, 0.5, rng) == "left"
    assert ann.choose_pairwise(0.4, 0.5, rng) == "right"


def test_more_noise_lowers_agreement(pairs):
    low = human_ceiling([SimulatedAnnotator("a", noise=0.02)], pairs, seed=6)
    high = human_ceiling([SimulatedAnnotator("b", noise=0.3)], pairs, seed=6)
    assert 1.0 >= low > high > 0.5


def test_best_worst():
    rng = np.random.default_rng(7)
    exact = SimulatedAnnotator("exact", noise=0.0, tie_threshold=0.05)
    assert exact.choose_best_worst([0.2, 0.9, 0.5, 0.1], rng) == (1, 3)
    assert exact.choose_best_worst([0.5, 0.52, 0.51, 0.5], rng) is None
    noisy = SimulatedAnnotator("noisy", noise=0.05)
    hits = [noisy.choose_best_worst([0.2, 0.9, 0.5, 0.1], rng) for _ in range(500)]
    assert all(b != w for b, w in hits)
    assert sum(b == 1 for b, _ in hits) / 500 > 0.95
    lazy = SimulatedAnnotator("lazy", careless=True)
    best = [lazy.choose_best_worst([0.2, 0.9, 0.5, 0.1], rng)[0] for _ in range(N)]
    assert abs(best.count(1) / N - 0.25) < 0.04


def test_make_pool_deterministic_with_careless_fraction():
    pool = make_pool(20, careless_fraction=0.25, seed=3)
    assert pool == make_pool(20, careless_fraction=0.25, seed=3)
    assert sum(a.careless for a in pool) == 5
    assert len({a.name for a in pool}) == 20
    assert all(0.03 <= a.noise <= 0.1 for a in pool)


def test_agreement_stats_fields(pairs):
    pool = make_pool(10, careless_fraction=0.2, seed=1)
    stats = agreement_stats(pool, pairs + [(0.5, 0.5)], seed=2, votes_per_pair=3)
    assert stats["n_pairs"] == len(pairs)
    assert stats["n_votes"] == 3 * len(pairs)
    assert 0.6 < stats["agreement"] < 1.0
    assert stats["majority_agreement"] >= stats["agreement"] - 0.02
    assert 0 <= stats["tie_rate"] < 0.2
