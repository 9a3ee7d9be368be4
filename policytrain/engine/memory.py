"""The memory plan of an RL run, estimated before any weight is loaded.

Each model is built from its config on the meta device (``torch.device("meta")``: shapes without
storage), so counting a 12B transformer's or a 7B reward model's parameters costs no memory and no
read of the weights. From the counts and the run's configuration the plan gives, per component,
weights, gradients, optimizer state (AdamW: two fp32 moments), the fp32 EMA, and a rough estimate
of the activations the grad-enabled step keeps. Parameter bytes are exact; activations are an
order-of-magnitude estimate (documented factors below), which is what a budget check needs: it
catches a 7B reward model in fp32 without checkpointing, not a 5 % overshoot.

Under ``parallelism`` "fsdp" the transformer's fp32 masters, gradients, AdamW moments, EMA and
Algorithm 1's frozen reference are split over the ranks (1/N each), and each rank additionally
holds the blocks FSDP has all-gathered in the compute dtype (the running one and the prefetched
next one); the VAE, the reward model and the activations of this rank's rows are not sharded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .config import RLConfig

logger = logging.getLogger(__name__)

GIB = 1024**3
#: Tensors a transformer block keeps for its backward, in units of its input (B·T·D): q, k, v,
#: attention output, the 4x MLP input and activation, norms and residuals. Rough, on purpose.
BLOCK_ACTIVATION_FACTOR = 16


@dataclass(frozen=True)
class Component:
    """One model's share of device memory, in bytes."""

    name: str
    params: int
    weights: int
    trainable: int = 0
    grads: int = 0
    optimizer: int = 0
    ema: int = 0
    activations: int = 0
    at_start_only: bool = False  # freed before the first step (text encoders)

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.ema + self.activations


def meta_param_count(build) -> tuple[int, torch.nn.Module]:
    """Build a module on the meta device and count its parameters (no storage allocated)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters()), module


def lora_param_count(module: torch.nn.Module, rank: int, targets) -> int:
    """Parameters a peft LoRA of ``rank`` adds on ``targets`` (peft's suffix match): r·(in + out) per Linear."""
    total = 0
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (sub.in_features + sub.out_features)
    return total


def _largest_block(transformer: torch.nn.Module) -> int:
    """Parameters of the biggest FLUX block: what FSDP all-gathers at once for one unit."""
    blocks = list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)
    return max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0)


