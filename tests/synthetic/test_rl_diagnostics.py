"""RL-relevant diagnostics (synthetic/rl_diagnostics.py): the reward model's oracle accuracy on the
pairs RL scores and the cosine between its pixel gradient and the oracle's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthetic import loop_config, oracles
from synthetic import rl_diagnostics as rd
from synthetic.scenes import TASK_CRITERIA


@pytest.fixture(scope="module")
def conditions():
    return loop_config.make_task_sets("rl-diagnostics-test", 4, seed=0, size=64)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)


def _pairs(conditions, strength: float = 0.6, seed: int = 0) -> list[rd.OneStepPair]:
    """Stand-ins for RL's pairs: a degraded target as "x0", the target as the reference."""
    rng = np.random.default_rng(seed)
    out = []
    for c in conditions:
        x0 = oracles.as_array(oracles.degrade(c, strength, "blur" if c.task == "removal" else "noise", rng=rng))
        out.append(rd.OneStepPair(c, _tensor(x0), _tensor(oracles.as_array(c.target)), k=0))
    return out


class SmoothWorld:
    """A smooth stand-in oracle with a known gradient, as numpy (the oracle) and torch (a reward).

    score(x) = mean over the edit region of sin(3x)·W_criterion, W a fixed random pattern; a reward
    built on it returns ``sign``·(score(first) − score(second)) as log-odds.
    """

    def __init__(self, conditions, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.weights = {c: rng.standard_normal((64, 64, 3)).astype(np.float32) for cs in TASK_CRITERIA.values()
                        for c in cs}
        self.masks = {c.id: oracles.mask_array(c) for c in conditions}

    def oracle(self, condition, image, criterion):
        m = self.masks[condition.id]
        return float((np.sin(3 * np.asarray(image, dtype=np.float64)) * self.weights[criterion])[m].mean())

    def scorer(self, sign: float = 1.0, weights: dict | None = None):
        weights = weights or self.weights

        class Scorer:
            def differentiable(self, first, second, task, criteria, prompts, return_log_odds=False):
                out = []
                for a, b, crit in zip(first, second, criteria, strict=True):
                    w = torch.from_numpy(weights[crit]).permute(2, 0, 1)
                    # The stub knows no condition, so it scores the whole image; inside the edit
                    # region (all the diagnostics compare) its gradient is the oracle's direction.
                    out.append(sign * ((torch.sin(3 * a) * w).mean() - (torch.sin(3 * b) * w).mean()))
                return torch.stack(out)

        return Scorer()


def test_gradient_cosine_is_one_for_the_oracle_minus_one_for_its_negation_and_near_zero_for_noise(conditions):
    world = SmoothWorld(conditions)
    pairs = _pairs(conditions)
    same = rd.gradient_cosines(world.scorer(), pairs, directions=8, oracle=world.oracle)
    negated = rd.gradient_cosines(world.scorer(sign=-1.0), pairs, directions=8, oracle=world.oracle)
    rng = np.random.default_rng(99)
    unrelated = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in world.weights.items()}
    noise = rd.gradient_cosines(world.scorer(weights=unrelated), pairs, directions=8, oracle=world.oracle)
    assert len(same) == sum(len(c.criteria) for c in conditions)
    assert all(r["cosine"] > 0.99 for r in same), same
    assert all(r["cosine"] < -0.99 for r in negated), negated
    # Two random directions in d ≈ 3000 region values: |cos| ~ 1/√d ≈ 0.02; the estimator scales a
    # small cosine by at most a few tens of percent, so every figure stays far below 0.15.
    assert all(abs(r["cosine"]) < 0.15 for r in noise), noise
    table = rd.cosine_table(noise)
    for task, crits in table["ci"].items():
        for crit, (lo, hi) in crits.items():
            assert lo < 0.0 < hi or abs(table["mean"][task][crit]) < 0.05, (task, crit, lo, hi)


