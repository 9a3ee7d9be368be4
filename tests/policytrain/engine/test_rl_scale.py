"""The RL step at real size, as far as CPU can prove it (issue #19): one batched reward forward
over every criterion with a checkpointed LM, prompt embeddings off the accelerator, aspect-ratio
buckets, the memory plan before loading, and the held-out reward curve."""

import json
from pathlib import Path

import pytest
import torch

from policytrain.engine import recipe, rl
from policytrain.engine.rl import train

from .conftest import center_brightness


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


def _write_sized(root: Path, rows: list[dict]) -> Path:
    """A conditions folder whose rows give their own image ``size`` (width, height) and split."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        w, h = row.pop("size")
        Image.fromarray((np.random.default_rng(i).random((h, w, 3)) * 200).astype(np.uint8)).save(root / f"images/s{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
        Image.fromarray(mask).save(root / f"images/m{i}.png")
        lines.append(json.dumps({"id": f"c{i}", "source": f"images/s{i}.png", "mask": f"images/m{i}.png",
                                 "split": "train", **row}))
    (root / "conditions.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(("buckets", "expected"), [(3, (48, 96)), (1, (64, 64))])
def test_a_two_to_one_extend_condition_trains_in_a_two_to_one_bucket(rl_config, tmp_path, buckets, expected):
    folder = _write_sized(tmp_path / "c", [{"task": "extend", "prompt": "a tree", "size": (128, 64)}])
    seen = []

    def recording(first, second, task, criterion, prompts):
        seen.append(tuple(first.shape[-2:]))
        return center_brightness(first, second, task, criterion, prompts)

    cfg = rl_config(conditions_dir=str(folder), task_probs={"extend": 1.0}, max_steps=1, batch_size=1,
                    aspect_buckets=buckets, eval_every=0)
    train(cfg, reward_fn=recording)
    assert seen and set(seen) == {expected}  # (height, width): 2:1 kept, ~64² pixels; 1 bucket = the old square


def test_prompt_embeddings_live_on_the_cpu_text_encoders_are_freed_and_the_disk_cache_is_reused(
    rl_config, monkeypatch
):
    from diffusers import FluxFillPipeline

    from policytrain.engine.pipeline import FillPolicy

    policies, loads = [], []
    real_prepare, real_load = rl.prepare_prompt_embeds, FillPolicy.from_pretrained.__func__

    def spy_prepare(policy, *args, **kwargs):
        policies.append(policy)
        return real_prepare(policy, *args, **kwargs)

    def spy_load(cls, *args, **kwargs):
        loads.append(kwargs.get("load_text_encoders", True))
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(recipe, "prepare_prompt_embeds", spy_prepare)
    monkeypatch.setattr(FillPolicy, "from_pretrained", classmethod(spy_load))
    cfg = rl_config(max_steps=1, save_every=1, eval_every=0)
    train(cfg, reward_fn=center_brightness)
    policy = policies[-1]
    assert policy.pipe.text_encoder is None and policy.pipe.text_encoder_2 is None and not policy.has_text_encoders
    assert policy._prompt_cache and all(e.prompt_embeds.device.type == "cpu" for e in policy._prompt_cache.values())
    cache = Path(cfg.output_dir) / rl.PROMPT_EMBEDS_DIR
    distinct = {c.policy_prompt for c in rl.load_conditions(cfg.conditions_dir, "train")}
    assert len(list(cache.glob("*.safetensors"))) == len(distinct)

    # Resume: every prompt is on disk, so the text encoders are not even loaded and nothing is encoded.
    def no_encoding(*args, **kwargs):
        raise AssertionError("a prompt was encoded again")

    monkeypatch.setattr(FluxFillPipeline, "encode_prompt", no_encoding)
    train(cfg.replace(max_steps=2, resume=True), reward_fn=center_brightness)
    assert loads == [True, False]


def test_memory_plan_counts_parameters_on_the_meta_device_and_refuses_an_over_budget_run(rl_config, monkeypatch):
    from policytrain.engine.memory import memory_plan
    from policytrain.engine.pipeline import FillPolicy

    cfg = rl_config()
    plan = {c["name"]: c for c in memory_plan(cfg, use_bf16=False)["components"]}
    real = FillPolicy.from_pretrained(cfg.base_policy)
    assert plan["policy transformer"]["params"] == sum(p.numel() for p in real.transformer.parameters())
    assert plan["vae"]["params"] == sum(p.numel() for p in real.vae.parameters())
    assert plan["text_encoder_2"]["params"] == sum(p.numel() for p in real.pipe.text_encoder_2.parameters())
    real.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
    lora = sum(p.numel() for n, p in real.transformer.named_parameters() if "lora_" in n)
    assert plan["policy transformer"]["trainable"] == lora
    assert plan["policy transformer"]["optimizer"] == 8 * lora  # two fp32 AdamW moments
    full = {c["name"]: c for c in memory_plan(cfg.replace(full_finetune=True), use_bf16=True)["components"]}
    assert full["policy transformer"]["trainable"] == plan["policy transformer"]["params"]
    assert "frozen reference transformer" in full  # Algorithm 1's base copy of a full fine-tune

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the memory plan was checked")

    monkeypatch.setattr(FillPolicy, "from_pretrained", must_not_load)
    with pytest.raises(ValueError, match=r"memory plan needs about .* above memory_budget_gb=1e-06"):
        train(rl_config(memory_budget_gb=1e-6), reward_fn=center_brightness)


def test_heldout_reward_curve_is_logged_at_every_eval_step(rl_config, tmp_path):
    rows = [{"task": "fill", "prompt": "a red cat", "size": (64, 64)},
            {"task": "fill", "prompt": "a blue sky", "size": (64, 64), "split": "val"}]
    folder = _write_sized(tmp_path / "c", rows)
    events = []
    cfg = rl_config(conditions_dir=str(folder), task_probs={"fill": 1.0}, max_steps=3, eval_every=2, batch_size=1)
    train(cfg, reward_fn=center_brightness, progress=events.append)
    metrics = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2]
    assert evals[0]["split"] == "val"
    assert 0.0 <= evals[0]["eval/reward/fill"] <= 1.0
    assert evals[0]["eval/reward/fill"] == pytest.approx(
        (evals[0]["eval/reward/fill/structure"] + evals[0]["eval/reward/fill/aesthetics"]) / 2
    )
    assert [e["step"] for e in events if e.get("kind") == "eval"] == [2]


def test_memory_plan_at_real_size_on_the_meta_device(tmp_path):
    """FLUX.1-Fill-dev and Qwen2.5-VL-7B shapes, built on the meta device: the counts are the GPU bench's."""
    from transformers import Qwen2_5_VLConfig

    from policytrain.engine.config import RLConfig
    from policytrain.engine.memory import GIB, check_budget, format_plan, memory_plan

    flux = tmp_path / "flux"
    for sub, cfg in {
        "transformer": {"_class_name": "FluxTransformer2DModel", "attention_head_dim": 128, "guidance_embeds": True,
                        "in_channels": 384, "out_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
                        "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
                        "axes_dims_rope": [16, 56, 56]},
        "vae": {"_class_name": "AutoencoderKL", "latent_channels": 16, "block_out_channels": [128, 256, 512, 512],
                "layers_per_block": 2, "down_block_types": ["DownEncoderBlock2D"] * 4,
                "up_block_types": ["UpDecoderBlock2D"] * 4, "use_quant_conv": False, "use_post_quant_conv": False},
    }.items():
        (flux / sub).mkdir(parents=True)
        (flux / sub / "config.json").write_text(json.dumps(cfg))
    Qwen2_5_VLConfig(
        text_config={"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                     "num_key_value_heads": 4, "vocab_size": 152064,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31]},
    ).save_pretrained(tmp_path / "rm")
    cfg = RLConfig(base_policy=str(flux), conditions_dir="unused", output_dir="unused", reward_model=str(tmp_path / "rm"),
                   lora_rank=64, batch_size=1)
    plan = memory_plan(cfg, use_bf16=True, criteria_per_task=2)
    parts = {c["name"]: c for c in plan["components"]}
    assert parts["policy transformer"]["params"] == 11_902_391_360  # + LoRA r=64 = the bench's 12.007 B
    assert parts["reward model"]["params"] == 8_292_166_656  # the bench's 8.292 B
    lora = parts["policy transformer"]["trainable"]
    assert 100e6 < lora < 110e6  # the bench's 104.6 M trainable
    assert parts["policy transformer"]["weights"] == 2 * 11_902_391_360 + 4 * lora  # bf16 base + fp32 adapter
    assert parts["reward model"]["weights"] == 2 * 8_292_166_656
    assert 35 < plan["peak_gib"] < 60  # the bench measured 41.6 GiB for one criterion
    check_budget({**plan, "budget_gib": 80})
    with pytest.raises(ValueError, match="policy transformer"):
        check_budget({**plan, "budget_gib": 40})
    fp32 = memory_plan(cfg.replace(reward_gradient_checkpointing=False), use_bf16=False, criteria_per_task=2)
    assert fp32["peak_gib"] > plan["peak_gib"] + 40  # what RL loaded before: fp32, no checkpointing
    assert fp32["peak_gib"] * GIB == pytest.approx(sum(c["total"] for c in fp32["components"]))

    # A full fine-tune (Algorithm 1: fp32 masters, grads, AdamW, EMA and a frozen reference) needs
    # ~270 GiB on one device; FSDP over 8 ranks divides all of that, each rank its share of the batch.
    full = cfg.replace(full_finetune=True, parallelism="fsdp", batch_size=8)
    alone = memory_plan(full, use_bf16=True, criteria_per_task=2, world_size=1)
    sharded = memory_plan(full, use_bf16=True, criteria_per_task=2, world_size=8)
    print(format_plan(sharded))
    print(f"\nfull fine-tune plan: {alone['peak_gib']:.1f} GiB on one device, {sharded['peak_gib']:.1f} GiB per rank of 8")
    assert alone["peak_gib"] > 250
    assert sharded["sharded_over"] == 8 and sharded["peak_gib"] < 80


def test_rl_loads_the_reward_model_as_benchmarked_and_scores_a_batch_in_one_forward(rl_config, tmp_path, monkeypatch):
    from rewardtrain.engine.scorer import RewardScorer
    from rewardtrain.engine.template import TEMPLATE_VERSION
    from rewardtrain.engine.tiny import build_tiny_reward_model

    rm = build_tiny_reward_model(tmp_path / "rm", seed=0)
    (rm / "onereward.json").write_text(json.dumps({"template_version": TEMPLATE_VERSION,
                                                    "trained_on": {"fill": ["text_alignment", "structure"]}}))
    loaded = rl.load_reward_fn(rl_config(reward_model=str(rm)), torch.device("cpu"), torch.bfloat16)
    assert loaded.scorer.dtype == torch.bfloat16 and loaded.scorer._checkpointed_layers
    assert not any(p.requires_grad for p in loaded.scorer.model.parameters())

    calls = []
    real = RewardScorer.differentiable

    def counting(self, first, second, task, criterion, *args, **kwargs):
        calls.append(list(criterion) if not isinstance(criterion, str) else [criterion])
        return real(self, first, second, task, criterion, *args, **kwargs)

    monkeypatch.setattr(RewardScorer, "differentiable", counting)
    cfg = rl_config(reward_model=str(rm), task_probs={"fill": 1.0}, max_steps=1, eval_every=0)
    train(cfg)
    assert len(calls) == 1  # one forward for both criteria of the step
    assert sorted(set(calls[0])) == ["structure", "text_alignment"] and len(calls[0]) == 2 * cfg.batch_size
