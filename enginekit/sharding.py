"""FSDP2 sharding and sharded checkpoints, shared by the training engines.

An engine names the module classes that become their own shard unit (a decoder layer, a
transformer block); ``shard_modules`` wraps each of them, then the root, with torch's
``fully_shard``. Parameters, gradients and AdamW states then live in 1/N slices on each rank,
and each unit is all-gathered only while it runs: that is what lets a full fine-tune fit GPUs
that cannot hold weights, gradients and moments whole.

Checkpoints come in two formats, both keyed by parameter names and so independent of how many
ranks wrote them. "dcp" (``save_dcp_state`` / ``load_dcp_state``): torch.distributed.checkpoint,
each rank writing its own shards of the trainable weights, the AdamW moments and any extra
sharded tensors (an EMA), and any number of ranks (one included, with or without FSDP) reading
back the slices it owns: nothing is gathered whole anywhere. "full" (``full_model_state`` /
``load_full_state``): the state is gathered to rank 0's CPU on save and scattered back from a
full copy on every rank on load. All functions here are collective: every rank must call them.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

#: Sub-folder of a "dcp" checkpoint that holds the torch.distributed.checkpoint files.
DCP_DIR = "dcp"


def mixed_precision_policy(compute_dtype: torch.dtype):
    """FSDP2's policy for ``compute_dtype``: None (plain fp32) or all-gather and compute in
    ``compute_dtype`` with gradients reduced in fp32 into the fp32 sharded master weights.

    The sharded parameters (what AdamW updates) keep their own dtype, so the optimizer step and
    its moments stay fp32; only the gathered copies used for forward and backward are low precision.
    Reducing in fp32 keeps the sum over ranks from losing the small gradients a bf16 sum rounds away.
    """
    if compute_dtype == torch.float32:
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)


def shard_modules(
    model: torch.nn.Module,
    device: torch.device,
    unit_classes: Iterable[str],
    compute_dtype: torch.dtype = torch.float32,
) -> int:
    """Apply ``fully_shard`` to every submodule whose class name is in ``unit_classes``, then to
    the root; returns the number of units.

    Call it after ``requires_grad`` is set and trainable weights are fp32, and before the
    optimizer is built: the optimizer must see the sharded parameters. ``compute_dtype`` other
    than fp32 applies ``mixed_precision_policy``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    names = tuple(unit_classes)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    units = [m for m in model.modules() if type(m).__name__ in names]
    if not units:
        raise ValueError(f"parallelism 'fsdp' found none of {', '.join(names)} in the model")
    policy = mixed_precision_policy(compute_dtype)
    kwargs = {"mp_policy": policy} if policy is not None else {}
    for unit in units:
        fully_shard(unit, mesh=mesh, **kwargs)
    fully_shard(model, mesh=mesh, **kwargs)
    return len(units)


def _gathered(*, trainable_only: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)


def full_model_state(model: torch.nn.Module, *, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The whole (or only the trainable) state gathered on rank 0's CPU; other ranks get ``{}``."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_gathered(trainable_only=trainable_only))


def full_tensors(tensors: dict[str, torch.Tensor], *, is_main: bool) -> dict[str, torch.Tensor]:
    """Sharded tensors kept beside a model (an EMA) gathered whole, one at a time, on rank 0's
    CPU (``{}`` elsewhere); plain tensors are copied as they are. Collective for sharded ones."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, tensor in tensors.items():
        whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor.detach()
        if is_main:
            out[name] = whole.to("cpu", copy=True).contiguous()
    return out


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter names, gathered on rank 0's CPU (``{}`` elsewhere)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_gathered())


def load_full_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
) -> None:
    """Scatter full state dicts (the same on every rank) into the sharded model and optimizer.

    ``model_state`` may hold only the trainable weights (frozen ones come from the base model).
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in model_state]
    if missing:
        raise ValueError(f"checkpoint lacks trainable weights, e.g. {missing[:3]}")
    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True, strict=False))
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))


def _dcp_options(*, strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Frozen weights come from the base model on load: a LoRA checkpoint holds adapters only.
    return StateDictOptions(ignore_frozen_params=True, strict=strict)


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns on every single-process save and load even when asked for one (``no_dist``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def save_dcp_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    folder: Path,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write the trainable weights, the optimizer state and ``extra`` ({group: {name: tensor}},
    e.g. a sharded EMA) with torch.distributed.checkpoint into ``folder``: each rank writes its own
    shards (replicated tensors once), rank 0 the metadata. Works sharded (FSDP2), replicated (DDP,
    pass the unwrapped model) and in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_dcp_options())
    state = {"model": model_state, "optimizer": optim_state, **(extra or {})}
    with _single_process_quiet():
        dcp.save(state, checkpoint_id=str(folder), no_dist=not dist.is_initialized())


def load_dcp_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    folder: Path,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """Read what ``save_dcp_state`` wrote, on any number of ranks: DCP reshards from the saved
    global offsets into whatever this model's parameters are (FSDP slices or whole tensors).
    ``extra`` tensors are filled in place (they must have the saved groups' names and shapes).

    A fresh optimizer has no state to read into; ``get_state_dict`` allocates it first (one AdamW
    step at lr 0 with zero gradients, which moves no weight)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_dcp_options())
    state = {"model": model_state, "optimizer": optim_state, **(extra or {})}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=_dcp_options(strict=False))
