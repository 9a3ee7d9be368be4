import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from policytrain.engine import recipe, rl
from policytrain.engine.pipeline import FillPolicy
from policytrain.engine.rl import RunCancelled, ema_update, train

from .conftest import center_brightness


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_toy_reward_rises_and_run_folder_is_complete(rl_config):
    cfg = rl_config(max_steps=16, batch_size=4, log_every=4, save_every=8, sample_grid_every=8,
                    task_probs={"fill": 1.0})
    events = []
    result = train(cfg, reward_fn=center_brightness, progress=events.append)
    run = tmp = cfg.output_dir
    from pathlib import Path

    run = Path(tmp)
    rows = _metrics(run)
    first, last = rows[0]["reward/fill/structure"], rows[-1]["reward/fill/structure"]
    assert last > first + 0.003, (first, last)
    assert all(0 <= r["hinge_active/fill/aesthetics"] <= 1 for r in rows)
    assert result["status"] == "completed"
    assert json.loads((run / "result.json").read_text())["steps"] == 16
    assert [e["step"] for e in events] == list(range(1, 17))
    assert (run / "samples" / "step-000008.png").is_file()
    assert (run / "checkpoints" / "step-8" / "optimizer.pt").is_file()
    assert (run / "final" / "pytorch_lora_weights.safetensors").is_file()
    # The deployable folder loads on top of the base model and changes its outputs.
    base = FillPolicy.from_pretrained(cfg.base_policy)
    tuned = FillPolicy.from_pretrained(cfg.base_policy, weights=run / "final")
    img = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    kw = dict(seed=0, steps=2, max_sequence_length=16)
    assert (tuned.generate(img, mask, ["a red cat"], **kw) - base.generate(img, mask, ["a red cat"], **kw)).abs().max() > 0


