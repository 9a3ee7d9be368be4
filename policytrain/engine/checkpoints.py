"""RL checkpoints and the deployable ``final/`` folder.

Two layouts, both published atomically as ``checkpoints/step-<n>/`` with ``state.json`` written
last (``enginekit.checkpoints``):

- LoRA or an unsharded full fine-tune (``parallelism`` "ddp"): rank 0 writes the trainable weights
  (``weights.safetensors``, loadable by ``FillPolicy``), the EMA, the optimizer and the RNG state.
- ``parallelism`` "fsdp": every rank writes its own shards of the weights, AdamW moments and EMA
  with torch.distributed.checkpoint into ``dcp/`` (nothing gathered), rank 0 every rank's RNG
  state and the marker. DCP reshards on load, so it resumes on another number of ranks.

``final/`` is gathered once, at the end: the fp32 weights (EMA or policy) on rank 0's CPU, written
as a plain ``transformer/`` folder that loads without any sharding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from contracts.cards import write_policy_card
from enginekit.checkpoints import atomic_folder, checkpoint_dir, shared_atomic_folder
from enginekit.checkpoints import latest_checkpoint as kit_latest_checkpoint
from enginekit.runs import DistEnv, gather_objects, rng_state, set_rng_state
from enginekit.sharding import DCP_DIR, full_model_state, full_tensors, load_dcp_state, save_dcp_state

from .config import RLConfig, read_policy_meta
from .pipeline import FillPolicy, save_policy_weights, tensor_to_pil
from .weights import TrainState, swapped_weights

CHECKPOINT_MARKER = "state.json"  # written last: its presence marks a complete checkpoint
#: The file diffusers' ``FluxTransformer2DModel.from_pretrained`` reads from a ``transformer/`` folder.
TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"


def weights_meta(config: RLConfig) -> tuple[str, dict | None]:
    """(kind, LoRA shape) of the run's trainable weights, as the policy card records them."""
    if config.full_finetune:
        return "full", None
    return "lora", {"rank": config.lora_rank, "alpha": config.lora_alpha, "targets": list(config.lora_targets)}


