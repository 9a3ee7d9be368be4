"""Annotator labels on one-step pairs (research/onestep_labels.py): the fresh train-split
conditions and the snapshot rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from research import onestep_labels
from research.loop import Judgment


def _cond(cid):
    return SimpleNamespace(id=cid)


def test_pick_train_split_keeps_only_train_conditions_in_order():
    conds = [_cond(c) for c in ("a1", "b1", "a2", "b2", "a3")]
    split = {"a": "train", "b": "test"}
    picked = onestep_labels.pick_train_split(conds, 2, lambda cid: split[cid[0]])
    assert [c.id for c in picked] == ["a1", "a2"]
    with pytest.raises(ValueError, match="only 3"):
        onestep_labels.pick_train_split(conds, 4, lambda cid: split[cid[0]])


def test_pick_train_split_refuses_a_condition_of_another_set():
    conds = [_cond("a1"), _cond("a2")]
    with pytest.raises(ValueError, match="a2 is already"):
        onestep_labels.pick_train_split(conds, 2, lambda cid: "train", forbidden={"a2"})


def test_rows_point_at_their_entrys_images_and_keep_the_conditions_split():
    judgments = [Judgment("c1", "fill", "consistency", "p", 1, 0, 3, 1 / 3, -0.04),
                 Judgment("c1", "fill", "structure", "p", 0, 1, 2, 1.0, 0.1),
                 Judgment("c1", "fill", "consistency", "p", 0, 1, 3, 1.0, 0.2)]
    paths = [["images/x0a.png", "images/refa.png"], ["images/x0b.png", "images/refb.png"]]
    rows = onestep_labels.onestep_snapshot_rows(judgments, paths, [0, 0, 1], lambda cid: "train")
    assert [r["winner"] for r in rows] == ["images/refa.png", "images/x0a.png", "images/x0b.png"]
    assert [r["loser"] for r in rows] == ["images/x0a.png", "images/refa.png", "images/refb.png"]
    assert rows[0]["winner_candidate_id"] == "c1#ref-0" and rows[2]["loser_candidate_id"] == "c1#ref-1"
    assert len({r["pair_id"] for r in rows}) == 3
    assert rows[0]["pair_id"] == "c1:consistency:onestep0:ref-x0:0"
    assert all(r["split"] == "train" and r["sample_id"] == "c1" for r in rows)
    assert rows[0]["oracle_margin"] == -0.04 and rows[0]["votes"] == 3
    with pytest.raises(ValueError):
        onestep_labels.onestep_snapshot_rows(judgments, paths, [0, 1], lambda cid: "train")