def test_the_estimator_recovers_an_intermediate_cosine_within_its_stated_error(conditions):
    """Oracle gradient at a known angle to the reward's: cos 0.5 and 0.1 are recovered within a few
    times the documented spread (relative error ≈ 1/√(2K) of the small-cosine part)."""
    cond = conditions[0]
    m = oracles.mask_array(cond)
    region = np.broadcast_to(m[..., None], (64, 64, 3))
    rng = np.random.default_rng(3)
    g = np.where(region, rng.standard_normal((64, 64, 3)), 0.0)
    u = np.where(region, rng.standard_normal((64, 64, 3)), 0.0)
    u -= (u * g).sum() / (g * g).sum() * g
    g_hat, u_hat = g / np.linalg.norm(g), u / np.linalg.norm(u)
    image = np.full((64, 64, 3), 0.5, dtype=np.float32)
    for target in (0.5, 0.1):
        direction = target * g_hat + math.sqrt(1 - target ** 2) * u_hat

        def linear(condition, img, criterion, direction=direction):
            return float((np.asarray(img, dtype=np.float64) * direction).sum())

        estimates = [rd.oracle_gradient_cosine(cond, image, "consistency", g.astype(np.float32), 32, 1.0,
                                               np.random.default_rng(seed), linear) for seed in range(8)]
        assert np.mean(estimates) == pytest.approx(target, rel=0.15), estimates
        assert all(e > 0 for e in estimates)  # the sign is exact: it is the difference along the reward's gradient


def test_flat_oracle_or_reward_leaves_the_cosine_undefined(conditions):
    cond = conditions[0]
    image = np.full((64, 64, 3), 0.5, dtype=np.float32)
    rng = np.random.default_rng(0)
    grad = rng.standard_normal((64, 64, 3)).astype(np.float32)
    assert rd.oracle_gradient_cosine(cond, image, "consistency", grad, 4, 1.0, rng, lambda *_: 0.7) is None
    assert rd.oracle_gradient_cosine(cond, image, "consistency", np.zeros_like(grad), 4, 1.0, rng,
                                     lambda c, x, k: float(x.sum())) is None


def test_gradient_cosine_on_a_real_oracle_with_its_own_torch_form_is_near_one(conditions):
    """removal_quality = exp(−distance / 0.06)·(1 − residue), the residue share piecewise constant:
    away from its thresholds the oracle's gradient is the distance factor's, written here in torch.
    The finite differences on the numpy oracle must find the same direction."""
    removal = [c for c in conditions if c.task == "removal"]
    backgrounds = {c.id: torch.from_numpy(oracles.background(c)).permute(2, 0, 1) for c in removal}
    masks = {c.id: torch.from_numpy(oracles.mask_array(c)) for c in removal}
    pairs = _pairs(removal, strength=0.8)
    order = [p.condition.id for p in pairs]

    def blur(x):
        return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x[None], (2, 2, 2, 2), mode="replicate"), 5, 1)[0]

    class DistanceReward:
        def differentiable(self, first, second, task, criteria, prompts, return_log_odds=False):
            out = []
            for i, x in enumerate(first):  # gradient_cosines keeps the pairs' order within a task
                cid = order[i]
                d = ((blur(x) - blur(backgrounds[cid])).norm(dim=0) / math.sqrt(3))[masks[cid]].mean()
                out.append(torch.exp(-d / oracles.REMOVAL_SCALE))
            return torch.stack(out)

    rows = rd.gradient_cosines(DistanceReward(), pairs, directions=16, step_levels=0.5)
    assert [r["criterion"] for r in rows] == ["removal_quality"] * len(removal)
    assert all(r["cosine"] is not None and r["cosine"] > 0.9 for r in rows), rows


