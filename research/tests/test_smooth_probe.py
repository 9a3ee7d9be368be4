"""The smoothed-reward probe (research/smooth_probe.py): what its scorer averages and differentiates."""

from __future__ import annotations

import pytest

from research import smooth_probe as sp

torch = pytest.importorskip("torch")


class _Linear:
    """A scorer whose value is <w, first>: its gradient is w wherever it is taken."""

    def __init__(self, w):
        self.w = w
        self.calls = 0

    def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
        self.calls += 1
        return (first * self.w).flatten(1).sum(1) + 0 * second.flatten(1).sum(1)


class _Wiggly:
    """<w, x> plus a high-frequency term whose gradient changes sign between nearby inputs."""

    def __init__(self, w):
        self.w = w

    def differentiable(self, first, second, task, criterion, prompt=None, return_log_odds=False):
        return (first * self.w).flatten(1).sum(1) + 0.01 * torch.sin(400 * first).flatten(1).sum(1)


def _grad(scorer, x, ref):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(scorer.differentiable(x, ref, "fill", "consistency").sum(), x)
    return g


def test_smoothing_keeps_a_linear_reward_and_calls_the_model_once_per_copy():
    w = torch.randn(1, 3, 4, 4)
    inner = _Linear(w)
    x, ref = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    smoothed = sp.SmoothedScorer(inner, samples=5, sigma=0.2)
    assert torch.allclose(_grad(smoothed, x, ref), w.expand(2, -1, -1, -1), atol=1e-6)
    assert inner.calls == 5


def test_smoothing_brings_a_wiggly_gradient_towards_its_smooth_part():
    w = torch.randn(1, 3, 8, 8)
    x, ref = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)

    def cosine(g):
        return torch.nn.functional.cosine_similarity(g.flatten(1), w.expand_as(g).flatten(1)).mean().item()

    raw = cosine(_grad(_Wiggly(w), x, ref))
    smooth = cosine(_grad(sp.SmoothedScorer(_Wiggly(w), samples=64, sigma=0.1), x, ref))
    assert raw < 0.5 < smooth


def test_the_same_seed_gives_the_same_value_and_bad_settings_are_refused():
    x, ref = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    w = torch.randn(1, 3, 8, 8)
    a = sp.SmoothedScorer(_Wiggly(w), samples=3, sigma=0.1, seed=7).differentiable(x, ref, "fill", "structure")
    b = sp.SmoothedScorer(_Wiggly(w), samples=3, sigma=0.1, seed=7).differentiable(x, ref, "fill", "structure")
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="samples"):
        sp.SmoothedScorer(_Wiggly(w), samples=0, sigma=0.1)
    with pytest.raises(SystemExit, match="unknown option"):
        sp.main(["var/x", "quick", "--bogus=1"])
