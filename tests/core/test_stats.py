"""core.stats: the intervals every accuracy and win rate is shown with (known values)."""

import pytest

from core.stats import cluster_interval, grouped_interval, t_quantile_975, wilson_interval


def test_wilson_known_values():
    # Textbook values (Newcombe 1998, method 3): 81 of 263 → [0.2553, 0.3662]; 0 of 10 → [0, 0.2775].
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    lo, hi = wilson_interval(4, 4)
    assert hi == 1.0 and lo == pytest.approx(0.5101, abs=5e-4)  # never "100–100 %"
    assert wilson_interval(3, 0) is None


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (4, 2.776), (5, 2.571), (10, 2.228), (29, 2.045), (120, 1.980)])
def test_t_quantile_matches_the_table(df, table):
    assert t_quantile_975(df) == pytest.approx(table, abs=5e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_cluster_interval_of_independent_units_is_about_wilson():
    # One unit per cluster: the cluster-robust interval is the usual one (it is never narrower than Wilson).
    outcomes = [1.0] * 70 + [0.0] * 30
    lo, hi = cluster_interval(outcomes, [1] * 100)
    w_lo, w_hi = wilson_interval(70, 100)
    assert lo <= w_lo and hi >= w_hi
    assert (lo, hi) == pytest.approx((0.6086, 0.7914), abs=5e-3)  # 0.7 ± t(99)·√(0.21/100)


def test_cluster_interval_widens_when_clusters_agree_internally():
    # 25 conditions, 4 pairs each, all 4 right or all 4 wrong: about 25 independent units, not 100.
    clustered = cluster_interval([4.0] * 20 + [0.0] * 5, [4] * 25)
    independent = wilson_interval(80, 100)
    assert clustered[1] - clustered[0] > 1.5 * (independent[1] - independent[0])
    # Known value: r = 0.8, se = sqrt(Σ(w − r n)² / (k(k−1))) / n̄ = sqrt((20·0.8² + 5·3.2²) / 600) / 4.
    se = ((20 * 0.8**2 + 5 * 3.2**2) / 600) ** 0.5 / 4
    assert clustered == pytest.approx((0.8 - t_quantile_975(24) * se, 0.8 + t_quantile_975(24) * se))


def test_cluster_interval_edges():
    assert cluster_interval([], []) is None
    assert cluster_interval([3.0], [3]) == wilson_interval(3, 3)  # one cluster: no spread to estimate
    assert cluster_interval([2.0, 2.0], [2, 2]) == wilson_interval(4, 4)  # all alike: Wilson, not a point
    with pytest.raises(ValueError):
        cluster_interval([1.0], [1, 2])


def test_grouped_interval_groups_by_key():
    units = [("a", 1), ("a", 1), ("b", 0), ("b", 1), ("c", 0.5)]
    assert grouped_interval(units) == cluster_interval([2.0, 1.0, 0.5], [2, 2, 1])