def load_init_weights(policy: FillPolicy, config: RLConfig) -> dict:
    """Start the trainable LoRA weights from ``config.init_weights`` (a LoRA policy weights folder,
    e.g. a checkpoint's ``final/``). Its LoRA shape must be this run's: the weights are copied
    into the adapter ``setup_trainable`` made, so the optimiser and EMA see them as the start."""
    folder = Path(config.init_weights)
    meta = read_policy_meta(folder)
    _, lora = weights_meta(config)
    if meta.get("kind") != "lora" or meta.get("lora") != lora:
        raise ValueError(f"init_weights {folder} holds {meta.get('kind')} weights {meta.get('lora')}; this run "
                         f"trains LoRA {lora}: set lora_rank, lora_alpha and lora_targets to match")
    return policy.load_weights(folder)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of an RL run, or None."""
    return kit_latest_checkpoint(output_dir, CHECKPOINT_MARKER)


def _marker(state: TrainState, env: DistEnv) -> str:
    return json.dumps({"step": state.step, "parallelism": state.config.parallelism,
                       "checkpoint_format": "dcp" if state.config.parallelism == "fsdp" else "files",
                       "world_size": env.world_size})


def save_checkpoint(state: TrainState, output_dir: Path, env: DistEnv | None = None) -> Path:
    """Everything an exact resume needs, published atomically as ``checkpoints/step-<step>``.

    Collective under ``parallelism`` "fsdp" (every rank writes its shards); otherwise only rank 0
    writes and the others just return the folder."""
    env = env or DistEnv()
    if state.config.parallelism == "fsdp":
        return _save_sharded(state, output_dir, env)
    final = checkpoint_dir(output_dir, state.step)
    if not env.is_main:
        return final
    from safetensors.torch import save_file

    kind, lora = weights_meta(state.config)
    with atomic_folder(final) as folder:
        save_policy_weights(
            folder, dict(state.params), base_policy=state.config.base_policy, kind=kind, lora=lora,
            which="policy", step=state.step,
        )
        save_file({k: v.contiguous().cpu() for k, v in state.ema.items()}, str(folder / "ema.safetensors"))
        torch.save(state.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(rng_state(state.generator), folder / "rng.pt")
        (folder / CHECKPOINT_MARKER).write_text(_marker(state, env))
    return final


def _save_sharded(state: TrainState, output_dir: Path, env: DistEnv) -> Path:
    rng_states = gather_objects(rng_state(state.generator), env)  # every rank's, written by rank 0
    final = checkpoint_dir(output_dir, state.step)
    with shared_atomic_folder(final, is_main=env.is_main, distributed=env.distributed) as tmp:
        save_dcp_state(state.policy.transformer, state.optimizer, tmp / DCP_DIR, extra={"ema": state.ema})
        if env.is_main:
            torch.save(rng_states, tmp / "rng.pt")
            (tmp / CHECKPOINT_MARKER).write_text(_marker(state, env))
    return final


def load_checkpoint(state: TrainState, folder: Path, env: DistEnv | None = None) -> None:
    """Restore weights, EMA, optimizer, RNG and step from ``folder`` (collective under "fsdp")."""
    env = env or DistEnv()
    marker = json.loads((folder / CHECKPOINT_MARKER).read_text())
    written = "dcp" if (folder / DCP_DIR).is_dir() else "files"
    wanted = "dcp" if state.config.parallelism == "fsdp" else "files"
    if written != wanted:
        raise ValueError(f"checkpoint {folder} was written with parallelism "
                         f"{marker.get('parallelism', 'ddp')!r}; resume it with that parallelism")
    if written == "dcp":
        load_dcp_state(state.policy.transformer, state.optimizer, folder / DCP_DIR, extra={"ema": state.ema})
        rng_states = torch.load(folder / "rng.pt", weights_only=True)
        # Under FSDP every rank draws the same batch, so any rank's generator state continues it;
        # the global torch RNG is per rank where the rank count is unchanged.
        set_rng_state(rng_states[env.rank] if env.rank < len(rng_states) else rng_states[0], state.generator)
        state.step = marker["step"]
        return
    from safetensors.torch import load_file

    weights = load_file(str(folder / "weights.safetensors"))
    ema = load_file(str(folder / "ema.safetensors"))
    if set(weights) != set(state.params):
        raise ValueError(f"checkpoint {folder} does not match the configured trainable weights")
    with torch.no_grad():
        for name, p in state.params.items():
            p.copy_(weights[name])
            state.ema[name].copy_(ema[name])
    # weights_only: a checkpoint is data, never code to unpickle; optimizer and RNG states are
    # plain tensors, numbers and lists (save_checkpoint), which the restricted loader accepts.
    state.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=state.policy.device,
                                               weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=True), state.generator)
    state.step = marker["step"]


def save_final(state: TrainState, folder: Path, env: DistEnv | None = None) -> Path:
    """Deployable weights (EMA or policy), loadable as ``FillPolicy.from_pretrained(base, weights=final)``.

    LoRA runs also get ``pytorch_lora_weights.safetensors`` so a stock ``FluxFillPipeline.load_lora_weights``
    can use them; full fine-tunes get a ``transformer/`` folder. Collective under "fsdp".
    """
    env = env or DistEnv()
    cfg = state.config
    if cfg.parallelism == "fsdp":
        return _save_final_gathered(state, folder, env)
    if not env.is_main:
        return folder
    kind, lora = weights_meta(cfg)
    deploy = state.ema if cfg.deploy_weights == "ema" else {k: v.detach() for k, v in state.params.items()}
    folder.mkdir(parents=True, exist_ok=True)
    with swapped_weights(state.params, deploy):
        if kind == "lora":
            from diffusers import FluxFillPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(state.policy.transformer))
            FluxFillPipeline.save_lora_weights(folder, transformer_lora_layers=layers)
            save_policy_weights(
                folder, dict(deploy), base_policy=cfg.base_policy, kind=kind, lora=lora, which=cfg.deploy_weights,
                step=state.step,
            )
        else:
            state.policy.transformer.save_pretrained(folder / "transformer")
            write_policy_card(folder, base_policy=cfg.base_policy, kind="full", lora=None,
                              weights=cfg.deploy_weights, step=state.step)
    return folder


def _save_final_gathered(state: TrainState, folder: Path, env: DistEnv) -> Path:
    """A sharded full fine-tune's ``final/``: the fp32 weights gathered once, on rank 0's CPU
    (12B parameters are ~48 GB of host memory there), written as the same ``transformer/`` folder
    an unsharded run writes. The EMA is gathered tensor by tensor, so one copy is whole at a time."""
    from safetensors.torch import save_file

    cfg = state.config
    transformer = state.policy.transformer
    if env.distributed:
        weights = full_model_state(transformer)  # collective; {} off rank 0
    else:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in transformer.state_dict().items()}
    if cfg.deploy_weights == "ema":
        weights.update(full_tensors(state.ema, is_main=env.is_main))
    if env.is_main:
        with atomic_folder(folder) as tmp:
            (tmp / "transformer").mkdir()
            # The architecture as diffusers writes it; the class is named explicitly because a
            # sharded module's class is FSDP's wrapper subclass.
            config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(transformer.config).items()}
            config["_class_name"] = "FluxTransformer2DModel"
            (tmp / "transformer" / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
            save_file({k: v.float().contiguous() for k, v in weights.items()}, str(tmp / "transformer" / TRANSFORMER_WEIGHTS))
            write_policy_card(tmp, base_policy=cfg.base_policy, kind="full", lora=None,
                              weights=cfg.deploy_weights, step=state.step)
    if env.distributed:
        torch.distributed.barrier()
    return folder


def save_sample_grid(path: Path, sources, masks, references, policies, rows: int = 4) -> None:
    """PNG grid, one row per sample: source | mask | reference | policy (one-step x0)."""
    from PIL import Image

    n = min(rows, sources.shape[0])
    h, w = sources.shape[-2:]
    grid = Image.new("RGB", (4 * w, n * h))
    for i in range(n):
        tiles = [sources[i], masks[i].expand(3, -1, -1), references[i], policies[i]]
        for j, tile in enumerate(tiles):
            grid.paste(tensor_to_pil(tile), (j * w, i * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
