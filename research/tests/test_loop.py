"""Building blocks of the research loop (research/loop.py): simulated judgments, snapshots, warm start."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from research import loop  # noqa: E402
from synthetic import oracle_metrics  # noqa: E402
from synthetic.annotators import SimulatedAnnotator, make_pool  # noqa: E402
from synthetic.oracles import score_all  # noqa: E402
from synthetic.scenes import make_conditions  # noqa: E402


@pytest.fixture(scope="module")
def candidate_world():
    conds = make_conditions(12, seed=1, size=64)
    rng = np.random.default_rng(0)
    from synthetic.oracles import degrade

    candidates = []
    for c in conds:
        cands = [np.asarray(degrade(c, s, rng=rng), dtype=np.float32) / 255.0 for s in (0.0, 0.3, 0.6, 0.9)]
        candidates.append(cands)
    scores = [[score_all(c, img) for img in cands] for c, cands in zip(conds, candidates, strict=True)]
    return conds, candidates, scores


def test_perfect_annotators_agree_with_the_oracle(candidate_world):
    conds, _, scores = candidate_world
    oracle = [SimulatedAnnotator("perfect", noise=0.0)]
    judgments = loop.simulate_judgments(conds, scores, oracle, seed=0)
    assert judgments
    assert all(j.oracle_margin > 0 for j in judgments)
    # Every applicable criterion of every pair with different scores is judged once.
    assert {j.task for j in judgments} <= {"fill", "extend", "removal"}


def test_snapshot_is_readable_by_the_reward_engine(tmp_path, candidate_world):
    from rewardtrain.engine.data import load_manifest, read_pairs

    conds, candidates, scores = candidate_world
    pool = make_pool(6, careless_fraction=0.0, seed=0)
    judgments = loop.simulate_judgments(conds, scores, pool, seed=0, votes_per_pair=3)
    ceiling = oracle_metrics.human_ceiling_by_criterion(conds, scores, pool, seed=0)
    snap = loop.write_snapshot(tmp_path / "snap", conds, candidates, judgments, ceiling)
    rows = read_pairs(snap)
    assert len(rows) == len(judgments)
    assert all(r.winner.is_file() and r.loser.is_file() for r in rows)
    assert {r.split for r in rows} <= {"train", "test"}
    manifest = load_manifest(snap)
    assert manifest["human_ceiling"] == json.loads(json.dumps(ceiling))
    assert manifest["counts"]["pairs"] == len(rows)
    for task, crits in ceiling.items():
        for value in crits.values():
            assert 0.5 <= value <= 1.0, task


def test_warm_start_snapshot_keeps_a_few_unanimous_train_pairs_and_every_test_pair(tmp_path):
    snap = tmp_path / "snap"
    (snap / "images").mkdir(parents=True)
    (snap / "images" / "a.png").write_bytes(b"png")
    rows = [{"pair_id": f"p{i}", "split": "train" if i < 8 else "test", "votes": 3,
             "agreement": 1.0 if i % 2 == 0 else 1 / 3, "winner": "images/a.png", "loser": "images/a.png"}
            for i in range(10)]
    (snap / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (snap / "manifest.json").write_text(json.dumps({"counts": {"pairs": 10, "images": 1}, "filter": {}}))
    out = loop.warm_start_snapshot(snap, tmp_path / "warm", n_pairs=2)
    kept = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    train = [r for r in kept if r["split"] == "train"]
    assert len(train) == 2 and all(r["agreement"] == 1.0 for r in train)  # only unanimous pairs
    assert sum(r["split"] == "test" for r in kept) == 2  # other splits untouched
    assert (out / "images" / "a.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 2 and manifest["filter"]["warm_start_unanimous_pairs"] == 2
    again = loop.warm_start_snapshot(snap, tmp_path / "warm", n_pairs=2)
    assert (again / "pairs.jsonl").read_text() == (out / "pairs.jsonl").read_text()  # deterministic