@pytest.mark.parametrize("paste_back", [True, False])
def test_reward_sees_source_pixels_outside_the_mask_only_with_paste_back(rl_config, paste_back):
    seen = []

    def recording_reward(first, second, task, criterion, prompts):
        seen.append((first.detach().clone(), second.detach().clone()))
        return center_brightness(first, second, task, criterion, prompts)

    train(rl_config(max_steps=1, task_probs={"fill": 1.0}, paste_back=paste_back), reward_fn=recording_reward)
    policy_images, reference_images = seen[0]
    # The fixture's fill masks cover the centre square only; outside it paste-back makes both images the source.
    border = torch.ones_like(policy_images, dtype=torch.bool)
    h, w = border.shape[-2:]
    border[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = False
    same_border = torch.equal(policy_images[border], reference_images[border])
    assert same_border is paste_back


def test_ema_update_formula():
    p = {"w": torch.nn.Parameter(torch.tensor([2.0, 4.0]))}
    ema = {"w": torch.tensor([0.0, 1.0])}
    ema_update(ema, p, 0.75)
    assert torch.allclose(ema["w"], 0.75 * torch.tensor([0.0, 1.0]) + 0.25 * torch.tensor([2.0, 4.0]))


def test_ema_after_one_step_matches_formula(rl_config):
    from pathlib import Path

    cfg = rl_config(max_steps=1, save_every=1, ema_decay=0.5)
    train(cfg, reward_fn=center_brightness)
    ckpt = Path(cfg.output_dir) / "checkpoints" / "step-1"
    theta1, ema = load_file(str(ckpt / "weights.safetensors")), load_file(str(ckpt / "ema.safetensors"))
    fresh = FillPolicy.from_pretrained(cfg.base_policy)
    theta0 = rl.setup_trainable(fresh, cfg)  # same seeded LoRA init as the run
    assert any(not torch.equal(theta0[n].detach(), theta1[n]) for n in theta1)
    for name in theta1:
        assert torch.allclose(ema[name], 0.5 * theta0[name].detach() + 0.5 * theta1[name], atol=1e-7)


def test_algorithm2_reference_uses_ema_weights(rl_config, monkeypatch):
    seen = []
    original = rl.reference_rollout

    def spy(state, *args):
        real_denoise = state.policy.denoise

        def recording_denoise(*a, **k):
            seen.append(([p.detach().clone() for p in state.params.values()],
                         [e.clone() for e in state.ema.values()]))
            return real_denoise(*a, **k)

        state.policy.denoise = recording_denoise
        try:
            policy_now = [p.detach().clone() for p in state.params.values()]
            out = original(state, *args)
        finally:
            del state.policy.denoise
        seen[-1] += (policy_now,)
        return out

    monkeypatch.setattr(recipe, "reference_rollout", spy)
    train(rl_config(algorithm=2, max_steps=3, ema_decay=0.9), reward_fn=center_brightness)
    assert len(seen) == 3
    for used, ema, _ in seen:
        assert all(torch.equal(u, e) for u, e in zip(used, ema, strict=True))
    _, ema, policy_now = seen[-1]
    assert any(not torch.equal(e, p) for e, p in zip(ema, policy_now, strict=True))


def test_algorithm1_reference_disables_the_adapter(rl_config, monkeypatch):
    states = []
    original = rl.reference_rollout

    def spy(state, *args):
        real = state.policy.denoise

        def recording(*a, **k):
            states.append(state.policy.transformer.transformer_blocks[0].attn.to_q.disable_adapters)
            return real(*a, **k)

        state.policy.denoise = recording
        try:
            return original(state, *args)
        finally:
            del state.policy.denoise

    monkeypatch.setattr(recipe, "reference_rollout", spy)
    train(rl_config(algorithm=1, max_steps=1), reward_fn=center_brightness)
    assert states == [True]


def _outputs_gap_to_base(cfg) -> float:
    """Largest pixel difference between the run's deployed weights and the base on one fixed fill."""
    from pathlib import Path

    base = FillPolicy.from_pretrained(cfg.base_policy)
    tuned = FillPolicy.from_pretrained(cfg.base_policy, weights=Path(cfg.output_dir) / "final")
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    kw = dict(seed=0, steps=3, max_sequence_length=16)
    return (tuned.generate(img, mask, ["a red cat"], **kw) - base.generate(img, mask, ["a red cat"], **kw)).abs().mean().item()


def test_velocity_anchor_keeps_the_policy_near_the_base(rl_config, tmp_path):
    from pathlib import Path

    common = dict(max_steps=6, task_probs={"fill": 1.0}, deploy_weights="policy", learning_rate=3e-2)
    free = rl_config(output_dir=str(tmp_path / "free"), **common)
    anchored = rl_config(output_dir=str(tmp_path / "anchored"), kl_weight=1e4, **common)
    train(free, reward_fn=center_brightness)
    train(anchored, reward_fn=center_brightness)

    rows = _metrics(Path(anchored.output_dir))
    assert rows[0]["velocity_anchor"] == 0.0  # the LoRA starts at the base (B = 0)
    assert max(r["velocity_anchor"] for r in rows) > 0.0
    assert all("velocity_anchor" not in r for r in _metrics(Path(free.output_dir)))
    gaps = _outputs_gap_to_base(anchored), _outputs_gap_to_base(free)
    assert gaps[0] < 0.5 * gaps[1], gaps


def test_velocity_anchor_with_full_finetuning_and_the_ema_reference_uses_a_frozen_base(rl_config):
    from pathlib import Path

    cfg = rl_config(full_finetune=True, algorithm=2, kl_weight=1.0, max_steps=2, learning_rate=1e-3)
    train(cfg, reward_fn=center_brightness)
    rows = _metrics(Path(cfg.output_dir))
    # Step 1 starts at the base; by step 2 the weights have moved away from the frozen copy.
    assert rows[0]["velocity_anchor"] == 0.0 < rows[1]["velocity_anchor"]


def test_resume_equals_uninterrupted_run(rl_config, tmp_path):
    from pathlib import Path

    straight = rl_config(max_steps=4, output_dir=str(tmp_path / "a"), deploy_weights="policy")
    train(straight, reward_fn=center_brightness)
    first = rl_config(max_steps=2, save_every=2, output_dir=str(tmp_path / "b"), deploy_weights="policy")
    train(first, reward_fn=center_brightness)
    resumed = first.replace(max_steps=4, resume=True)
    result = train(resumed, reward_fn=center_brightness)
    assert result["resumed_from"].endswith("step-2")
    a = load_file(str(Path(straight.output_dir) / "final" / "weights.safetensors"))
    b = load_file(str(Path(resumed.output_dir) / "final" / "weights.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_should_stop_checkpoints_and_raises(rl_config):
    from pathlib import Path

    calls = iter([False, True])
    cfg = rl_config(max_steps=5)
    with pytest.raises(RunCancelled) as exc:
        train(cfg, reward_fn=center_brightness, should_stop=lambda: next(calls))
    assert (Path(cfg.output_dir) / "checkpoints" / "step-1" / "state.json").is_file()
    assert exc.value.step == 1 and exc.value.checkpoint == Path(cfg.output_dir) / "checkpoints" / "step-1"
    # Saved through a temporary sibling and one rename: nothing half-written is left beside it.
    assert [p.name for p in (Path(cfg.output_dir) / "checkpoints").iterdir()] == ["step-1"]
    assert not (Path(cfg.output_dir) / "result.json").exists()


def test_reward_model_must_cover_tasks(rl_config, tmp_path):
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "onereward.json").write_text(json.dumps({"tasks": {"fill": ["structure"], "extend": ["structure"]}}))
    with pytest.raises(ValueError, match="no criteria for task.*removal"):
        train(rl_config(reward_model=str(rm)), reward_fn=center_brightness)


def _constant_rewards(values: dict[str, float]):
    """A reward that is a fixed value per criterion, plus a term carrying gradient (its value adds 0)."""

    def reward(first, second, task, criterion, prompts):
        grad_path = first.mean(dim=(1, 2, 3)) * 0
        return grad_path + values[criterion]

    return reward


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # Equal weights: the hinge mean (0.9 - 0.1 + 0.9 - 0.5) / 2 over structure and aesthetics.
        ({}, 0.6),
        # Weighted mean (3·0.8 + 1·0.4) / 4; a weight of 0 drops the criterion altogether.
        ({"fill": {"structure": 3}}, 0.7),
        ({"fill": {"aesthetics": 0}}, 0.8),
    ],
)
def test_criterion_weights_weight_the_hinge_mean(rl_config, tmp_path, weights, expected):
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "onereward.json").write_text(json.dumps({"trained_on": {"fill": ["structure", "aesthetics"]}}))
    scored = []
    values = {"structure": 0.1, "aesthetics": 0.5}

    def reward(first, second, task, criterion, prompts):
        scored.append(criterion)
        return _constant_rewards(values)(first, second, task, criterion, prompts)

    cfg = rl_config(max_steps=1, task_probs={"fill": 1.0}, reward_model=str(rm), criterion_weights=weights)
    train(cfg, reward_fn=reward)
    loss = _metrics(Path(cfg.output_dir))[-1]["loss"]
    assert loss == pytest.approx(expected, abs=1e-5)
    assert ("aesthetics" in scored) is (weights != {"fill": {"aesthetics": 0}})