def test_one_step_accuracy_of_the_oracle_as_reward_is_one_and_of_its_negation_zero(conditions):
    pairs = _pairs(conditions)
    keep = {c.id: 1 - torch.from_numpy(oracles.mask_array(c).astype(np.float32)) for c in conditions}
    sources = {c.id: _tensor(oracles.as_array(c.source)) for c in conditions}

    def condition_of(image):
        return min(conditions, key=lambda c: float((((image - sources[c.id]) * keep[c.id]) ** 2).sum()))

    class OracleReward:
        def __init__(self, sign):
            self.sign = sign

        def differentiable(self, first, second, task, criteria, prompts, return_log_odds=False):
            return torch.tensor([self.sign * (oracles.score(condition_of(a), rd._hwc(a), c)
                                              - oracles.score(condition_of(b), rd._hwc(b), c))
                                 for a, b, c in zip(first, second, criteria, strict=True)])

    judged = rd.one_step_judged(OracleReward(1.0), pairs, threshold=0.03)
    assert judged and all(c == 1.0 for _, c in judged)
    assert {r["task"] for r, _ in judged} == {"fill", "extend", "removal"}
    assert all(r["margin"] > 0.03 and r["policy_better"] is False for r, _ in judged)  # a degraded x0 loses
    assert all(c == 0.0 for _, c in rd.one_step_judged(OracleReward(-1.0), pairs, threshold=0.03))


def test_one_step_pairs_are_rls_pairs_and_the_report_section_has_its_layout(tiny_flux_model, conditions):
    from policytrain.engine.pipeline import FillPolicy

    torch.set_num_threads(1)
    policy = FillPolicy.from_pretrained(str(tiny_flux_model))
    rl = {"t_range": [0.0, 0.75], "reference_steps": 2, "policy_steps": 4, "guidance": 30.0,
          "max_sequence_length": 32}
    pairs = rd.one_step_pairs(policy, conditions, rl, seed=5, batch_size=4)
    again = rd.one_step_pairs(policy, conditions, rl, seed=5, batch_size=4)
    assert [p.condition.id for p in pairs] == [c.id for c in conditions]
    assert {p.k for p in pairs} <= {0, 1, 2, 3} and len({p.k for p in pairs}) > 1
    for p, q in zip(pairs, again, strict=True):
        assert torch.equal(p.policy_image, q.policy_image) and torch.equal(p.reference_image, q.reference_image)
        keep = torch.from_numpy(~oracles.mask_array(p.condition))
        source = _tensor(oracles.as_array(p.condition.source))
        for image in (p.policy_image, p.reference_image):
            assert image.shape == (3, 64, 64) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
            assert torch.allclose(image[:, keep], source[:, keep], atol=1e-6)  # pasted back, as RL does
        assert not torch.equal(p.policy_image, p.reference_image)
    assert rd.rl_pair_settings(rl)["paste_back"] is True  # RLConfig's default under the overrides

    world = SmoothWorld(conditions)
    sizes = rd.DiagnosticSizes(accuracy_conditions_per_task=3, gradient_conditions_per_task=2, directions=4,
                               threshold=-1.0, batch_size=4)
    result = rd.rl_diagnostics({"oracle": world.scorer(), "negated": world.scorer(sign=-1.0)}, policy, conditions,
                               rl, sizes, seed=5, oracle=world.oracle)
    assert result["one_step_conditions"] == {"fill": 3, "extend": 3, "removal": 3} and result["rl_diagnostics_cpu_s"] > 0
    report, negated = result["models"]["oracle"], result["models"]["negated"]
    assert report["one_step_oracle_accuracy"]["fill"]["consistency"] == 1.0  # the reward is the oracle here
    assert negated["one_step_oracle_accuracy"]["fill"]["consistency"] == 0.0
    assert set(report["one_step_oracle_accuracy_ci"]["removal"]) == {"removal_quality"}
    for task, crits in report["gradient_cosine"].items():
        for crit, value in crits.items():
            lo, hi = report["gradient_cosine_ci"][task][crit]
            assert value > 0.99 and lo <= value <= hi, (task, crit)
            assert negated["gradient_cosine"][task][crit] < -0.99, (task, crit)
            assert report["gradient_cosine_conditions"][task][crit] <= 2
    assert report["gradient_cosine_mean"]["removal"] == report["gradient_cosine"]["removal"]["removal_quality"]
    assert report["one_step_oracle_accuracy_mean"]["fill"] == 1.0
    text = "\n".join(rd.summary_lines({**result, **report}, negated))
    assert "one-step x0" in text and text.count("removal_quality") == 1
    assert "+1.000" in text and "-1.000" in text  # the model's cosine and, beside it, the control's
