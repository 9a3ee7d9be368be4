"""Scene generator: determinism, mask format, task-specific structure."""

import numpy as np
import pytest

from synthetic.scenes import (
    EXTEND_FIXED_PROMPT,
    REMOVAL_PROMPT,
    TASKS,
    make_condition,
    make_conditions,
    object_silhouette,
    render_scene,
    to_uint8,
)


def _bytes(c):
    return c.source.tobytes(), c.mask.tobytes(), c.target.tobytes()


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_gives_identical_bytes(task):
    a, b = make_condition(task, 1234), make_condition(task, 1234)
    assert a.id == b.id
    assert a.prompt == b.prompt
    assert a.meta == b.meta
    assert _bytes(a) == _bytes(b)
    assert _bytes(make_condition(task, 1235)) != _bytes(a)


def test_make_conditions_deterministic_and_unique_ids():
    a = make_conditions(30, seed=7)
    b = make_conditions(30, seed=7)
    assert [c.id for c in a] == [c.id for c in b]
    assert all(_bytes(x) == _bytes(y) for x, y in zip(a, b, strict=True))
    assert len({c.id for c in a}) == 30


def test_task_probs_respected():
    conds = make_conditions(40, task_probs={"removal": 1.0}, seed=1)
    assert {c.task for c in conds} == {"removal"}
    with pytest.raises(ValueError, match="unknown"):
        make_conditions(2, task_probs={"paint": 1.0})


@pytest.mark.parametrize("size", [112, 224])
def test_mask_binary_same_size_and_modes(size):
    for c in make_conditions(12, seed=3, size=size):
        assert c.source.mode == "RGB"
        assert c.target.mode == "RGB"
        assert c.mask.mode == "L"
        assert c.source.size == c.mask.size == c.target.size == (size, size)
        m = np.asarray(c.mask)
        assert set(np.unique(m).tolist()) <= {0, 255}
        assert 0 < (m == 255).mean() < 1


def test_bad_size_rejected():
    with pytest.raises(ValueError, match="multiple of 16"):
        make_condition("fill", 0, size=100)


def test_target_matches_source_outside_mask():
    for c in make_conditions(15, seed=4):
        keep = np.asarray(c.mask) == 0
        src, tgt = np.asarray(c.source), np.asarray(c.target)
        assert np.array_equal(src[keep], tgt[keep])


def test_fill_hole_is_grey_and_holds_the_object():
    c = make_condition("fill", 11)
    m = np.asarray(c.mask) > 127
    assert (np.asarray(c.source)[m] == 128).all()
    sil = object_silhouette(c.meta["object"], 112)
    assert sil.any()
    assert not (sil & ~m).any()
    assert c.prompt.startswith(("a ", "the word"))


def test_extend_variants():
    with_p = make_condition("extend", 5, with_prompt=True)
    assert "extend the scene with" in with_p.prompt
    assert "text_alignment" in with_p.criteria
    free = make_condition("extend", 5, with_prompt=False)
    assert free.prompt == ""
    assert free.effective_prompt == EXTEND_FIXED_PROMPT
    assert free.meta["object"] is None
    assert "text_alignment" not in free.criteria
    assert free.id != with_p.id


def test_removal_source_shows_object_target_does_not():
    c = make_condition("removal", 9)
    assert c.prompt == REMOVAL_PROMPT
    assert c.criteria == ("removal_quality",)
    sil = object_silhouette(c.meta["removed"], 112)
    m = np.asarray(c.mask) > 127
    assert not (sil & ~m).any()  # the mask covers the whole (dilated) object
    src, tgt = np.asarray(c.source), np.asarray(c.target)
    assert (np.abs(src[sil].astype(int) - tgt[sil]).sum(axis=1) > 60).mean() > 0.9


@pytest.mark.parametrize("task", TASKS)
def test_meta_rerenders_target_exactly(task):
    for seed in range(5):
        c = make_condition(task, seed)
        assert np.array_equal(to_uint8(render_scene(c.meta)), np.asarray(c.target))


def test_package_imports_no_django_or_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, synthetic.scenes, synthetic.oracles, synthetic.annotators, synthetic.conditions;"
        "bad = [m for m in ('django', 'torch', 'annotation', 'rewardtrain', 'policytrain') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
