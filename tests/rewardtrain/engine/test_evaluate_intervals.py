"""The evaluation report's 95 % intervals (rewardtrain/engine/evaluate.py), on a scripted scorer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contracts.snapshot import PairRow
from contracts.vocabulary import BUILTIN
from core.stats import cluster_interval, wilson_interval
from rewardtrain.engine.evaluate import evaluate_scorer, format_table


class _Scripted:
    """Prefers the winner exactly on the pairs whose sample is listed as right."""

    vocabulary = BUILTIN

    def __init__(self, right_samples: set[str]):
        self.right = right_samples

    def score_log_odds(self, requests, batch_size=16):
        out = []
        for i, req in enumerate(requests):
            sample = Path(req.first if i % 2 == 0 else req.second).stem.split("-")[0]
            first_is_winner = i % 2 == 0
            out.append(1.0 if first_is_winner == (sample in self.right) else -1.0)
        return torch.tensor(out)


def _rows(samples: int, per_sample: int) -> list[PairRow]:
    return [PairRow(f"p{s}-{k}", "test", "fill", "structure", "", Path(f"s{s}-w{k}.png"), Path(f"s{s}-l{k}.png"),
                    sample_id=f"s{s}") for s in range(samples) for k in range(per_sample)]


def test_intervals_cluster_the_pairs_of_one_sample():
    rows = _rows(20, 4)
    report = evaluate_scorer(_Scripted({f"s{s}" for s in range(15)}), rows)
    assert report["accuracy"]["fill"]["structure"] == pytest.approx(0.75)
    lo, hi = report["interval"]["fill"]["structure"]
    assert (lo, hi) == pytest.approx(cluster_interval([4.0] * 15 + [0.0] * 5, [4] * 20))
    # 20 samples of 4 agreeing pairs are about 20 observations, not 80: wider than Wilson over pairs.
    w_lo, w_hi = wilson_interval(60, 80)
    assert hi - lo > 1.5 * (w_hi - w_lo)
    assert report["overall_interval"] == pytest.approx([lo, hi])
    assert f"[{lo * 100:.0f}–{hi * 100:.0f}]" in format_table(report)


def test_pairs_without_a_sample_are_their_own_cluster():
    rows = [PairRow(f"p{i}", "test", "fill", "structure", "", Path(f"x{i}-w.png"), Path(f"x{i}-l.png"))
            for i in range(10)]
    report = evaluate_scorer(_Scripted({f"x{i}" for i in range(7)}), rows)
    assert report["interval"]["fill"]["structure"] == pytest.approx(list(cluster_interval([1.0] * 7 + [0.0] * 3, [1] * 10)))
