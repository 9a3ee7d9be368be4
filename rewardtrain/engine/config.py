"""Run configuration for reward-model training (`RewardTrainConfig`).

Defaults are LoRA settings chosen for a 7B Qwen2.5-VL on one GPU. The paper (§5.1) only states
full fine-tuning with batch 16 and lr 1e-6; LoRA needs a much larger learning rate (1e-4) because
only the low-rank adapters move. Every field is validated in `__post_init__` so a bad config fails
before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enginekit.cli import parse_override  # noqa: F401 - CLI overrides are the engine kit's; importable from here too

#: LoRA targets: language-model attention (q/k/v/o), the vision tower's fused `qkv` and output
#: `attn.proj` (Qwen2.5-VL vision attention has no separate q/k/v), and `lm_head`. lm_head is
#: included because without it the Yes/No logits stay bounded and the loss
#: plateaus far from zero on tiny models; on real models it lets the answer head adapt cheaply.
DEFAULT_LORA_TARGETS = (
    r".*(language_model.*\.(q_proj|k_proj|v_proj|o_proj)|visual.*\.(qkv|attn\.proj)|lm_head)"
)

_DTYPES = ("float32", "bfloat16", "float16")
_SCHEDULERS = ("cosine", "linear", "constant")
_PARALLELISM = ("ddp", "fsdp")
_CHECKPOINT_FORMATS = ("full", "dcp")


@dataclass(frozen=True)
class RewardTrainConfig:
    """Everything a reward-model training run needs; stored as `config.json` in the run folder.

    Attributes:
        base_model: local folder (or hub id, only when the user configures one) of a
            Qwen2.5-VL-architecture checkpoint.
        snapshot_dir: dataset snapshot folder (docs/engine-contracts.md).
        output_dir: run folder that receives config.json, metrics.jsonl, checkpoints/, final/,
            result.json.
        lora: train LoRA adapters (default True). Mutually exclusive with `full_finetune`.
        lora_r / lora_alpha / lora_dropout: adapter rank (16), scale numerator (32), dropout (0.05).
        lora_target_modules: regex over module names (peft full-match); see DEFAULT_LORA_TARGETS.
        full_finetune: train every weight (paper setting; use lr ~1e-6).
        lr: peak AdamW learning rate (1e-4, a LoRA default).
        batch_size: GLOBAL number of preference pairs per optimizer step (16, as the paper); each
            pair is trained in both orders, so the model sees 2x as many sequences. Under torchrun
            each of N processes takes batch_size / N pairs.
        max_steps: optimizer steps; if 0, derived from `epochs`.
        epochs: passes over the training pairs when max_steps is 0 (default 1.0).
        warmup_steps: linear warm-up steps (default 0).
        lr_scheduler: "cosine" (default), "linear" decay or "constant" after warm-up.
        weight_decay: AdamW decoupled weight decay (0.0).
        max_grad_norm: gradient clipping norm; 0 disables (1.0).
        seed: seeds Python, NumPy and torch and the data order (0).
        min_pixels / max_pixels: image token budget in pixels (not edge lengths), applied to
            training, evaluation and the scorer alike. Defaults 3136 and 401408 (= 512 tokens).
        gradient_checkpointing: recompute activations in backward (True; needed at 7B scale).
        eval_every / save_every / log_every: step intervals (0 disables eval/saves before the end).
        keep_checkpoints: how many step checkpoints to keep (newest first; 2).
        resume: continue from the newest checkpoint in output_dir/checkpoints if there is one.
        device: "cpu", "cuda", "cuda:1", ... or "auto" (cuda if available, else cpu).
        dtype: compute dtype: "float32" (default), "bfloat16" or "float16". Trainable weights and
            their AdamW moments always stay float32 (master weights): a full fine-tune loads every
            weight in float32 and runs forward and backward under ``torch.autocast(dtype)`` (under
            FSDP: ``MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=float32)``); LoRA keeps
            the frozen base in ``dtype`` and the adapters in float32. An AdamW step of lr 1e-6 is
            below a bf16 weight's spacing, so optimizing bf16 weights directly trains almost
            nothing. "float16" is refused for a full fine-tune, which would need loss scaling.
        select_best: when the snapshot has val pairs, ``final/`` holds the weights of the
            evaluation (every ``eval_every`` steps and after the last step) with the best val
            accuracy, ties broken by the lower val loss and then the earlier step (default True).
            The last step can be past the best one once the model overfits. False, or no val
            pairs: the last step. The chosen step is ``selected_step`` in result.json and the
            model card.
        final_dtype: dtype of the weights written to ``final/`` (None, the default: as trained, so
            a full fine-tune deploys its float32 masters). "bfloat16" writes a half-size deployable
            copy; checkpoints always keep the float32 masters, so resuming is unaffected.
        eval_batch_size: pairs per evaluation batch (16).
        parallelism: how a torchrun job with several processes splits the work: "ddp" (default:
            every rank holds the whole model, gradients are all-reduced) or "fsdp" (FSDP2
            ``fully_shard`` on every decoder layer and vision block and on the root: weights,
            gradients and AdamW states are sharded across ranks, for full fine-tuning of models
            that do not fit one GPU). Ignored in a single process.
        checkpoint_format: how step checkpoints hold the trainable weights and AdamW state:
            "full" (default: named full tensors; under FSDP gathered on rank 0 first, which costs
            rank 0 a whole copy per save, ~84 GB of fp32 weights and moments for a 7B full
            fine-tune, and such a checkpoint resumes only under FSDP) or "dcp" (torch.distributed.checkpoint: every rank writes its own shards, nothing
            is gathered, and the checkpoint resumes on any number of processes, FSDP, DDP or one
            process). "dcp" is the choice for FSDP at real size; "full" stays the default so that
            checkpoints of existing runs and the tools that read ``trainable.safetensors`` keep
            working. Resuming reads whichever format the checkpoint was written in.
        num_workers: DataLoader worker processes that decode images and build batches ahead of
            the step (0, the default: in the training process, as CPU tests run; 4-8 per GPU on
            a GPU machine, where decoding on the main process would stall the GPU).
        prefetch_factor: batches each worker prepares ahead (2, torch's default; only with workers).
        augment_flip: paired augmentation of the training split (never of val/test or scoring):
            mirror both images of a pair together with probability 1/2 (False). Skipped for
            criteria that use the prompt (text alignment), whose label can depend on reading a
            rendered word or on a side named in the prompt.
        augment_crop: paired augmentation: the largest fraction of each side that a random
            crop-and-resize removes, the same window for both images of a pair (0.0: off; at most
            0.5). Both augmentations are a function of (seed, step, pair), so a resumed run replays
            them (``rewardtrain.engine.data.PairAugmentation``).
        soft_labels: train on the snapshot's soft labels instead of hard ones (False). Off, the
            winner-first sequence's target is 1 ("Yes") and the loser-first one's 0, the paper's
            hard preferences (Eq. 3). On, they are ``p_winner`` and ``1 - p_winner`` (the chance
            the annotators prefer the winner, a tie vote counting half), so a 2-1 or tie-heavy
            pair pulls the model less than a unanimous one. The default stays off because the
            paper trains on hard labels and soft ones have not clearly helped here
            (docs/decisions/0017); turn it on for snapshots with several votes per pair, where
            ``p_winner`` carries the annotators' disagreement, or to distil another model's soft
            predictions. Accuracy is always measured against the hard label. A snapshot without
            ``p_winner`` is refused (``rewardtrain.engine.data.SoftLabelError``), never read as 1.
    """

    base_model: str
    snapshot_dir: str
    output_dir: str
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = DEFAULT_LORA_TARGETS
    full_finetune: bool = False
    lr: float = 1e-4
    batch_size: int = 16
    max_steps: int = 0
    epochs: float = 1.0
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    min_pixels: int = 56 * 56
    max_pixels: int = 512 * 28 * 28
    gradient_checkpointing: bool = True
    eval_every: int = 0
    save_every: int = 100
    log_every: int = 10
    keep_checkpoints: int = 2
    resume: bool = False
    device: str = "auto"
    dtype: str = "float32"
    eval_batch_size: int = 16
    parallelism: str = "ddp"
    final_dtype: str | None = None
    select_best: bool = True
    checkpoint_format: str = "full"
    num_workers: int = 0
    prefetch_factor: int = 2
    augment_flip: bool = False
    augment_crop: float = 0.0
    soft_labels: bool = False

    def __post_init__(self) -> None:
        errors = []
        for name in ("base_model", "snapshot_dir", "output_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                errors.append(f"{name} must be a non-empty string")
        if self.lora == self.full_finetune:
            errors.append("exactly one of lora and full_finetune must be true")
        if self.lora_r < 1:
            errors.append("lora_r must be >= 1")
        if self.lora_alpha <= 0:
            errors.append("lora_alpha must be > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            errors.append("lora_dropout must be in [0, 1)")
        if not self.lr > 0:
            errors.append("lr must be > 0")
        if self.batch_size < 1:
            errors.append("batch_size must be >= 1")
        if self.max_steps < 0:
            errors.append("max_steps must be >= 0")
        if self.max_steps == 0 and not self.epochs > 0:
            errors.append("epochs must be > 0 when max_steps is 0")
        if self.warmup_steps < 0:
            errors.append("warmup_steps must be >= 0")
        if self.lr_scheduler not in _SCHEDULERS:
            errors.append(f"lr_scheduler must be one of {', '.join(_SCHEDULERS)}")
        if self.weight_decay < 0:
            errors.append("weight_decay must be >= 0")
        if self.max_grad_norm < 0:
            errors.append("max_grad_norm must be >= 0")
        if self.min_pixels < 28 * 28:
            errors.append("min_pixels must be >= 784 (one 28x28 merged patch)")
        if self.max_pixels < self.min_pixels:
            errors.append("max_pixels must be >= min_pixels")
        for name in ("eval_every", "save_every", "log_every"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0")
        if self.log_every < 1:
            errors.append("log_every must be >= 1")
        if self.keep_checkpoints < 1:
            errors.append("keep_checkpoints must be >= 1")
        if self.dtype not in _DTYPES:
            errors.append(f"dtype must be one of {', '.join(_DTYPES)}")
        elif self.dtype == "float16" and self.full_finetune:
            errors.append("dtype float16 with full_finetune needs loss scaling, which the engine does not do; "
                          "use bfloat16 (fp32 master weights, bf16 compute)")
        if self.final_dtype is not None and self.final_dtype not in _DTYPES:
            errors.append(f"final_dtype must be null or one of {', '.join(_DTYPES)}")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            errors.append("device must be 'auto', 'cpu' or 'cuda[:N]'")
        if self.eval_batch_size < 1:
            errors.append("eval_batch_size must be >= 1")
        if self.parallelism not in _PARALLELISM:
            errors.append(f"parallelism must be one of {', '.join(_PARALLELISM)}")
        if self.checkpoint_format not in _CHECKPOINT_FORMATS:
            errors.append(f"checkpoint_format must be one of {', '.join(_CHECKPOINT_FORMATS)}")
        if self.num_workers < 0:
            errors.append("num_workers must be >= 0")
        if self.prefetch_factor < 1:
            errors.append("prefetch_factor must be >= 1")
        if not isinstance(self.augment_flip, bool):
            errors.append("augment_flip must be true or false")
        if isinstance(self.augment_crop, bool) or not isinstance(self.augment_crop, int | float) \
                or not 0.0 <= self.augment_crop <= 0.5:
            errors.append("augment_crop must be a number in [0, 0.5]")
        if not isinstance(self.soft_labels, bool):
            errors.append("soft_labels must be true or false")
        if errors:
            raise ValueError("invalid RewardTrainConfig: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardTrainConfig:
        """Build a config from a plain dict, rejecting unknown keys with a clear message.

        Keys that start with "_" (``"_comment"``) are notes for people and are skipped.
        """
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        missing = [n for n in ("base_model", "snapshot_dir", "output_dir") if n not in data]
        if missing:
            raise ValueError(f"missing config keys: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a wrong value type that breaks a comparison
            raise ValueError(f"invalid RewardTrainConfig: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | Path) -> RewardTrainConfig:
        """Read a config from a JSON file."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ValueError(f"config file not found: {path}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RewardTrainConfig:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolved_device(self) -> str:
        """The concrete torch device string ("auto" becomes cuda when available)."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def torch_dtype(self):
        """The `torch.dtype` for `dtype` (the compute dtype)."""
        import torch

        return getattr(torch, self.dtype)

    def weight_dtype(self):
        """The dtype the base model is loaded in: float32 for a full fine-tune (every weight is a
        trainable master weight), else `dtype` (the frozen base under LoRA)."""
        import torch

        return torch.float32 if self.full_finetune else self.torch_dtype()
