"""OneReward RL as a recipe: ``setup`` / ``step`` / ``save`` / ``final``, like the reward trainer.

``RLRecipe.run`` is the loop: set up once (validate the data and the reward before the policy is
loaded, print the memory plan, load the policy, add the trainable weights, shard them under
``parallelism`` "fsdp", resume), then ``step`` until ``max_steps`` (polling ``should_stop`` on every
rank), saving every ``save_every`` steps, and ``final`` writes ``final/`` and ``result.json``.

Under torchrun there are two ways to use the ranks:

- "ddp" (default, LoRA or a full fine-tune that fits one device): every rank holds the whole
  policy, draws its own batch of ``batch_size`` from its own generator, gradients are all-reduced.
- "fsdp" (full fine-tune): the FLUX transformer blocks are FSDP2 units. Every rank draws the
  same global batch from the same generator and takes its contiguous share of the rows; the loss
  is scaled so that FSDP's gradient average equals one process's gradient on the whole batch.
  That makes N ranks reproduce one process, which the tests check.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from contracts.vocabulary import BUILTIN
from enginekit.metrics import MetricsFile
from enginekit.runs import DistEnv, RunCancelled, init_distributed, stop_everywhere
from enginekit.sharding import shard_modules

from .batches import (
    PROMPT_EMBEDS_DIR,
    _all_prompts_on_disk,
    bucket_conditions,
    heldout_conditions,
    load_batch,
    pick_bucket,
    prepare_prompt_embeds,
)
from .checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_init_weights,
    save_checkpoint,
    save_final,
    save_sample_grid,
)
from .config import RLConfig
from .evaluate import evaluate_heldout
from .memory import check_budget, format_plan, memory_plan
from .onestep import one_step_images, sample_grad_step
from .pipeline import Condition, FillPolicy, aspect_bucket_sizes, load_conditions, paste_back_source
from .rewards import (
    RewardFn,
    check_every_condition_scored,
    criterion_rows,
    load_reward_fn,
    read_reward_criteria,
    resolve_task_criteria,
    score_criteria,
)
from .weights import TrainState, ema_update, reference_rollout, setup_trainable, velocity_anchor

ProgressFn = Callable[[dict], None]
logger = logging.getLogger(__name__)

#: FLUX transformer blocks that become their own FSDP unit under ``parallelism`` "fsdp".
SHARD_UNIT_CLASSES = ("FluxTransformerBlock", "FluxSingleTransformerBlock")


# ----------------------------------------------------------------------------------------------
# Devices, precision and the DDP path's collectives
# ----------------------------------------------------------------------------------------------
def _dist_setup(device_pref: str) -> tuple[DistEnv, torch.device]:
    use_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if device_pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    env = init_distributed("cuda" if use_cuda else "cpu")
    device = torch.device(f"cuda:{env.local_rank}" if use_cuda and env.distributed else ("cuda" if use_cuda else "cpu"))
    if device.type == "cuda" and env.distributed:
        torch.cuda.set_device(device)
    return env, device


def configure_attention_kernels(config: RLConfig, device: torch.device) -> None:
    """Keep cuDNN's fused attention out of the RL step unless the config asks for it.

    Its backward failed on an H200 (see ``RLConfig.cudnn_attention``); torch then falls back to
    the flash or memory-efficient kernels, which are as fast for these shapes.
    """
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(config.cudnn_attention)


def _resolve_dtype(config: RLConfig, device: torch.device) -> tuple[torch.dtype, bool]:
    """(dtype the policy is loaded in, whether the step computes in bf16)."""
    if config.mixed_precision == "bf16" and device.type != "cuda" and not config.full_finetune:
        raise ValueError("mixed_precision 'bf16' needs a CUDA device for LoRA; use 'auto' or 'no' on CPU")
    use_bf16 = config.mixed_precision == "bf16" or (device.type == "cuda" and config.mixed_precision == "auto")
    # Full fine-tuning keeps fp32 master weights (autocast computes in bf16); LoRA keeps the frozen base in bf16.
    weight_dtype = torch.bfloat16 if use_bf16 and not config.full_finetune else torch.float32
    return weight_dtype, use_bf16


def _all_reduce_grads(params: dict[str, torch.nn.Parameter], world: int) -> None:
    if world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params.values()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params.values(), grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _broadcast_params(params: dict[str, torch.nn.Parameter], world: int) -> None:
    if world > 1:
        for p in params.values():
            dist.broadcast(p.data, src=0)


def _grad_norm_and_clip(params: dict[str, torch.nn.Parameter], grad_clip: float, sharded: bool) -> float:
    """The gradients' global L2 norm (before clipping), clipping them to ``grad_clip`` when > 0.

    Sharded gradients are DTensors: their norm is reduced over the ranks (``full_tensor``), so
    every rank clips by the same factor, the one a single process would use."""
    grads = [p.grad for p in params.values() if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads)
    if sharded:
        from torch.distributed.tensor import DTensor

        norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
        if grad_clip > 0:
            coef = torch.clamp(grad_clip / (norm + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.to(g.dtype))  # a replicated scalar times each local shard
        return float(norm)
    if grad_clip > 0:
        torch.nn.utils.clip_grads_with_norm_(list(params.values()), grad_clip, norm)
    return float(norm)


# ----------------------------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------------------------
class RLRecipe:
    """One RL run. ``run()`` = ``setup()``, ``step()`` until done, ``save()`` on schedule, ``final()``.

    ``reward_fn(first, second, task, criterion, prompts) -> Tensor[B]`` overrides the reward model
    (toy rewards in tests); otherwise ``config.reward_model`` is loaded through ``RewardScorer``.
    """

    def __init__(self, config: RLConfig, reward_fn: RewardFn | None = None, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.config = config
        self.reward_fn = reward_fn
        self.progress = progress
        self.should_stop = should_stop
        self.out = Path(config.output_dir)
        self.started = time.time()
        self.env, self.device = _dist_setup(config.device)
        self.fsdp = config.parallelism == "fsdp"
        # FSDP needs a process group: one process runs the same recipe unwrapped (same draws, same
        # sharded-format checkpoints), which is what the N-vs-1 parity is measured against.
        self.sharded = self.fsdp and self.env.distributed
        if self.fsdp and config.batch_size % self.env.world_size:
            raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes "
                             f"({self.env.world_size}) under parallelism 'fsdp' (it is the global batch)")
        configure_attention_kernels(config, self.device)
        self.weight_dtype, self.use_bf16 = _resolve_dtype(config, self.device)
        self.resumed_from: Path | None = None
        self.last_row: dict = {}

    def autocast(self):
        """bf16 autocast on the run's device when the step computes in bf16, else nothing."""
        if not self.use_bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Validate data and reward, print the memory plan, load and prepare the policy, resume."""
        config, env = self.config, self.env
        self._setup_data()
        # --- the memory plan, before any weight is read --------------------------------------
        self.plan = memory_plan(config, self.use_bf16, max((len(c) for c in self.criteria.values()), default=1),
                                with_reward=self.reward_fn is None, world_size=env.world_size)
        if env.is_main:
            logger.info("RL memory plan per device:\n%s", format_plan(self.plan))
        check_budget(self.plan)
        if self.reward_fn is None:
            if not config.reward_model:
                raise ValueError("reward_model is required (or pass reward_fn)")
            self.reward_fn = load_reward_fn(config, self.device, self.weight_dtype)
        self._setup_policy()
        if config.resume:  # only this run's own folder: resume is a flag, never a path
            self.resumed_from = latest_checkpoint(self.out)
            if self.resumed_from is not None:
                load_checkpoint(self.state, self.resumed_from, env)
        if not self.fsdp:
            _broadcast_params(self.state.params, env.world_size)
        policy = self.state.policy
        self.negative = None
        if config.reference_true_cfg > 1.0:
            self.negative = policy.encode_prompts([config.negative_prompt] * self.rows_per_rank,
                                                  config.max_sequence_length)
        self.buckets = aspect_bucket_sizes(config.aspect_buckets, config.resolution, 2 * policy.vae_scale_factor)
        self.by_bucket = bucket_conditions(self.by_task, self.buckets)
        self.schedules: dict[tuple[int, int], tuple] = {}
        self.task_probs = torch.tensor([config.task_probs[t] for t in self.tasks], dtype=torch.float64)
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
            (self.out / "memory-plan.json").write_text(json.dumps(self.plan, indent=2))
        self.metrics = MetricsFile(self.out / "metrics.jsonl", enabled=env.is_main)
        if self.resumed_from is not None:
            self.metrics.truncate_after(self.state.step)  # the steps after the checkpoint are replayed
        self.window: dict[str, list[float]] = defaultdict(list)
        self.window_start = time.time()

    def _setup_data(self) -> None:
        """Conditions, the reward model's criteria and the held-out set: checked before the (big) policy loads."""
        config = self.config
        self.conditions = load_conditions(config.conditions_dir, config.conditions_split)
        self.by_task: dict[str, list[Condition]] = defaultdict(list)
        for cond in self.conditions:
            self.by_task[cond.task].append(cond)
        self.tasks = config.active_tasks
        empty = [t for t in self.tasks if not self.by_task[t]]
        if empty:
            split = f" (split {config.conditions_split!r})" if config.conditions_split else ""
            raise ValueError(f"conditions folder {config.conditions_dir}{split} has no conditions for task(s) "
                             f"{', '.join(empty)}")
        reward_criteria, self.vocabulary = (read_reward_criteria(config.reward_model) if config.reward_model
                                            else (None, BUILTIN))
        config.check_vocabulary(self.vocabulary)  # criterion names are the reward model's, not constants
        self.criteria = resolve_task_criteria(config, reward_criteria)
        check_every_condition_scored(self.criteria, self.by_task, self.vocabulary)
        self.eval_set, self.eval_split = (heldout_conditions(config, self.by_task) if config.eval_every
                                          else ({}, None))

    @property
    def rows_per_rank(self) -> int:
        """Rows of a batch this rank computes: its share of the global batch under FSDP."""
        return self.config.batch_size // self.env.world_size if self.fsdp else self.config.batch_size

    def _setup_policy(self) -> None:
        """Load the policy (prompt embeddings cached on disk, text encoders freed), add the
        trainable weights, build the reference, shard under FSDP, then the optimizer and EMA."""
        config, env = self.config, self.env
        prompts = ([c.policy_prompt for c in self.conditions]
                   + [c.policy_prompt for cs in self.eval_set.values() for c in cs])
        if config.reference_true_cfg > 1.0:
            prompts.append(config.negative_prompt)
        embeds_dir = self.out / PROMPT_EMBEDS_DIR
        cached = _all_prompts_on_disk(embeds_dir, prompts, config.max_sequence_length)
        # Sharded, the policy is read into host memory and each FSDP unit moves only its own slice
        # to the device: a whole fp32 12B transformer (48 GB), let alone its reference copy, would
        # not fit an 80 GB GPU before sharding.
        policy = FillPolicy.from_pretrained(config.base_policy, device="cpu" if self.sharded else self.device,
                                            dtype=self.weight_dtype, load_text_encoders=not cached)
        prepare_prompt_embeds(policy, embeds_dir, prompts, config.max_sequence_length, write=env.is_main)
        params = setup_trainable(policy, config)
        if config.gradient_checkpointing:
            policy.transformer.enable_gradient_checkpointing()
            policy.vae.enable_gradient_checkpointing()
        frozen_reference = None
        if config.full_finetune and (config.algorithm == 1 or config.kl_weight > 0):
            frozen_reference = copy.deepcopy(policy.transformer).requires_grad_(False)
        if config.init_weights:  # after the reference is fixed, before the EMA copies the start
            load_init_weights(policy, config)
        if self.sharded:
            # Every block its own unit: fp32 masters, grads and AdamW moments in 1/N slices; bf16
            # all-gathers and compute under bf16 mixed precision, gradients reduced in fp32.
            compute = torch.bfloat16 if self.use_bf16 else torch.float32
            units = shard_modules(policy.transformer, self.device, SHARD_UNIT_CLASSES, compute)
            if frozen_reference is not None:  # Algorithm 1's reference: sharded the same way
                shard_modules(frozen_reference, self.device, SHARD_UNIT_CLASSES, compute)
            params = {n: p for n, p in policy.transformer.named_parameters() if p.requires_grad}
            policy.vae.to(self.device)  # fully_shard moved the transformer's slices; the rest follows
            policy.device = self.device
            if env.is_main:
                logger.info("FSDP: %d shard units over %d ranks", units, env.world_size)
        optimizer = torch.optim.AdamW(
            list(params.values()), lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
        )
        # Under FSDP every rank draws the same global batch; otherwise each rank its own.
        gen_rank = 0 if self.fsdp else env.rank
        self.state = TrainState(
            config=config,
            policy=policy,
            params=params,
            # A clone of a sharded parameter is a DTensor with the same slices: the EMA is sharded too.
            ema={n: p.detach().clone().float() for n, p in params.items()},
            optimizer=optimizer,
            generator=torch.Generator("cpu").manual_seed(config.seed * 1_000_003 + gen_rank),
            frozen_reference=frozen_reference,
        )

    def _schedules(self, size: tuple[int, int]) -> tuple:
        if size not in self.schedules:  # the shift of the sigma schedule depends on the image size
            policy, cfg = self.state.policy, self.config
            self.schedules[size] = (policy.schedule(cfg.reference_steps, *size), policy.schedule(cfg.policy_steps, *size))
        return self.schedules[size]

    # ------------------------------------------------------------------------------------- step
    def step(self) -> None:
        """One optimizer step: draw a batch, roll out reference and policy, hinge loss, AdamW, EMA, log."""
        state, config, env, device = self.state, self.config, self.env, self.device
        policy, gen = state.policy, state.generator
        task = self.tasks[int(torch.multinomial(self.task_probs, 1, generator=gen).item())]
        size, pool = pick_bucket(self.by_bucket[task], gen)
        picks = torch.randint(len(pool), (config.batch_size,), generator=gen).tolist()
        conds = [pool[i] for i in picks]
        images, masks = load_batch(conds, size)
        ref_schedule, pol_schedule = self._schedules(size)
        inputs = policy.prepare_inputs(images.to(device), masks.to(device), gen)
        noise_ref = policy.initial_noise(config.batch_size, *size, gen)
        noise_pol = policy.initial_noise(config.batch_size, *size, gen)
        k = sample_grad_step(gen, config.policy_steps, config.t_range)
        # Every draw above is for the global batch; a sharded rank keeps its contiguous rows.
        mine = slice(env.rank * self.rows_per_rank, (env.rank + 1) * self.rows_per_rank) if self.fsdp else slice(None)
        conds, images, masks = conds[mine], images[mine], masks[mine]
        inputs = replace(inputs, cond=inputs.cond[mine])
        noise_ref, noise_pol = noise_ref[mine], noise_pol[mine]
        user_prompts = [c.prompt for c in conds]
        embeds = policy.encode_prompts([c.policy_prompt for c in conds], config.max_sequence_length)

        with self.autocast():
            ref_images = reference_rollout(state, noise_ref, inputs, embeds, self.negative, ref_schedule)
            pol = one_step_images(policy, inputs, embeds, noise_pol, pol_schedule, k, config.guidance)
        pol_images = pol.images
        if config.paste_back:
            ref_images = paste_back_source(ref_images, images, masks)
            pol_images = paste_back_source(pol_images, images, masks)

        # Hinge per (sample, criterion); each sample takes the weighted mean over the criteria that
        # apply to it (equal weights unless ``criterion_weights`` says otherwise, as in the paper).
        n = len(conds)
        hinge_sum = torch.zeros(n, device=device)
        counts = torch.zeros(n, device=device)
        sums: dict[str, list[float]] = {}  # criterion -> [reward sum, hinge-active count, rows]
        rows = criterion_rows(self.criteria[task], user_prompts, self.vocabulary)
        with self.autocast():
            rewards = score_criteria(self.reward_fn, pol_images, ref_images, task, rows, user_prompts)
        for criterion, idx in rows:
            weight = config.criterion_weight(task, criterion)
            sel = torch.tensor(idx, device=device)
            reward = rewards[criterion].float()
            hinge = F.relu(config.hinge_ceiling - reward)
            hinge_sum = hinge_sum.index_add(0, sel, weight * hinge)
            counts = counts.index_add(0, sel, torch.full_like(hinge, weight))
            sums[criterion] = [reward.detach().sum().item(), (hinge.detach() > 0).float().sum().item(), len(idx)]
        per_sample = hinge_sum / counts.clamp(min=1)
        if self.fsdp:
            # Σ over my rows / rows scored in the whole batch, times N: FSDP averages the ranks'
            # gradients, so the update is the one-process gradient of the batch mean.
            scored = torch.tensor([float((counts > 0).sum())])
            if self.sharded:
                dist.all_reduce(scored)
            loss = per_sample[counts > 0].sum() / scored.clamp(min=1).item() * env.world_size
        else:
            loss = per_sample[counts > 0].mean()
        anchor = velocity_anchor(state, pol, inputs, embeds, pol_schedule, self.autocast) if config.kl_weight > 0 else None
        if anchor is not None:
            loss = loss + config.kl_weight * anchor
        loss.backward()
        if not self.fsdp:
            _all_reduce_grads(state.params, env.world_size)
        grad_norm = _grad_norm_and_clip(state.params, config.grad_clip, self.sharded)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        ema_update(state.ema, state.params, config.ema_decay)
        state.step += 1

        loss_value = loss.item()
        anchor_value = anchor.item() if anchor is not None else None
        if self.sharded:
            loss_value, anchor_value, sums = self._reduce_step_metrics(task, loss_value, anchor_value, sums)
        self._record(task, k, loss_value, grad_norm, anchor_value, sums)
        if env.is_main and config.sample_grid_every and state.step % config.sample_grid_every == 0:
            save_sample_grid(self.out / "samples" / f"step-{state.step:06d}.png", images, masks,
                             ref_images.detach(), pol_images.detach())
        # Under FSDP every forward is collective: all ranks evaluate, rank 0 writes.
        if config.eval_every and state.step % config.eval_every == 0 and (env.is_main or self.sharded):
            row = evaluate_heldout(state, self.eval_set, self.eval_split, self.reward_fn, self.criteria,
                                   self.vocabulary, self.buckets, self.autocast)
            self.metrics.append(row)
            if env.is_main and self.progress is not None:
                self.progress({"total_steps": config.max_steps, **row})

    def _reduce_step_metrics(self, task: str, loss: float, anchor: float | None, sums: dict[str, list[float]]
                             ) -> tuple[float, float | None, dict[str, list[float]]]:
        """The whole batch's loss, anchor and per-criterion sums from every rank's share."""
        names = list(self.criteria[task])  # the same on every rank: a rank may score none of a criterion's rows
        flat = [loss, anchor or 0.0] + [v for c in names for v in sums.get(c, [0.0, 0.0, 0])]
        t = torch.tensor(flat, dtype=torch.float64)
        dist.all_reduce(t)
        values = t.tolist()
        world = self.env.world_size
        out = {c: values[2 + 3 * i : 5 + 3 * i] for i, c in enumerate(names) if values[4 + 3 * i] > 0}
        return values[0] / world, (values[1] / world if anchor is not None else None), out

    def _record(self, task: str, k: int, loss: float, grad_norm: float, anchor: float | None,
                sums: dict[str, list[float]]) -> None:
        """Progress event every step, a metrics row every ``log_every`` steps (rank 0)."""
        config, step = self.config, self.state.step
        window = self.window
        window["loss"].append(loss)
        window["grad_norm"].append(grad_norm)
        if anchor is not None:
            window["velocity_anchor"].append(anchor)
        for criterion, (reward_sum, active, rows) in sums.items():
            window[f"reward/{task}/{criterion}"].append(reward_sum / rows)
            window[f"hinge_active/{task}/{criterion}"].append(active / rows)
        event = {"step": step, "total_steps": config.max_steps, "kind": "train", "task": task,
                 "loss": loss, "grad_norm": grad_norm, "k": k}
        if anchor is not None:
            event["velocity_anchor"] = anchor
        if not self.env.is_main:
            return
        if self.progress is not None:
            self.progress(event)
        if config.log_every and (step % config.log_every == 0 or step == config.max_steps):
            elapsed = time.time() - self.window_start
            self.last_row = {"step": step, "kind": "train", "lr": config.learning_rate,
                             "steps_per_s": len(window["loss"]) / max(elapsed, 1e-9)}
            self.last_row.update({key: sum(vals) / len(vals) for key, vals in window.items()})
            self.metrics.append(self.last_row)
            window.clear()
            self.window_start = time.time()

    # ------------------------------------------------------------------------------------- save
    def save(self) -> Path:
        """A resumable checkpoint of the current step (collective under FSDP)."""
        return save_checkpoint(self.state, self.out, self.env)

    # ------------------------------------------------------------------------------------ final
    def final(self) -> dict:
        """Write ``final/`` (EMA or policy weights, fp32 for a full fine-tune) and ``result.json`` last."""
        env, config = self.env, self.config
        result = {"status": "completed", "steps": self.state.step, "algorithm": config.algorithm,
                  "deploy_weights": config.deploy_weights, "final_dir": "final",
                  "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                  "last_metrics": self.last_row, "elapsed_s": time.time() - self.started,
                  "world_size": env.world_size, "parallelism": config.parallelism}
        save_final(self.state, self.out / "final", env)
        if env.is_main:
            (self.out / "result.json").write_text(json.dumps(result, indent=2))
        if env.distributed:
            dist.barrier()
        return result

    def run(self) -> dict:
        """The whole run; raises ``RunCancelled`` (after a checkpoint) when ``should_stop`` says so."""
        self.setup()
        config = self.config
        while self.state.step < config.max_steps:
            if stop_everywhere(self.should_stop, self.env):
                raise RunCancelled(self.state.step, self.save())
            self.step()
            if config.save_every and self.state.step % config.save_every == 0:
                self.save()
        return self.final()


def train(
    config: RLConfig,
    reward_fn: RewardFn | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run OneReward RL as configured and return the ``result.json`` content (``RLRecipe.run``).

    ``reward_fn(first, second, task, criterion, prompts) -> Tensor[B]`` overrides the reward model
    (toy rewards in tests); otherwise ``config.reward_model`` is loaded through ``RewardScorer``.
    """
    return RLRecipe(config, reward_fn, progress, should_stop).run()
