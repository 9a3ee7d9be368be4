"""Every oracle is a function of what the reward model is shown for its criterion.

The reward model sees the two candidates (outside the mask they are the source, pasted back) and
the query; the prompt only for text alignment. So an oracle's score must not move when what the
model cannot see moves: the ground-truth target, the prompt (for every other criterion), the
requested or removed object's exact size and position. Each test perturbs exactly that hidden
part of the condition and requires the same score on a spread of candidate-like outputs, and a
control shows the perturbed part is not inert where the model *does* see it.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from PIL import Image

from synthetic.oracles import ORACLES, degrade, score
from synthetic.scenes import PALETTE, make_condition, make_conditions

NON_TEXT = ("consistency", "structure", "aesthetics", "removal_quality")


@pytest.fixture(scope="module")
def cases():
    """Conditions of every task with outputs from the target to heavy degradations."""
    conds = make_conditions(18, seed=7)
    conds += [make_condition("extend", 5, with_prompt=False), make_condition("removal", 9)]
    conds += [c for c in (make_condition("fill", s) for s in range(40)) if c.meta["object"]["kind"] == "word"][:2]
    out = []
    for i, c in enumerate(conds):
        rng = np.random.default_rng(i)
        images = [c.target, c.source] + [
            degrade(c, s, k, rng) for k in ("noise", "partial_object", "colour_shift", "seam_offset") for s in (0.4, 0.9)
        ]
        out.append((c, images))
    return out


def _hidden_world_changed(c):
    """The condition with everything a non-text criterion cannot see replaced by something else:
    another target (noise in the hole), another prompt, another requested/removed object."""
    meta = copy.deepcopy(c.meta)
    other = make_condition("fill", 1234)
    meta["object"] = copy.deepcopy(other.meta["object"]) if meta.get("object") is not None else None
    if meta.get("removed") is not None:
        meta["removed"] = copy.deepcopy(other.meta["object"])
    rng = np.random.default_rng(0)
    target = np.asarray(c.target).copy()
    hole = np.asarray(c.mask) > 127
    target[hole] = rng.integers(0, 256, size=(int(hole.sum()), 3))
    return dataclasses.replace(c, target=Image.fromarray(target), prompt="something else entirely", meta=meta)


@pytest.mark.parametrize("criterion", NON_TEXT)
def test_non_text_criteria_ignore_target_prompt_and_object(cases, criterion):
    checked = 0
    for c, images in cases:
        if criterion not in c.criteria:
            continue
        hidden = _hidden_world_changed(c)
        for img in images:
            assert ORACLES[criterion](hidden, img) == pytest.approx(score(c, img, criterion), abs=1e-9), c.id
            checked += 1
    assert checked >= 20


def test_non_text_criteria_need_no_target_at_all(cases):
    for c, images in cases:
        blind = dataclasses.replace(c, target=None)
        for crit in c.criteria:
            if crit != "text_alignment":
                assert ORACLES[crit](blind, images[-1]) == pytest.approx(score(c, images[-1], crit))


def _geometry_moved(c):
    """The requested object's exact position and size changed (the prompt does not say them)."""
    meta = copy.deepcopy(c.meta)
    obj = meta["object"]
    if obj["kind"] == "word":
        obj["xy"] = [obj["xy"][0] + 3, obj["xy"][1] - 2]
        obj["scale"] = obj["scale"] + 1
    else:
        obj["center"] = [obj["center"][0] + 3.5, obj["center"][1] - 2.5]
        obj["radius"] = obj["radius"] * 0.7
    obj["rgb"] = [v // 2 for v in obj["rgb"]]
    return dataclasses.replace(c, target=None, meta=meta)


def test_text_alignment_reads_the_prompt_not_the_hidden_geometry(cases):
    checked = 0
    for c, images in cases:
        if "text_alignment" not in c.criteria:
            continue
        moved = _geometry_moved(c)
        for img in images:
            assert ORACLES["text_alignment"](moved, img) == pytest.approx(score(c, img, "text_alignment")), c.id
            checked += 1
    assert checked >= 20


def test_text_alignment_follows_the_prompt():
    """Control: what the prompt names does move text alignment (same image, other colour)."""
    c = next(c for c in (make_condition("fill", s) for s in range(60)) if c.meta["object"]["kind"] == "shape")
    meta = copy.deepcopy(c.meta)
    other = next(name for name in PALETTE if name != meta["object"]["colour"])
    meta["object"].update(colour=other, rgb=list(PALETTE[other]))
    renamed = dataclasses.replace(c, meta=meta, prompt=f"a {other} {meta['object']['shape']}")
    assert score(c, c.target, "text_alignment") > 0.9
    assert ORACLES["text_alignment"](renamed, c.target) < 0.1


def test_structure_judges_the_object_that_is_there():
    """A whole shape of another kind than the target's keeps structure; a cut one loses it."""
    c = next(c for c in (make_condition("fill", s) for s in range(60)) if c.meta["object"].get("shape") == "circle")
    obj = c.meta["object"]
    cx, cy, r = obj["center"][0], obj["center"][1], obj["radius"]
    img = np.asarray(c.target).copy()
    y0, y1, x0, x1 = (int(round(v)) for v in (cy - r, cy + r, cx - r, cx + r))
    img[y0:y1, x0:x1] = obj["rgb"]  # a whole square where the target has a circle
    square = score(c, Image.fromarray(img), "structure")
    cut = degrade(c, 0.5, "partial_object", np.random.default_rng(0))
    assert square > 0.9
    assert score(c, cut, "structure") < square - 0.05


def test_removal_quality_scores_any_leftover_object(cases):
    """Whatever is left in the hole counts as residue, not only the removed object's colour."""
    c = next(c for c, _ in cases if c.task == "removal")
    img = np.asarray(c.target).copy()
    hole = np.asarray(c.mask) > 127
    img[hole] = (30, 30, 30)  # something dark that was never the removed object
    assert score(c, c.target, "removal_quality") > 0.9
    assert score(c, Image.fromarray(img), "removal_quality") < 0.1
