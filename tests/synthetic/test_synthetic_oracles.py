"""Oracles: targets score high, corruptions lower the relevant criterion, monotonicity."""

import numpy as np
import pytest
from PIL import Image

from synthetic.oracles import (
    DEGRADATIONS,
    as_array,
    degrade,
    mean_score,
    score,
    score_all,
    tolerant_f1,
)
from synthetic.scenes import make_condition, make_conditions


@pytest.fixture(scope="module")
def conds():
    # Enough of each task (and both extend variants) to average over scene variety.
    out = make_conditions(24, seed=21)
    out += [make_condition("extend", s, with_prompt=False) for s in range(3)]
    out += [make_condition("fill", s) for s in range(100, 106)]
    return out


def _mean(conds, criterion, kind, strength, tasks=("fill", "extend")):
    vals = []
    for i, c in enumerate(conds):
        if c.task not in tasks or criterion not in c.criteria:
            continue
        img = degrade(c, strength, kind, np.random.default_rng(i))
        vals.append(score(c, img, criterion))
    assert vals, (criterion, kind)
    return float(np.mean(vals))


def test_target_scores_at_least_09_everywhere(conds):
    for c in conds:
        scores = score_all(c, c.target)
        assert set(scores) == set(c.criteria)
        assert min(scores.values()) >= 0.9, (c.id, scores)
        assert mean_score(c, c.target) >= 0.9


def test_accepts_float_arrays_and_other_sizes(conds):
    c = conds[0]
    arr = np.asarray(c.target, dtype=np.float32) / 255.0
    assert score_all(c, arr) == pytest.approx(score_all(c, c.target))
    big = c.target.resize((224, 224), Image.Resampling.NEAREST)
    assert min(score_all(c, big).values()) > 0.6
    assert as_array(np.transpose(arr, (2, 0, 1))).shape == arr.shape


def test_prompt_free_extend_has_no_text_alignment():
    c = make_condition("extend", 3, with_prompt=False)
    assert score(c, c.target, "text_alignment") is None
    assert "text_alignment" not in score_all(c, c.target)
    with pytest.raises(ValueError, match="does not apply"):
        score(make_condition("removal", 1), c.target, "aesthetics")


@pytest.mark.parametrize(
    ("kind", "criterion", "tasks"),
    [
        ("noise", "aesthetics", ("fill", "extend")),
        ("blur", "aesthetics", ("fill",)),
        ("blank", "consistency", ("fill", "extend")),
        ("blank", "text_alignment", ("fill", "extend")),
        ("wrong_colour", "text_alignment", ("fill", "extend")),
        ("colour_shift", "consistency", ("fill", "extend")),
        ("seam_offset", "consistency", ("fill", "extend")),
        ("residue", "removal_quality", ("removal",)),
        ("colour_shift", "removal_quality", ("removal",)),
    ],
)
def test_corruption_lowers_relevant_criterion(conds, kind, criterion, tasks):
    clean = _mean(conds, criterion, kind, 0.0, tasks)
    bad = _mean(conds, criterion, kind, 1.0, tasks)
    assert clean >= 0.9
    assert bad < clean - 0.2, (clean, bad)


def test_source_as_output_fails_removal():
    c = make_condition("removal", 4)
    assert score(c, c.source, "removal_quality") < 0.1  # nothing removed → full residue


@pytest.mark.parametrize(
    ("kind", "criterion", "tasks"),
    [
        ("noise", "aesthetics", ("fill", "extend")),
        ("colour_shift", "consistency", ("fill", "extend")),
        ("partial_object", "text_alignment", ("fill", "extend")),
        ("residue", "removal_quality", ("removal",)),
    ],
)
def test_monotone_in_corruption_strength(conds, kind, criterion, tasks):
    means = [_mean(conds, criterion, kind, s, tasks) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a > b for a, b in zip(means, means[1:], strict=False)), means


def test_word_text_alignment_distinguishes_words():
    c = next(c for c in (make_condition("fill", s) for s in range(200)) if c.meta["object"]["kind"] == "word")
    assert score(c, c.target, "text_alignment") == pytest.approx(1.0)
    assert score(c, c.source, "text_alignment") == 0.0  # grey hole, no ink


def test_wrong_shape_partial_credit():
    c = next(
        c
        for c in (make_condition("fill", s) for s in range(200))
        if c.meta["object"].get("shape") == "circle"
    )
    circle = score(c, c.target, "text_alignment")
    img = np.asarray(c.target).copy()
    x0, y0, x1, y1 = (
        int(round(v))
        for v in (
            c.meta["object"]["center"][0] - c.meta["object"]["radius"],
            c.meta["object"]["center"][1] - c.meta["object"]["radius"],
            c.meta["object"]["center"][0] + c.meta["object"]["radius"],
            c.meta["object"]["center"][1] + c.meta["object"]["radius"],
        )
    )
    img[y0:y1, x0:x1] = c.meta["object"]["rgb"]  # a square of the right colour
    wrong = score(c, Image.fromarray(img), "text_alignment")
    assert 0.3 < wrong < circle - 0.2


def test_tolerant_f1_edges():
    a = np.zeros((10, 10), dtype=bool)
    assert tolerant_f1(a, a) == 1.0
    b = a.copy()
    b[2:5, 2:5] = True
    assert tolerant_f1(a, b) == 0.0
    shifted = np.roll(b, 1, axis=1)
    assert tolerant_f1(shifted, b) == 1.0


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degrade_outputs_valid_images_and_keeps_outside(conds, kind):
    for i, c in enumerate(conds[:8]):
        img = degrade(c, 0.7, kind, np.random.default_rng(i))
        assert img.mode == "RGB"
        assert img.size == c.target.size
        keep = np.asarray(c.mask) == 0
        assert np.array_equal(np.asarray(img)[keep], np.asarray(c.target)[keep])
    assert np.array_equal(
        np.asarray(degrade(conds[0], 0.0, kind, np.random.default_rng(0))), np.asarray(conds[0].target)
    )


def test_degrade_random_kind_is_seeded(conds):
    a = degrade(conds[1], 0.5, None, np.random.default_rng(3))
    b = degrade(conds[1], 0.5, None, np.random.default_rng(3))
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(conds[1], 0.5, "melt", np.random.default_rng(0))
