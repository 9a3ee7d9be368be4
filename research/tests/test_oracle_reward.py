"""The differentiable oracle ports behind ``research.probes rl … --reward=oracle`` (research/oracle_reward.py)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from research.oracle_reward import DifferentiableOracle, oracle_reward_fn, wrong_way  # noqa: E402
from synthetic import oracles  # noqa: E402
from synthetic.scenes import make_conditions  # noqa: E402

KINDS = ("noise", "blur", "colour_shift", "partial_object", "residue")


def as_tensor(image) -> torch.Tensor:
    return torch.from_numpy(oracles.as_array(image, 64)).permute(2, 0, 1)


@pytest.fixture(scope="module")
def candidates():
    """Per condition: the target and degraded copies of it (every kind at two strengths)."""
    rng = np.random.default_rng(0)
    out = []
    for cond in make_conditions(12, seed=5, size=64):
        images = [cond.target] + [oracles.degrade(cond, s, kind, rng) for kind in KINDS for s in (0.3, 0.8)]
        out.append((cond, images))
    return out


@pytest.mark.parametrize(("criterion", "at_least"), [("consistency", 1.0), ("aesthetics", 0.85),
                                                 ("removal_quality", 0.95), ("structure", 0.95)])
def test_ports_rank_pairs_as_the_oracles_do(candidates, criterion, at_least):
    agree = []
    for cond, images in candidates:
        if criterion not in oracles.TASK_CRITERIA[cond.task]:
            continue
        truth = [oracles.score(cond, im, criterion) for im in images]
        port = DifferentiableOracle(cond)
        soft = [float(port(criterion, as_tensor(im))) for im in images]
        for i, j in combinations(range(len(images)), 2):
            if abs(truth[i] - truth[j]) > 0.03:
                agree.append(np.sign(truth[i] - truth[j]) == np.sign(soft[i] - soft[j]))
    assert len(agree) >= 20 and np.mean(agree) >= at_least, (len(agree), np.mean(agree))


@pytest.fixture(scope="module")
def requested():
    """Fill and prompted extend conditions (shapes and words): the target and copies that lose,
    recolour, blur or half-draw the requested object."""
    rng = np.random.default_rng(1)
    out = []
    for cond in make_conditions(24, seed=7, size=64):
        if oracles.requested_object(cond) is None:
            continue
        kinds = ("wrong_colour", "partial_object", "blank", "blur", "noise")
        out.append((cond, [cond.target] + [oracles.degrade(cond, s, k, rng) for k in kinds for s in (0.4, 0.9)]))
    return out


def test_text_alignment_port_ranks_pairs_as_the_oracle_does(requested):
    agree, words = [], 0
    for cond, images in requested:
        truth = [oracles.text_alignment(cond, im) for im in images]
        port = DifferentiableOracle(cond)
        soft = [float(port("text_alignment", as_tensor(im))) for im in images]
        words += oracles.requested_object(cond)["kind"] == "word"
        for i, j in combinations(range(len(images)), 2):
            if abs(truth[i] - truth[j]) > 0.03:
                agree.append(np.sign(truth[i] - truth[j]) == np.sign(soft[i] - soft[j]))
    assert words >= 2 and len(agree) >= 50 and np.mean(agree) >= 0.9, (words, len(agree), np.mean(agree))


def test_text_alignment_port_pulls_towards_the_requested_object(requested):
    cond, images = next((c, ims) for c, ims in requested if oracles.requested_object(c)["kind"] != "word")
    blank = as_tensor(oracles.degrade(cond, 0.9, "blank", np.random.default_rng(0))).requires_grad_(True)
    port = DifferentiableOracle(cond)
    value = port.text_alignment(blank)
    value.backward()
    # One small step along the gradient raises the score: the port pulls, it is not a constant.
    stepped = (blank + 0.05 * blank.grad / blank.grad.abs().max()).detach()
    assert port.text_alignment(stepped).item() > value.item()
    no_request = next(c for c in make_conditions(40, seed=3, size=64) if oracles.requested_object(c) is None)
    with pytest.raises(ValueError, match="requests no object"):
        DifferentiableOracle(no_request).text_alignment(as_tensor(no_request.target))


def test_consistency_port_is_exact_and_has_gradient(candidates):
    cond, images = next((c, ims) for c, ims in candidates if c.task == "fill")
    worst = min(images, key=lambda im: oracles.consistency(cond, im))  # a seam: the score has a slope
    x = as_tensor(worst).requires_grad_(True)
    value = DifferentiableOracle(cond).consistency(x)
    assert value.item() == pytest.approx(oracles.consistency(cond, worst), abs=1e-5) and value.item() < 0.9
    value.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_reward_finds_each_images_condition_and_prefers_the_target(candidates):
    conds = [c for c, _ in candidates]
    sources = torch.stack([as_tensor(c.source) for c in conds])
    masks = torch.stack([torch.from_numpy(oracles.mask_array(c)).float()[None] for c in conds])
    reward = oracle_reward_fn(conds, sources, masks)
    # Two conditions of the same task, each pair: (target, heavily blurred target), pasted back.
    picked = [i for i, c in enumerate(conds) if c.task == "fill"][:2]
    firsts = torch.stack([as_tensor(conds[i].target) for i in picked])
    seconds = torch.stack([as_tensor(oracles.degrade(conds[i], 0.9, "blur")) for i in picked])
    firsts = firsts * masks[picked] + sources[picked] * (1 - masks[picked])
    seconds = seconds * masks[picked] + sources[picked] * (1 - masks[picked])
    good = reward(firsts, seconds, "fill", "aesthetics", ["p"] * 2)
    bad = reward(seconds, firsts, "fill", "aesthetics", ["p"] * 2)
    assert (good > 0).all() and torch.allclose(good, -bad, atol=1e-5)
    # Text alignment is ported; left out, it is a constant above the hinge ceiling logit(0.9), no gradient.
    text = reward(firsts.requires_grad_(True), seconds, "fill", "text_alignment", ["p"] * 2)
    assert text.requires_grad
    without = oracle_reward_fn(conds, sources, masks, text_alignment=False)
    text = without(firsts, seconds, "fill", "text_alignment", ["p"] * 2)
    assert torch.all(text > 2.2) and not text.requires_grad


def test_wrong_share_reverses_a_fixed_share_of_condition_criterion_pairs(candidates):
    reversed_share = np.mean([wrong_way(i, "structure", 0.3) for i in range(2000)])
    assert abs(reversed_share - 0.3) < 0.03
    assert [wrong_way(i, "structure", 0.3) for i in range(50)] == [wrong_way(i, "structure", 0.3) for i in range(50)]
    assert not any(wrong_way(i, "structure", 0.0) for i in range(50))
    conds = [c for c, _ in candidates]
    sources = torch.stack([as_tensor(c.source) for c in conds])
    masks = torch.stack([torch.from_numpy(oracles.mask_array(c)).float()[None] for c in conds])
    firsts = torch.stack([as_tensor(c.target) for c in conds])
    seconds = torch.stack([as_tensor(oracles.degrade(c, 0.9, "noise")) for c in conds])
    firsts, seconds = (x * masks + sources * (1 - masks) for x in (firsts, seconds))
    right = oracle_reward_fn(conds, sources, masks)(firsts, seconds, "fill", "consistency", ["p"] * len(conds))
    noisy = oracle_reward_fn(conds, sources, masks, wrong_share=0.5)(firsts, seconds, "fill", "consistency",
                                                                      ["p"] * len(conds))
    flips = torch.tensor([wrong_way(i, "consistency", 0.5) for i in range(len(conds))])
    assert flips.any() and (~flips).any()
    assert torch.allclose(noisy, torch.where(flips, -right, right))
    with pytest.raises(ValueError, match="wrong_share must be in"):
        oracle_reward_fn(conds, sources, masks, wrong_share=1.5)


@pytest.mark.parametrize("criterion", ["removal_quality", "structure"])
def test_version_2_ranks_pairs_at_least_as_well_as_version_1(candidates, criterion):
    agree: dict[int, list[bool]] = {1: [], 2: []}
    for cond, images in candidates:
        if criterion not in oracles.TASK_CRITERIA[cond.task]:
            continue
        truth = [oracles.score(cond, im, criterion) for im in images]
        for version in agree:
            port = DifferentiableOracle(cond, version)
            soft = [float(port(criterion, as_tensor(im))) for im in images]
            agree[version] += [np.sign(truth[i] - truth[j]) == np.sign(soft[i] - soft[j])
                               for i, j in combinations(range(len(images)), 2) if abs(truth[i] - truth[j]) > 0.03]
    assert len(agree[2]) >= 20 and np.mean(agree[2]) >= np.mean(agree[1]) - 0.02, {v: np.mean(a) for v, a in agree.items()}


def test_version_2_removal_counts_the_residue_and_structure_lets_a_small_blob_go():
    removal = next(c for c in make_conditions(40, seed=3, size=64) if c.task == "removal")
    background = torch.from_numpy(np.asarray(oracles.background(removal), dtype=np.float32)).permute(2, 0, 1)
    mask = torch.from_numpy(oracles.mask_array(removal))
    clean = torch.where(mask, background, as_tensor(removal.source))
    left = clean.clone()
    left[:, mask] = 1 - left[:, mask]  # every hole pixel object-like: the residue is the whole core
    v1, v2 = DifferentiableOracle(removal, 1), DifferentiableOracle(removal, 2)
    assert float(v2("removal_quality", left)) < 0.05 < float(v1("removal_quality", left)) * 0.5 + 0.05
    assert float(v2("removal_quality", clean)) == pytest.approx(float(v1("removal_quality", clean)), abs=0.01)
    # A thin 1x7 stroke in an otherwise clean fill hole, no object's shape: version 2's gradient
    # fades it (the oracle calls no object intact), version 1's does not.
    fill = next(c for c in make_conditions(40, seed=3, size=64) if c.task == "fill")
    bg = torch.from_numpy(np.asarray(oracles.background(fill), dtype=np.float32)).permute(2, 0, 1)
    m = oracles.mask_array(fill)
    ys, xs = np.nonzero(m)
    cy, cx = int(ys.mean()), int(xs.mean())
    image = torch.where(torch.from_numpy(m), bg, as_tensor(fill.source)).clone()
    stroke = (slice(None), slice(cy, cy + 1), slice(cx - 3, cx + 4))
    # Just past the silhouette threshold (where the soft silhouette has a slope), brighter than the background.
    image[stroke] += (oracles.SILHOUETTE_THRESHOLD + 0.02) / np.sqrt(3)
    assert oracles.object_pixels(oracles.as_array(image.permute(1, 2, 0).numpy(), 64), oracles.background(fill), m).sum() == 7

    def towards_background(version: int) -> float:
        x = image.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(DifferentiableOracle(fill, version)("structure", x), x)
        return float(((bg - image)[stroke] * grad[stroke]).sum())

    assert towards_background(2) > 0 and towards_background(2) > towards_background(1)
    with pytest.raises(ValueError, match="version"):
        DifferentiableOracle(fill, 3)
