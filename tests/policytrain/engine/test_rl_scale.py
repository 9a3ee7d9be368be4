"""The RL step at real size, as far as CPU can prove it (issue #19): one batched reward forward
over every criterion with a checkpointed LM, prompt embeddings off the accelerator, aspect-ratio
buckets, the memory plan before loading, and the held-out reward curve."""

import json
from pathlib import Path

import pytest
import torch

from policytrain.engine import rl
from policytrain.engine.rl import train

from .conftest import center_brightness, write_conditions


@pytest.fixture(scope="module")
def tiny_scorer(tmp_path_factory):
    from rewardtrain.engine.scorer import RewardScorer
    from rewardtrain.engine.tiny import build_tiny_reward_model

    return RewardScorer.from_pretrained(build_tiny_reward_model(tmp_path_factory.mktemp("rm"), seed=0))


def test_batched_criteria_equal_per_criterion_scores_and_gradients(tiny_scorer):
    scorer = tiny_scorer
    gen = torch.Generator().manual_seed(0)
    first = torch.rand(3, 3, 56, 56, generator=gen, requires_grad=True)
    second = torch.rand(3, 3, 56, 56, generator=gen)
    prompts = ["a red cat", "", "a tree"]
    rows = [("structure", [0, 1, 2]), ("text_alignment", [0, 2])]  # text alignment skips the prompt-free one
    separate = {c: scorer.differentiable(first[idx], second[idx], "fill", c, [prompts[i] for i in idx])
                for c, idx in rows}
    (grad_separate,) = torch.autograd.grad(sum(v.sum() for v in separate.values()), first)

    # The LM's decoder layers recompute in the backward: each layer's attention runs twice per step.
    scorer.enable_lm_checkpointing()
    layer = scorer._checkpointed_layers[0]
    calls = []
    hook = layer.self_attn.register_forward_hook(lambda *a: calls.append(1))
    try:
        batched = scorer.score_criteria(first, second, "fill", rows, prompts)
        assert len(calls) == 1  # ONE forward for both criteria
        (grad_batched,) = torch.autograd.grad(sum(v.sum() for v in batched.values()), first)
    finally:
        hook.remove()
    assert len(calls) == 2  # the checkpointed layer ran again in the backward
    assert not layer.training  # only flipped for the forward; the scorer stays in eval mode
    assert batched.keys() == separate.keys()
    for criterion in separate:
        assert torch.allclose(batched[criterion], separate[criterion], atol=1e-5)
    # Different criteria give different scores: the batched rows really carry their own query.
    assert not torch.allclose(batched["structure"][[0, 2]], batched["text_alignment"])
    assert grad_batched.abs().max() > 0
    assert torch.allclose(grad_batched, grad_separate, atol=1e-7, rtol=1e-4)
