"""Reward-model training loop (LoRA or full fine-tune), resumable and torchrun-ready.

One optimizer step takes a GLOBAL batch of `batch_size` preference pairs (paper: 16), each in
both orders, and minimises the Yes/No cross-entropy of paper Eq. 3. Under `torchrun` (WORLD_SIZE >
1) every process takes an equal contiguous shard of the same global batch and DDP averages the
gradients, so N processes reproduce the 1-process loss curve. Only rank 0 writes files.

Run folder layout (docs/engine-contracts.md): config.json, metrics.jsonl,
checkpoints/step-<n>/ (adapter or model weights and optimizer, or with checkpoint_format "dcp"
their torch.distributed.checkpoint shards; scheduler, RNG states, trainer state with the data
position), final/ (merged weights + processor + onereward.json), and result.json,
written last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from contracts.cards import write_reward_card
from enginekit.checkpoints import atomic_folder, checkpoint_dir, prune_checkpoints, shared_atomic_folder
from enginekit.checkpoints import latest_checkpoint as kit_latest_checkpoint
from enginekit.metrics import MetricsFile
from enginekit.runs import (  # noqa: F401 - RunCancelled is part of this module's interface
    DistEnv,
    RunCancelled,
    gather_objects,
    init_distributed,
    rng_state,
    seed_everything,
    set_rng_state,
    stop_everywhere,
)

from .config import RewardTrainConfig
from .data import (
    PairAugmentation,
    PairCollator,
    PairRow,
    StepBatches,
    check_soft_labels,
    load_manifest,
    load_training_pairs,
    load_vocabulary,
    read_pairs,
    step_batch_loader,
    task_criteria_present,
)
from .loss import yes_no_cross_entropy
from .model import forward_log_odds, load_reward_model
from .processor import save_processor
from .sharding import (
    DCP_DIR,
    full_model_state,
    full_optimizer_state,
    load_dcp_state,
    load_full_state,
    save_dcp_state,
    shard_model,
)
from .template import TEMPLATE_VERSION

logger = logging.getLogger(__name__)

#: Under FSDP, a checkpoint's trainable weights, keyed by parameter name (docs/engine-contracts.md).
SHARDED_WEIGHTS = "trainable.safetensors"
#: With ``select_best``, the run folder's copy of the best evaluation's trainable weights.
BEST_DIR = "best"

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


CHECKPOINT_MARKER = "trainer_state.json"  # written last: its presence marks a complete checkpoint


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a reward run, or None."""
    return kit_latest_checkpoint(output_dir, CHECKPOINT_MARKER)


