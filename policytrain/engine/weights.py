"""Trainable weights, their EMA, and the reference and base models of a step.

``TrainState`` is everything a step mutates and a checkpoint stores. Under FSDP (a sharded full
fine-tune) ``params`` and ``ema`` are DTensors holding this rank's slices: the EMA update and the
weight swap that runs the EMA model are then element-wise on the local shards, with no gather.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import RLConfig
from .onestep import OneStepOutput
from .pipeline import FillPolicy


def ema_update(ema: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter], decay: float) -> None:
    """ema ← τ·ema + (1−τ)·θ, in place."""
    with torch.no_grad():
        for name, param in params.items():
            ema[name].mul_(decay).add_(param.detach().to(ema[name].dtype), alpha=1.0 - decay)


@contextmanager
def swapped_weights(params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor],
                    module: torch.nn.Module | None = None) -> Iterator[None]:
    """Temporarily copy ``values`` into ``params`` (used to run the EMA model with the policy's memory).

    ``module`` is the model the params belong to: if it is FSDP-sharded, its gathered copies are
    dropped around the swap, since FSDP keeps the root unit gathered after a forward and would
    otherwise run the next forward on the values from before the swap."""
    backup = {name: p.detach().clone() for name, p in params.items()}
    reshard(module)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name])
    try:
        yield
    finally:
        reshard(module)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(backup[name])


def reshard(module: torch.nn.Module | None) -> None:
    """Free FSDP's all-gathered parameters of every sharded unit in ``module`` (none: nothing to do),
    so that the next forward gathers the sharded values as they are now."""
    if module is None:
        return
    from torch.distributed.fsdp import FSDPModule

    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


@dataclass
class TrainState:
    """Everything a step mutates, and what a checkpoint stores."""

    config: RLConfig
    policy: FillPolicy
    params: dict[str, torch.nn.Parameter]
    ema: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    frozen_reference: torch.nn.Module | None = None
    step: int = 0
    extra: dict = field(default_factory=dict)

    @contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """Make ``policy.transformer`` act as the reference model for the duration of the block."""
        if self.config.algorithm == 2:
            with swapped_weights(self.params, self.ema, self.policy.transformer):
                yield self.policy.transformer
        else:
            with self.base() as base:
                yield base

    @contextmanager
    def base(self) -> Iterator[torch.nn.Module]:
        """Make ``policy.transformer`` act as the base model (Algorithm 1's reference, the anchor's target)."""
        if self.frozen_reference is not None:
            pipe = self.policy.pipe
            live = pipe.transformer
            pipe.transformer = self.frozen_reference
            try:
                yield self.frozen_reference
            finally:
                pipe.transformer = live
        else:
            # LoRA: the base model is the same module with adapters off (no second 12B copy).
            self.policy.transformer.disable_adapters()
            try:
                yield self.policy.transformer
            finally:
                self.policy.transformer.enable_adapters()
                for p in self.params.values():
                    p.requires_grad_(True)


def setup_trainable(policy: FillPolicy, config: RLConfig) -> dict[str, torch.nn.Parameter]:
    """Add LoRA (seeded) or unfreeze the transformer; trainable params are kept in fp32."""
    if config.full_finetune:
        policy.transformer.requires_grad_(True)
    else:
        torch.manual_seed(config.seed)
        policy.add_lora(config.lora_rank, config.lora_alpha, config.lora_targets)
    params = {n: p for n, p in policy.transformer.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"no trainable parameters: lora_targets {list(config.lora_targets)} matched no module")
    for p in params.values():
        p.data = p.data.float()
    return params


def reference_rollout(state: TrainState, noise, inputs, embeds, negative, schedule) -> torch.Tensor:
    """Fully denoise the reference sample (no grad) and decode it to [0,1] images."""
    cfg = state.config
    with torch.no_grad(), state.reference():
        latents = state.policy.denoise(
            noise, inputs, embeds, schedule, None, cfg.guidance, cfg.reference_true_cfg, negative
        )
        return state.policy.decode(latents, inputs.height, inputs.width)


def velocity_anchor(state: TrainState, pol: OneStepOutput, inputs, embeds, schedule, autocast) -> torch.Tensor:
    """mean((v_policy − v_base)²) at the policy's grad-enabled step: the optional pull back to the base.

    For rectified flows the KL between policy and base sampling steps is proportional to this squared
    velocity gap (the penalty Flow-GRPO uses); here it is taken at the one step that carries gradient.
    """
    cfg = state.config
    with torch.no_grad(), state.base(), autocast():
        v_base = state.policy.velocity(pol.x_k, inputs, schedule.timesteps[pol.k], embeds, cfg.guidance)
    return F.mse_loss(pol.velocity.float(), v_base.float())
