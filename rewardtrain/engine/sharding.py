"""FSDP2 sharding for the reward trainer (``parallelism="fsdp"``).

Every Qwen2.5-VL decoder layer and vision block becomes its own shard unit, and the root takes
the rest (embeddings, merger, norm, lm_head). The sharding itself, the mixed-precision policy and
both checkpoint formats ("dcp" shards and the older "full" gather to rank 0) are the engine kit's
(``enginekit.sharding``), shared with the RL engine; this module only names the reward model's units.
"""
from __future__ import annotations

import torch

from enginekit.sharding import (  # noqa: F401 - the reward trainer's sharding interface
    DCP_DIR,
    full_model_state,
    full_optimizer_state,
    load_dcp_state,
    load_full_state,
    mixed_precision_policy,
    save_dcp_state,
    shard_modules,
)

#: Module classes that become their own FSDP unit (their parameters are gathered together).
SHARD_UNIT_CLASSES = ("Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock")


def shard_model(model: torch.nn.Module, device: torch.device, compute_dtype: torch.dtype = torch.float32) -> int:
    """Shard the reward model (``enginekit.sharding.shard_modules`` over its decoder layers and
    vision blocks); returns the number of units. Call it after LoRA is attached, ``requires_grad``
    is set and trainable weights are fp32, and before the optimizer is built."""
    return shard_modules(model, device, SHARD_UNIT_CLASSES, compute_dtype)