class _Trainer:
    """State and steps of one training run; `train()` is the public entry point."""

    def __init__(self, config: RewardTrainConfig, progress: ProgressFn | None, should_stop: StopFn | None):
        self.config = config
        self.progress = progress
        self.should_stop = should_stop
        self.out = Path(config.output_dir)
        device = config.resolved_device()
        self.env = init_distributed(device)
        if device.startswith("cuda") and self.env.distributed:
            device = f"cuda:{self.env.local_rank}"
            torch.cuda.set_device(device)
        self.device = torch.device(device)
        if config.batch_size % self.env.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} must be divisible by the number of processes ({self.env.world_size})"
            )

    # ------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        config = self.config
        if not config.resume and (
            (self.out / "result.json").exists() or latest_checkpoint(self.out) is not None
        ):
            raise ValueError(f"{self.out} already holds a run; set resume=true or choose a new output_dir")
        # The snapshot's vocabulary words every query, and goes into the model card for the scorer.
        self.vocabulary = load_vocabulary(config.snapshot_dir)
        self.rows = load_training_pairs(config.snapshot_dir, vocabulary=self.vocabulary)
        self.val_rows = read_pairs(config.snapshot_dir, split="val", vocabulary=self.vocabulary)
        self.manifest = load_manifest(config.snapshot_dir)
        # Before the model loads: a snapshot without soft labels fails in a second, not minutes.
        if config.soft_labels:
            check_soft_labels(config.snapshot_dir, self.rows)
        if config.max_steps:
            self.total_steps = config.max_steps
        else:
            self.total_steps = max(1, math.ceil(config.epochs * len(self.rows) / config.batch_size))

        seed_everything(config.seed)  # before LoRA init, so adapters start identical everywhere
        loaded = load_reward_model(config.base_model, config, device=self.device)
        self.model = loaded.model
        self.processor = loaded.processor
        self.yes_id, self.no_id = loaded.yes_token_id, loaded.no_token_id
        if config.full_finetune:
            self.model.requires_grad_(True)
        # Trainable weights are fp32 master weights whatever the compute dtype: an AdamW step at a
        # full fine-tune's lr (~1e-6) is far below a bf16 weight's spacing (~1e-4 at 0.02), so bf16
        # weights would hardly move. A full fine-tune is already loaded in fp32 (weight_dtype());
        # this covers LoRA adapters on a bf16 base should peft leave them in the base's dtype.
        for param in self.model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        if config.gradient_checkpointing:
            # Non-reentrant checkpointing works with frozen inputs + LoRA without
            # enable_input_require_grads.
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.config.use_cache = False
        self.model.train()
        self.sharded = self.env.distributed and config.parallelism == "fsdp"
        if self.sharded:
            units = shard_model(self.model, self.device, compute_dtype=config.torch_dtype())
            logger.info("FSDP: %d shard units over %d ranks", units, self.env.world_size)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("no trainable parameters: check lora_target_modules")
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            {"constant": "constant_with_warmup"}.get(config.lr_scheduler, config.lr_scheduler),
            self.optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=self.total_steps,
        )
        self.forward_model: torch.nn.Module = self.model
        if self.env.distributed and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.collator = PairCollator(self.processor, self.vocabulary)
        # Training batches carry soft targets when asked; evaluation keeps the hard labels, so a
        # run's val loss stays comparable with a hard-label run's on the same pairs.
        self.train_collator = self.collator
        if config.soft_labels:
            self.train_collator = PairCollator(self.processor, self.vocabulary, soft_labels=True)
        self.start_step = 0
        if config.resume:
            ckpt = latest_checkpoint(self.out)
            if ckpt is not None:
                self.start_step = self._load_checkpoint(ckpt)
        self.best = self._restore_best()
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
            MetricsFile(self.out / "metrics.jsonl").truncate_after(self.start_step)  # replayed steps
        self._barrier()

    # ------------------------------------------------------------------------------- utilities
    def _barrier(self) -> None:
        if self.env.distributed:
            dist.barrier()

    def _all_mean(self, values: list[float]) -> list[float]:
        if not self.env.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return (t / self.env.world_size).tolist()

    def _all_sum(self, values: list[float]) -> list[float]:
        if not self.env.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def _all_max(self, values: list[float]) -> list[float]:
        if not self.env.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def _log(self, record: dict[str, Any]) -> None:
        if not self.env.is_main:
            return
        MetricsFile(self.out / "metrics.jsonl").append(record)
        if self.progress is not None:
            self.progress({"total_steps": self.total_steps, **record})

    # ------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, step: int) -> Path:
        if self.config.checkpoint_format == "dcp":
            return self._save_dcp_checkpoint(step)
        rng_states = gather_objects(rng_state(), self.env)  # every rank's RNG, written by rank 0
        if self.sharded:  # collective: every rank hands its shards to rank 0
            sharded_state = (full_model_state(self.model, trainable_only=True),
                             full_optimizer_state(self.model, self.optimizer))
        final = checkpoint_dir(self.out, step)
        if self.env.is_main:
            with atomic_folder(final) as tmp:
                self._write_checkpoint(tmp, step, rng_states, sharded_state if self.sharded else None)
            prune_checkpoints(self.out, CHECKPOINT_MARKER, self.config.keep_checkpoints)
            self._log({"step": step, "kind": "checkpoint", "path": str(final)})
        self._barrier()
        return final

    def _save_dcp_checkpoint(self, step: int) -> Path:
        """A "dcp" checkpoint: every rank writes its shards of the trainable weights and AdamW
        state into the shared temporary folder (nothing is gathered), rank 0 the rest and the
        marker last; then the folder is published in one rename."""
        rng_states = gather_objects(rng_state(), self.env)
        final = checkpoint_dir(self.out, step)
        with shared_atomic_folder(final, is_main=self.env.is_main, distributed=self.env.distributed) as tmp:
            save_dcp_state(self.model, self.optimizer, tmp / DCP_DIR)  # collective
            if self.env.is_main:
                torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
                torch.save(rng_states, tmp / "rng.pt")
                self._write_trainer_state(tmp, step)
        if self.env.is_main:
            prune_checkpoints(self.out, CHECKPOINT_MARKER, self.config.keep_checkpoints)
            self._log({"step": step, "kind": "checkpoint", "path": str(final)})
        self._barrier()
        return final

    def _write_trainer_state(self, tmp: Path, step: int) -> None:
        """The marker file, written last: the step, the data position and how the state was saved."""
        epoch, offset = divmod(step * self.config.batch_size, len(self.rows))
        state = {
            "step": step,
            "total_steps": self.total_steps,
            "world_size": self.env.world_size,
            "parallelism": "fsdp" if self.sharded else "ddp",
            "checkpoint_format": self.config.checkpoint_format,
            "data_position": {"epoch": epoch, "offset": offset, "pairs_seen": step * self.config.batch_size},
            "seed": self.config.seed,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        (tmp / CHECKPOINT_MARKER).write_text(json.dumps(state, indent=2))

    def _write_checkpoint(self, tmp: Path, step: int, rng_states: list[Any], sharded_state: tuple | None) -> None:
        """Everything a resume needs, into ``tmp``; the marker (trainer state) last."""
        if self.sharded:
            from safetensors.torch import save_file

            # Keyed by parameter names, so any number of ranks can load it again.
            save_file({n: t.contiguous() for n, t in sharded_state[0].items()}, tmp / SHARDED_WEIGHTS)
            torch.save(sharded_state[1], tmp / "optimizer.pt")
        elif self.config.lora:
            # LoRA on lm_head leaves the base weight untouched: do not copy it into every checkpoint.
            self.model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
        else:
            from safetensors.torch import save_file

            state = {n: p.detach().contiguous() for n, p in self.model.named_parameters()}
            save_file(state, tmp / "model.safetensors")
        if not self.sharded:
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states, tmp / "rng.pt")
        self._write_trainer_state(tmp, step)

    def _load_checkpoint(self, ckpt: Path) -> int:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        written_sharded = state.get("parallelism") == "fsdp"
        written_format = state.get("checkpoint_format", "full")  # checkpoints before "dcp" existed are "full"
        if written_format not in ("full", "dcp"):
            raise ValueError(f"checkpoint {ckpt} has checkpoint_format {written_format!r}, which this engine cannot read")
        if written_format == "dcp":
            # Any rank count and parallelism: DCP reshards from the saved global offsets.
            load_dcp_state(self.model, self.optimizer, ckpt / DCP_DIR)  # collective
        elif written_sharded != self.sharded:
            raise ValueError(
                f"checkpoint {ckpt} was written by a {'sharded (fsdp)' if written_sharded else 'ddp'} run; "
                f"resume it with parallelism={'fsdp' if written_sharded else 'ddp'} on several processes "
                "(this older \"full\" format keeps its parallelism; checkpoint_format=\"dcp\" checkpoints "
                "resume on any number of processes)"
            )
        elif self.sharded:
            from safetensors.torch import load_file

            load_full_state(self.model, self.optimizer, load_file(ckpt / SHARDED_WEIGHTS),
                            torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
        elif self.config.lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            adapter = load_file(ckpt / "adapter" / "adapter_model.safetensors", device=str(self.device))
            set_peft_model_state_dict(self.model, adapter)
        else:
            from safetensors.torch import load_file

            weights = load_file(ckpt / "model.safetensors", device=str(self.device))
            result = self.model.load_state_dict(weights, strict=False)
            if result.unexpected_keys:
                raise ValueError(f"checkpoint {ckpt} does not match the model: {result.unexpected_keys[:5]}")
        if written_format == "full" and not self.sharded:
            self.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=self.device,
                                                      weights_only=True))
        self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        rng_states = torch.load(ckpt / "rng.pt", weights_only=True)
        if self.env.rank < len(rng_states):
            set_rng_state(rng_states[self.env.rank])
        else:
            logger.warning("checkpoint has no RNG state for rank %d; dropout streams will differ", self.env.rank)
        if len(rng_states) != self.env.world_size:
            logger.warning("checkpoint was written by %d processes and resumes on %d: the weights, optimizer and "
                           "data order continue exactly; per-rank dropout streams do not", len(rng_states),
                           self.env.world_size)
        logger.info("resumed from %s at step %d", ckpt, state["step"])
        return int(state["step"])

    # ------------------------------------------------------------------------------------- steps
    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 (or fp16) compute over fp32 master weights; autocast keeps the precision-sensitive
        ops (norms, softmax, losses) in fp32. A no-op for fp32 runs."""
        compute = self.config.torch_dtype()
        if compute == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=compute)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # pixel_values stay fp32: the vision tower casts them to its own weight dtype, and the
        # compute dtype comes from autocast (or FSDP's mixed-precision policy).
        return {k: v.to(self.device) for k, v in batch.items()}

    def step_batches(self) -> StepBatches:
        """This rank's batches of the steps still to run, in order (item 0 = ``start_step``)."""
        config = self.config
        augmentation = PairAugmentation(flip=config.augment_flip, crop=config.augment_crop, seed=config.seed,
                                        vocabulary=self.vocabulary)
        return StepBatches(self.rows, self.train_collator, batch_size=config.batch_size, seed=config.seed,
                           rank=self.env.rank, world_size=self.env.world_size, start_step=self.start_step,
                           total_steps=self.total_steps, augmentation=augmentation)

    def train_step(self, step: int, batch: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
        """One optimizer step on the global batch of `step` (this rank's collated shard of it as
        ``batch`` when a DataLoader built it); returns local (loss, accuracy)."""
        if batch is None:
            batch = self.step_batches().batch_for(step)
        batch = self._to_device(batch)
        labels = batch.pop("labels")
        with self._autocast():
            log_odds = forward_log_odds(self.forward_model, batch, self.yes_id, self.no_id)
        loss = yes_no_cross_entropy(log_odds, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            # Against the hard label (target > 0.5), so the figure means the same with soft targets.
            accuracy = ((log_odds > 0) == (labels > 0.5)).float().mean().item()
        return loss.item(), accuracy

    @torch.no_grad()
    def evaluate_rows(self, rows: list[PairRow]) -> dict[str, float]:
        """Pairwise loss and accuracy on `rows` (sharded across processes)."""
        self.model.eval()
        mine = rows[self.env.rank :: self.env.world_size]
        loss_sum = correct = single = count = 0.0
        bs = max(1, self.config.eval_batch_size)
        chunks = math.ceil(len(mine) / bs)
        if self.sharded:  # every forward is collective, so all ranks run as many as the busiest one
            chunks = int(self._all_max([float(chunks)])[0])
        for index in range(chunks):
            chunk = mine[index * bs : (index + 1) * bs]
            batch = self._to_device(self.collator(chunk or rows[:1]))  # rows[:1]: a padding forward
            labels = batch.pop("labels")
            with self._autocast():
                log_odds = forward_log_odds(self.model, batch, self.yes_id, self.no_id)
            if not chunk:
                continue
            n = len(chunk)
            loss_sum += yes_no_cross_entropy(log_odds, labels).item() * n
            wl, lw = log_odds[:n], log_odds[n:]
            correct += ((wl > lw).float() + 0.5 * (wl == lw).float()).sum().item()
            single += (wl > 0).float().sum().item()
            count += n
        self.model.train()
        loss_sum, correct, single, count = self._all_sum([loss_sum, correct, single, count])
        count = max(count, 1.0)
        return {"loss": loss_sum / count, "accuracy": correct / count, "accuracy_single_order": single / count}

    def _eval_and_log(self, step: int) -> dict[str, float] | None:
        if not self.val_rows:
            return None
        metrics = self.evaluate_rows(self.val_rows)
        self._log({"step": step, "kind": "eval", "split": "val", **metrics})
        if self.config.select_best:
            # The last step's weights go to final/ as they are: no copy needed when they win.
            self._consider_best(step, metrics, keep_copy=step < self.total_steps)
        return metrics

    # ------------------------------------------------------------------------ best on validation
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights keyed by parameter name, on rank 0's CPU (collective under FSDP)."""
        if self.sharded:
            return full_model_state(self.model, trainable_only=True)
        if not self.env.is_main:  # DDP ranks hold the same weights; rank 0 writes them
            return {}
        return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in self.model.named_parameters()
                if p.requires_grad}

    def _consider_best(self, step: int, metrics: dict[str, float], keep_copy: bool = True) -> None:
        """Keep the trainable weights of the best evaluation so far in ``best/`` (ranked by val
        accuracy, then lower val loss; an equal result keeps the earlier step). On disk, not in
        memory: it survives a cancel and a resume, and a 7B full fine-tune's copy would not fit RAM
        next to the model. Every rank sees the same all-reduced metrics, so all take the same branch."""
        score = (metrics["accuracy"], -metrics["loss"])
        if self.best is not None and score <= (self.best["accuracy"], -self.best["loss"]):
            return
        self.best = {"step": step, "accuracy": metrics["accuracy"], "loss": metrics["loss"]}
        if not keep_copy:
            return
        state = self._trainable_state()
        if self.env.is_main:
            from safetensors.torch import save_file

            with atomic_folder(self.out / BEST_DIR) as tmp:
                save_file(state, tmp / "trainable.safetensors")
                (tmp / "best.json").write_text(json.dumps(self.best))  # written last: marks a complete copy
        self._barrier()

    def _restore_best(self) -> dict[str, Any] | None:
        """After a resume, the best evaluation at or before the resumed step (later ones are replayed)."""
        marker = self.out / BEST_DIR / "best.json"
        if not (self.config.select_best and self.config.resume and marker.exists()):
            return None
        best = json.loads(marker.read_text())
        return best if best["step"] <= self.start_step else None

    def _selected_step(self, step: int) -> int:
        """The step whose weights ``final/`` holds."""
        if self.config.select_best and self.best is not None:
            return int(self.best["step"])
        return step

    def _best_weights(self, step: int) -> dict[str, torch.Tensor] | None:
        """The best evaluation's trainable weights when it is not the last step (None otherwise)."""
        if not (self.config.select_best and self.best is not None and self.best["step"] != step):
            return None
        from safetensors.torch import load_file

        return load_file(self.out / BEST_DIR / "trainable.safetensors")

    # --------------------------------------------------------------------------------- finalise
    def _unsharded_model(self) -> torch.nn.Module | None:
        """Under FSDP, a plain copy of the trained model on rank 0 (None on the other ranks)."""
        state = full_model_state(self.model)  # collective
        if not self.env.is_main:
            return None
        plain = load_reward_model(self.config.base_model, self.config, device="cpu").model
        plain.load_state_dict(state, strict=True)
        return plain

    def _write_final(self, step: int) -> Path:
        final = self.out / "final"
        trained = self._unsharded_model() if self.sharded else self.model
        best = self._best_weights(step) if self.env.is_main else None
        if best is not None:  # training is over: the model may take the best evaluation's weights
            with torch.no_grad():
                params = dict(trained.named_parameters())
                missing = sorted(set(best) - set(params))
                if missing:
                    raise ValueError(f"{self.out / BEST_DIR} does not match the model, e.g. {missing[:3]}")
                for name, value in best.items():
                    params[name].copy_(value.to(params[name].device, params[name].dtype))
        if self.env.is_main:
            with atomic_folder(final) as tmp:
                # Deploy merged weights: the scorer then loads a plain Qwen2.5-VL folder with no peft
                # dependency and no adapter overhead at inference.
                model = trained.merge_and_unload() if self.config.lora else trained
                if self.config.gradient_checkpointing:
                    model.gradient_checkpointing_disable()
                model.config.use_cache = True
                if self.config.final_dtype:  # an explicit export; the run's masters stay in its checkpoints
                    model = model.to(getattr(torch, self.config.final_dtype))
                model.save_pretrained(tmp)
                save_processor(self.processor, tmp)
                card = {
                    "template_version": TEMPLATE_VERSION,
                    "criteria": {task: list(c) for task, c in self.vocabulary.task_criteria.items()},
                    "trained_on": task_criteria_present(self.rows, self.vocabulary),
                    "vocabulary": self.vocabulary.to_dict(),
                    "base_model": self.config.base_model,
                    "snapshot": {
                        "path": str(self.config.snapshot_dir),
                        "content_hash": self.manifest.get("content_hash"),
                    },
                    "answer_tokens": {"yes": self.yes_id, "no": self.no_id},
                    "min_pixels": self.config.min_pixels,
                    "max_pixels": self.config.max_pixels,
                    "training": {"steps": step, "lora": self.config.lora, "lr": self.config.lr,
                                 "batch_size": self.config.batch_size, "seed": self.config.seed,
                                 "selected_step": self._selected_step(step)},
                    "created_at": datetime.now(UTC).isoformat(),
                }
                write_reward_card(tmp, card)
        self._barrier()
        return final

    def run(self) -> dict[str, Any]:
        self.setup()
        cfg = self.config
        started = time.perf_counter()
        last_loss = last_acc = float("nan")
        last_saved = self.start_step
        step = self.start_step
        trained_pairs = 0
        # Images are decoded ahead of the step, in worker processes when num_workers > 0.
        batches = iter(step_batch_loader(self.step_batches(), num_workers=cfg.num_workers,
                                         prefetch_factor=cfg.prefetch_factor))
        try:
            while step < self.total_steps:
                if stop_everywhere(self.should_stop, self.env):
                    existing = latest_checkpoint(self.out)
                    already_saved = step == last_saved and existing is not None and existing.name == f"step-{step}"
                    ckpt = existing if already_saved else self._save_checkpoint(step)
                    self._log({"step": step, "kind": "status", "status": "cancelled"})
                    raise RunCancelled(step, ckpt)
                t0 = time.perf_counter()
                loss, acc = self.train_step(step, next(batches))
                step += 1
                trained_pairs += cfg.batch_size
                if step % cfg.log_every == 0 or step == self.total_steps:
                    last_loss, last_acc = self._all_mean([loss, acc])
                    elapsed = time.perf_counter() - started
                    self._log({
                        "step": step, "kind": "train", "loss": last_loss, "accuracy": last_acc,
                        "lr": self.scheduler.get_last_lr()[0],
                        "pairs_per_s": cfg.batch_size / max(time.perf_counter() - t0, 1e-9),
                        "eta_s": elapsed / max(step - self.start_step, 1) * (self.total_steps - step),
                    })
                if cfg.eval_every and step % cfg.eval_every == 0 and step < self.total_steps:
                    self._eval_and_log(step)
                if cfg.save_every and step % cfg.save_every == 0 and step < self.total_steps:
                    self._save_checkpoint(step)
                    last_saved = step
            train_seconds = time.perf_counter() - started
            val = self._eval_and_log(step)
            final = self._write_final(step)
            result = {
                "status": "completed",
                "steps": step,
                "total_steps": self.total_steps,
                "resumed_from_step": self.start_step,
                "train_loss": last_loss,
                "train_accuracy": last_acc,
                "val": val,
                "final_dir": str(final),
                "train_seconds": train_seconds,
                "pairs_per_s": trained_pairs / max(train_seconds, 1e-9),
                "world_size": self.env.world_size,
                "parallelism": "fsdp" if self.sharded else ("ddp" if self.env.distributed else "single"),
                "template_version": TEMPLATE_VERSION,
                "selected_step": self._selected_step(step),
                "selected_val": self.best if self._selected_step(step) != step else val,
            }
            if self.env.is_main:
                # result.json last: its presence means the run finished.
                (self.out / "result.json").write_text(json.dumps(result, indent=2))
                shutil.rmtree(self.out / BEST_DIR, ignore_errors=True)  # final/ holds what it kept
            self._barrier()
            return result
        finally:
            del batches  # stops the loader's worker processes
            # A torchrun rank leaves through enginekit.cli.exit_process right after this, and the OS frees
            # the group then. Destroying a gloo group there hung one rank for good in CI (a known
            # torch race, pytorch/pytorch#75097), so only processes started otherwise destroy it.
            if self.env.initialized_here and dist.is_initialized() and not _under_torchrun():
                dist.destroy_process_group()


def train(
    config: RewardTrainConfig,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict[str, Any]:
    """Train a OneReward reward model as configured and return the result dict (also result.json).

    `progress(event)` receives every metrics record (`step`, `total_steps`, `kind`, values) on
    rank 0. `should_stop()` is polled before every step; when it returns True a checkpoint is
    saved and `RunCancelled` is raised, and a later call with `resume=True` continues exactly.
    Runs unchanged under torchrun (DDP; see module docstring).
    """
    return _Trainer(config, progress, should_stop).run()