def test_criterion_weights_must_leave_every_condition_a_criterion(rl_config, tmp_path):
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "onereward.json").write_text(json.dumps({"trained_on": {"extend": ["text_alignment", "structure"]}}))
    # The fixture's extend conditions include a prompt-free one: text alignment alone cannot score it.
    cfg = rl_config(task_probs={"extend": 1.0}, reward_model=str(rm), criterion_weights={"extend": {"structure": 0}})
    with pytest.raises(ValueError, match="prompt-free condition"):
        train(cfg, reward_fn=center_brightness)
    # Consistency and aesthetics keep weight 1, but this reward model does not score them.
    cfg = rl_config(task_probs={"extend": 1.0}, reward_model=str(rm),
                    criterion_weights={"extend": {"structure": 0, "text_alignment": 0}})
    with pytest.raises(ValueError, match="leave task 'extend' no criterion"):
        train(cfg, reward_fn=center_brightness)


def test_missing_task_conditions_error(rl_config, tmp_path):
    from .conftest import write_conditions

    only_fill = write_conditions(tmp_path / "c", [{"task": "fill", "prompt": "x"}])
    with pytest.raises(ValueError, match="no conditions for task"):
        train(rl_config(conditions_dir=str(only_fill)), reward_fn=center_brightness)


def test_bf16_on_cpu_is_an_error(rl_config):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(rl_config(mixed_precision="bf16", device="cpu"), reward_fn=center_brightness)


def test_rl_with_real_tiny_reward_model(rl_config, tmp_path):
    pytest.importorskip("rewardtrain.engine.scorer")
    from pathlib import Path

    from rewardtrain.engine.template import TEMPLATE_VERSION
    from rewardtrain.engine.tiny import build_tiny_reward_model

    rm = build_tiny_reward_model(tmp_path / "rm", seed=0)
    tasks = {"fill": ["text_alignment", "structure"], "extend": ["aesthetics"], "removal": ["removal_quality"]}
    (rm / "onereward.json").write_text(json.dumps({"template_version": TEMPLATE_VERSION, "tasks": tasks}))
    events = []
    cfg = rl_config(reward_model=str(rm), max_steps=2, gradient_checkpointing=True)
    train(cfg, progress=events.append)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in events)
    assert all(e["grad_norm"] > 0 for e in events)
    rows = _metrics(Path(cfg.output_dir))
    rewards = [v for r in rows for k, v in r.items() if k.startswith("reward/")]
    assert rewards
    assert all(0.0 <= v <= 1.0 for v in rewards)


def test_init_weights_start_the_lora_at_a_checkpoint(rl_config, tmp_path):
    from policytrain.engine.config import RLConfig

    first = rl_config(max_steps=2, output_dir=str(tmp_path / "a"), deploy_weights="policy")
    train(first, reward_fn=center_brightness)
    final = Path(first.output_dir) / "final"
    saved = load_file(str(final / "weights.safetensors"))
    follow = rl_config(output_dir=str(tmp_path / "b"), init_weights=str(final), algorithm=2, max_steps=1)
    policy = FillPolicy.from_pretrained(follow.base_policy)
    params = rl.setup_trainable(policy, follow)
    assert not all(torch.equal(params[k].detach(), saved[k].float()) for k in saved)  # a fresh adapter differs
    rl.load_init_weights(policy, follow)
    assert saved.keys() == params.keys() and all(torch.equal(params[k].detach(), saved[k].float()) for k in saved)
    assert train(follow, reward_fn=center_brightness)["status"] == "completed"

    with pytest.raises(ValueError, match="set lora_rank, lora_alpha and lora_targets to match"):
        train(rl_config(output_dir=str(tmp_path / "c"), init_weights=str(final), lora_rank=8),
              reward_fn=center_brightness)
    with pytest.raises(ValueError, match="not a policy weights folder"):
        train(rl_config(output_dir=str(tmp_path / "d"), init_weights=str(tmp_path)), reward_fn=center_brightness)
    with pytest.raises(ValueError, match="full fine-tune starts from base_policy"):
        RLConfig(base_policy="b", conditions_dir="c", output_dir="o", init_weights=str(final), full_finetune=True)