def _policy_components(config: RLConfig, compute_bytes: int, use_bf16: bool, world_size: int = 1) -> list[Component]:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import AutoConfig, CLIPTextModel, T5EncoderModel

    root = config.base_policy
    tr_cfg = FluxTransformer2DModel.load_config(root, subfolder="transformer")
    vae_cfg = AutoencoderKL.load_config(root, subfolder="vae")
    n_tr, transformer = meta_param_count(lambda: FluxTransformer2DModel.from_config(tr_cfg))
    n_vae, _ = meta_param_count(lambda: AutoencoderKL.from_config(vae_cfg))
    # Full fine-tuning holds fp32 masters (bf16 autocast computes); LoRA keeps the frozen base in bf16.
    weight_bytes = 4 if config.full_finetune or not use_bf16 else 2
    trainable = n_tr if config.full_finetune else lora_param_count(transformer, config.lora_rank, config.lora_targets)
    shards = world_size if config.parallelism == "fsdp" else 1
    # Under FSDP the batch is global: each rank computes its share of the rows.
    batch, res = max(1, config.batch_size // shards), config.resolution
    tokens = (res // 16) ** 2 + config.max_sequence_length
    hidden = tr_cfg["num_attention_heads"] * tr_cfg["attention_head_dim"]
    blocks = tr_cfg["num_layers"] + tr_cfg["num_single_layers"]
    unit = batch * tokens * hidden * compute_bytes
    # Checkpointed: every block's input plus one block's internals; otherwise every block's internals.
    act_tr = (blocks + BLOCK_ACTIVATION_FACTOR) * unit if config.gradient_checkpointing else (
        blocks * BLOCK_ACTIVATION_FACTOR * unit)
    # The VAE decode with grad: per resolution level, (layers_per_block + 1) resnets of ~4 saved maps.
    channels = vae_cfg["block_out_channels"]
    levels = len(channels)
    act_vae = sum(batch * c * (res // 2 ** (levels - 1 - i)) ** 2 * compute_bytes * (vae_cfg["layers_per_block"] + 1) * 4
                  for i, c in enumerate(reversed(channels)))
    if config.gradient_checkpointing:
        act_vae //= vae_cfg["layers_per_block"] + 1
    # Trainable params are fp32; a LoRA adds its own fp32 weights beside the frozen base.
    extra = 0 if config.full_finetune else trainable * 4
    # Sharded: 1/N of every per-parameter byte, plus two gathered blocks (running + prefetched).
    gathered = 2 * _largest_block(transformer) * compute_bytes if shards > 1 else 0
    out = [Component("policy transformer", n_tr, (n_tr * weight_bytes + extra) // shards + gathered, trainable,
                     trainable * 4 // shards, trainable * 8 // shards, trainable * 4 // shards, act_tr),
           Component("vae", n_vae, n_vae * compute_bytes, activations=act_vae)]
    if config.full_finetune and (config.algorithm == 1 or config.kl_weight > 0):
        out.append(Component("frozen reference transformer", n_tr, n_tr * 4 // shards + gathered))
    for sub, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", T5EncoderModel)):
        try:
            enc_cfg = AutoConfig.from_pretrained(root, subfolder=sub)
        except (OSError, ValueError):
            continue
        n, _ = meta_param_count(lambda cls=cls, enc_cfg=enc_cfg: cls(enc_cfg))
        out.append(Component(sub, n, n * compute_bytes, at_start_only=True))
    return out


def _reward_component(config: RLConfig, compute_bytes: int, criteria_per_task: int, world_size: int = 1) -> Component:
    from transformers import AutoConfig, AutoModelForImageTextToText

    rm_cfg = AutoConfig.from_pretrained(config.reward_model)
    n, _ = meta_param_count(lambda: AutoModelForImageTextToText.from_config(rm_cfg))
    text, vision = rm_cfg.text_config, rm_cfg.vision_config
    per_rank = config.batch_size // world_size if config.parallelism == "fsdp" else config.batch_size
    rows = max(1, per_rank) * max(1, criteria_per_task)  # every criterion's query in one forward
    patch = getattr(vision, "patch_size", 14)
    merge = getattr(vision, "spatial_merge_size", 2)
    # Two images per query at about the policy's resolution (the processor's pixel budget may cap it).
    patches = 2 * (config.resolution // patch) ** 2
    seq = patches // merge**2 + 128
    lm_unit = rows * seq * text.hidden_size * compute_bytes
    layers = text.num_hidden_layers
    act_lm = ((layers + BLOCK_ACTIVATION_FACTOR) * lm_unit if config.reward_gradient_checkpointing
              else layers * BLOCK_ACTIVATION_FACTOR * lm_unit)
    act_vision = getattr(vision, "depth", 0) * BLOCK_ACTIVATION_FACTOR * rows * patches * vision.hidden_size * compute_bytes
    return Component("reward model", n, n * compute_bytes, activations=act_lm + act_vision)


def memory_plan(config: RLConfig, use_bf16: bool, criteria_per_task: int = 1, with_reward: bool = True,
                world_size: int = 1) -> dict:
    """The run's per-device memory plan (bytes per component, GiB totals), from configs on the meta device.

    ``with_reward`` False leaves the reward model out (a reward function given in code is not loaded).
    ``world_size`` is the number of ranks; it divides the transformer's state under "fsdp" only.
    """
    compute_bytes = 2 if use_bf16 else 4
    components = _policy_components(config, compute_bytes, use_bf16, world_size)
    if config.reward_model and with_reward:
        components.append(_reward_component(config, compute_bytes, criteria_per_task, world_size))
    steady = sum(c.total for c in components if not c.at_start_only)
    # While prompts are encoded, the text encoders sit beside every other model's weights.
    start = sum(c.weights for c in components)
    peak = max(steady, start)
    return {
        "components": [dict(c.__dict__, total=c.total) for c in components],
        "steady_gib": steady / GIB,
        "start_gib": start / GIB,
        "peak_gib": peak / GIB,
        "budget_gib": config.memory_budget_gb,
        "world_size": world_size,
        "sharded_over": world_size if config.parallelism == "fsdp" else 1,
        "note": "parameters counted exactly on the meta device; activations are a rough estimate",
    }


def format_plan(plan: dict) -> str:
    """The plan as a small table for the log."""
    lines = [f"{'component':30s} {'params':>12s} {'weights':>9s} {'grads':>8s} {'optim':>8s} {'ema':>8s} {'activ':>8s}"]
    for c in plan["components"]:
        lines.append(f"{c['name']:30s} {c['params']:12,d} " + " ".join(
            f"{c[k] / GIB:8.2f}G" if k == "weights" else f"{c[k] / GIB:7.2f}G"
            for k in ("weights", "grads", "optimizer", "ema", "activations")))
    lines.append(f"peak {plan['peak_gib']:.2f} GiB (steady {plan['steady_gib']:.2f}, while encoding prompts "
                 f"{plan['start_gib']:.2f})")
    return "\n".join(lines)


def check_budget(plan: dict) -> None:
    """Refuse a run whose plan exceeds ``memory_budget_gb``, naming the biggest components."""
    budget = plan["budget_gib"]
    if budget is None or plan["peak_gib"] <= budget:
        return
    biggest = sorted(plan["components"], key=lambda c: -c["total"])[:3]
    parts = ", ".join(f"{c['name']} {c['total'] / GIB:.2f} GiB" for c in biggest)
    raise ValueError(
        f"memory plan needs about {plan['peak_gib']:.2f} GiB per device, above memory_budget_gb={budget:g} "
        f"({parts}); use LoRA, gradient_checkpointing, a smaller batch_size or resolution, or more devices"
    )
