"""OneReward RL for a FLUX.1-Fill policy: Algorithm 1 (fixed reference) and 2 (EMA reference).

One training step (the OneReward paper, arXiv 2508.21066: Algorithm 1 in Sec. 4.4, Algorithm 2 in Sec. 5.3):
  task ~ task_probs; batch of conditions of that task; two independent noises;
  reference image = full no-grad denoise (base model: LoRA disabled / frozen copy; Alg. 2: EMA weights);
  policy image = no-grad denoise to k ∈ [t1·N, t2·N], one grad-enabled step, x0 = x_k − σ_k·v, decode;
  loss = mean over the task's criteria (weighted by ``criterion_weights``, equal by default) of
         max(0, λ − reward(policy first, reference second));
  no KL, as in the paper, unless ``kl_weight`` > 0 adds a velocity anchor to the base model.
Then AdamW, an EMA update, metrics, checkpoints and sample grids. Runs under torchrun (rank 0 writes).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from contracts.cards import read_reward_card, write_policy_card
from contracts.vocabulary import BUILTIN, Vocabulary, VocabularyError
from enginekit.checkpoints import atomic_folder, checkpoint_dir
from enginekit.checkpoints import latest_checkpoint as kit_latest_checkpoint
from enginekit.runs import (  # noqa: F401 - RunCancelled is part of this module's interface
    DistEnv,
    RunCancelled,
    init_distributed,
    rng_state,
    set_rng_state,
    stop_everywhere,
)

from .config import RLConfig, read_policy_meta
from .memory import check_budget, format_plan, memory_plan
from .onestep import OneStepOutput, one_step_images, sample_grad_step
from .pipeline import (
    Condition,
    FillPolicy,
    aspect_bucket_sizes,
    condition_size,
    load_condition_tensors,
    load_conditions,
    nearest_bucket,
    paste_back_source,
    save_policy_weights,
    tensor_to_pil,
)

RewardFn = Callable[[torch.Tensor, torch.Tensor, str, str, list[str]], torch.Tensor]
ProgressFn = Callable[[dict], None]
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Reward
# ----------------------------------------------------------------------------------------------
def read_reward_criteria(reward_model_dir: str | Path) -> tuple[dict[str, list[str]], Vocabulary]:
    """({task: [criteria]} the reward model was trained on, its vocabulary), from its ``onereward.json``.

    The card's schema and key precedence (``trained_on``, else ``tasks``) are ``contracts.cards``'.
    Cards without a ``vocabulary`` were trained on the built-in one. Every trained-on pair must
    belong to the vocabulary.
    """
    card = read_reward_card(reward_model_dir)
    if card is None:
        raise ValueError(f"reward model {reward_model_dir} has no onereward.json (not a trained OneReward model)")
    path = card.path
    tasks = card.trained_on()
    if tasks is None:
        raise ValueError(f"{path}: missing the 'trained_on' map of tasks to criteria")
    try:
        vocabulary = card.vocabulary()
        vocabulary.restricted_to(tasks)  # every (task, criterion) trained on is in the vocabulary
    except VocabularyError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return tasks, vocabulary


def resolve_task_criteria(config: RLConfig, reward_criteria: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Criteria scored per task: those the reward model covers, less any ``criterion_weights`` sets to 0.

    Every task with nonzero probability must keep at least one criterion.
    """
    if reward_criteria is not None:
        missing = [task for task in config.active_tasks if not reward_criteria.get(task)]
        if missing:
            raise ValueError(
                f"reward model {config.reward_model} has no criteria for task(s) {', '.join(missing)} "
                f"(it covers {sorted(t for t, c in reward_criteria.items() if c) or 'nothing'}); "
                "set their task_probs to 0 or use a reward model trained on them"
            )
    if reward_criteria is None:
        reward_criteria = {task: list(c) for task, c in BUILTIN.task_criteria.items()}
    covered = {task: list(c) for task, c in reward_criteria.items()}
    out = config.scored_criteria(covered)
    for task, crits in out.items():
        if not crits:
            raise ValueError(
                f"criterion_weights leave task {task!r} no criterion to score "
                f"(the reward model covers {', '.join(covered[task])}); give one of them a positive weight"
            )
    return out


def check_every_condition_scored(
    criteria: dict[str, list[str]], by_task: dict[str, list[Condition]], vocabulary: Vocabulary = BUILTIN
) -> None:
    """Refuse a run in which some condition would have no criterion that applies (no loss, no gradient).

    Happens when only prompt criteria (text alignment) are left for a task that has prompt-free
    (extend) conditions.
    """
    for task, crits in criteria.items():
        unscored = [c.id for c in by_task.get(task, [])
                    if not any(criterion_applies(vocabulary, k, c.prompt) for k in crits)]
        if unscored:
            raise ValueError(
                f"task {task!r}: {len(unscored)} prompt-free condition(s) (e.g. {unscored[0]}) have no criterion "
                f"but {', '.join(crits)} to score, which needs a prompt; give another criterion a positive weight"
            )


class ScorerReward:
    """The reward model inside RL as benchmarked: frozen, in the run's compute dtype (bf16 on CUDA,
    fp32 on CPU), its LM gradient-checkpointed, every criterion of a batch in ONE forward.

    Callable like any ``RewardFn`` (one criterion); ``score_criteria`` is the batched path the
    loop uses (``score_criteria`` below falls back to one call per criterion for plain functions).
    """

    def __init__(self, scorer, log_odds: bool):
        self.scorer = scorer
        self.log_odds = log_odds

    def __call__(self, first, second, task, criterion, prompts):
        return self.scorer.differentiable(first, second, task, criterion, prompts, return_log_odds=self.log_odds)

    def score_criteria(self, first, second, task, rows, prompts):
        return self.scorer.score_criteria(first, second, task, rows, prompts, return_log_odds=self.log_odds)


def load_reward_fn(config: RLConfig, device: torch.device, dtype: torch.dtype = torch.float32) -> ScorerReward:
    """Load ``config.reward_model`` through ``RewardScorer`` (frozen, differentiable w.r.t. pixels)."""
    from rewardtrain.engine.scorer import RewardScorer

    scorer = RewardScorer.from_pretrained(config.reward_model, device=str(device), dtype=dtype)
    if config.reward_gradient_checkpointing:
        scorer.enable_lm_checkpointing()
    return ScorerReward(scorer, config.reward == "log_odds")


def criterion_rows(criteria: list[str], prompts: list[str], vocabulary: Vocabulary) -> list[tuple[str, list[int]]]:
    """(criterion, the batch rows it applies to) for every criterion that applies to some row."""
    rows = [(c, [i for i, p in enumerate(prompts) if criterion_applies(vocabulary, c, p)]) for c in criteria]
    return [(c, idx) for c, idx in rows if idx]


def score_criteria(reward_fn, first, second, task, rows, prompts) -> dict[str, torch.Tensor]:
    """{criterion: reward of its rows}: one batched forward when the reward supports it, else one call each."""
    batched = getattr(reward_fn, "score_criteria", None)
    if batched is not None:
        return batched(first, second, task, rows, prompts)
    out = {}
    for criterion, idx in rows:
        sel = torch.tensor(idx, device=first.device)
        out[criterion] = reward_fn(first[sel], second[sel], task, criterion, [prompts[i] for i in idx])
    return out


def criterion_applies(vocabulary: Vocabulary, criterion: str, user_prompt: str) -> bool:
    """A criterion that uses the prompt (text alignment) is only scored when the user gave one
    (prompt-less extend has none)."""
    return not vocabulary.criterion(criterion).uses_prompt or bool(user_prompt.strip())


# ----------------------------------------------------------------------------------------------
# Trainable weights, EMA and the reference model
# ----------------------------------------------------------------------------------------------
def ema_update(ema: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter], decay: float) -> None:
    """ema ← τ·ema + (1−τ)·θ, in place."""
    with torch.no_grad():
        for name, param in params.items():
            ema[name].mul_(decay).add_(param.detach().to(ema[name].dtype), alpha=1.0 - decay)


@contextmanager
def swapped_weights(params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily copy ``values`` into ``params`` (used to run the EMA model with the policy's memory)."""
    backup = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name])
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(backup[name])


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
            with swapped_weights(self.params, self.ema):
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


# ----------------------------------------------------------------------------------------------
# Distributed helpers (torchrun): rank 0 writes, gradients are averaged by all-reduce.
# ----------------------------------------------------------------------------------------------
def _dist_setup(device_pref: str) -> tuple[int, int, torch.device]:
    use_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if device_pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    env = init_distributed("cuda" if use_cuda else "cpu")
    device = torch.device(f"cuda:{env.local_rank}" if use_cuda and env.distributed else ("cuda" if use_cuda else "cpu"))
    return env.rank, env.world_size, device


def configure_attention_kernels(config: RLConfig, device: torch.device) -> None:
    """Keep cuDNN's fused attention out of the RL step unless the config asks for it.

    Its backward failed on an H200 (see ``RLConfig.cudnn_attention``); torch then falls back to
    the flash or memory-efficient kernels, which are as fast for these shapes.
    """
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(config.cudnn_attention)


def _all_reduce_grads(params: dict[str, torch.nn.Parameter], world: int) -> None:
    if world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params.values()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params.values(), grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _broadcast_params(params: dict[str, torch.nn.Parameter], world: int) -> None:
    if world > 1:
        for p in params.values():
            torch.distributed.broadcast(p.data, src=0)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def _weights_meta(config: RLConfig) -> tuple[str, dict | None]:
    if config.full_finetune:
        return "full", None
    return "lora", {"rank": config.lora_rank, "alpha": config.lora_alpha, "targets": list(config.lora_targets)}


def load_init_weights(policy: FillPolicy, config: RLConfig) -> dict:
    """Start the trainable LoRA weights from ``config.init_weights`` (a LoRA policy weights folder,
    e.g. a checkpoint's ``final/``). Its LoRA shape must be this run's: the weights are copied
    into the adapter ``setup_trainable`` made, so the optimiser and EMA see them as the start."""
    folder = Path(config.init_weights)
    meta = read_policy_meta(folder)
    _, lora = _weights_meta(config)
    if meta.get("kind") != "lora" or meta.get("lora") != lora:
        raise ValueError(f"init_weights {folder} holds {meta.get('kind')} weights {meta.get('lora')}; this run "
                         f"trains LoRA {lora}: set lora_rank, lora_alpha and lora_targets to match")
    return policy.load_weights(folder)


CHECKPOINT_MARKER = "state.json"  # written last: its presence marks a complete checkpoint


def save_checkpoint(state: TrainState, output_dir: Path) -> Path:
    """Policy weights (loadable by FillPolicy) + EMA + optimizer + RNG + step, for exact resume,
    published atomically as ``checkpoints/step-<step>`` (a kill mid-save leaves no half folder)."""
    from safetensors.torch import save_file

    kind, lora = _weights_meta(state.config)
    final = checkpoint_dir(output_dir, state.step)
    with atomic_folder(final) as folder:
        save_policy_weights(
            folder, dict(state.params), base_policy=state.config.base_policy, kind=kind, lora=lora,
            which="policy", step=state.step,
        )
        save_file({k: v.contiguous().cpu() for k, v in state.ema.items()}, str(folder / "ema.safetensors"))
        torch.save(state.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(rng_state(state.generator), folder / "rng.pt")
        (folder / CHECKPOINT_MARKER).write_text(json.dumps({"step": state.step}))
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of an RL run, or None."""
    return kit_latest_checkpoint(output_dir, CHECKPOINT_MARKER)


def load_checkpoint(state: TrainState, folder: Path) -> None:
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
    state.step = json.loads((folder / "state.json").read_text())["step"]


def save_final(state: TrainState, folder: Path) -> Path:
    """Deployable weights (EMA or policy), loadable as ``FillPolicy.from_pretrained(base, weights=final)``.

    LoRA runs also get ``pytorch_lora_weights.safetensors`` so a stock ``FluxFillPipeline.load_lora_weights``
    can use them; full fine-tunes get a ``transformer/`` folder.
    """
    cfg = state.config
    kind, lora = _weights_meta(cfg)
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


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
def _resolve_dtype(config: RLConfig, device: torch.device) -> tuple[torch.dtype, bool]:
    if config.mixed_precision == "bf16" and device.type != "cuda":
        raise ValueError("mixed_precision 'bf16' needs a CUDA device; use 'auto' or 'no' on CPU")
    use_bf16 = device.type == "cuda" and config.mixed_precision in ("auto", "bf16")
    # Full fine-tuning keeps fp32 master weights (autocast computes in bf16); LoRA keeps the frozen base in bf16.
    weight_dtype = torch.bfloat16 if use_bf16 and not config.full_finetune else torch.float32
    return weight_dtype, use_bf16


def _load_batch(conds: list[Condition], size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [load_condition_tensors(c, size) for c in conds]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


# ----------------------------------------------------------------------------------------------
# Prompt embeddings, aspect-ratio buckets and the held-out reward
# ----------------------------------------------------------------------------------------------
PROMPT_EMBEDS_DIR = "prompt-embeds"  # under the run folder: one file per prompt hash, reused on resume


def _all_prompts_on_disk(folder: Path, prompts: list[str], max_sequence_length: int) -> bool:
    from .pipeline import prompt_embeds_file

    return all((folder / prompt_embeds_file(p, max_sequence_length)).is_file() for p in set(prompts))


def prepare_prompt_embeds(policy: FillPolicy, folder: Path, prompts: list[str], max_sequence_length: int,
                          write: bool = True) -> None:
    """Every prompt's T5/CLIP embeddings on the CPU (from ``folder`` where cached, else encoded once
    and written there), then the text encoders are freed: RL never encodes a prompt again."""
    missing = policy.prompt_embeds_from_disk(folder, prompts, max_sequence_length)
    if missing:
        for prompt in missing:
            policy.encode_prompts([prompt], max_sequence_length)
        if write:
            policy.prompt_embeds_to_disk(folder, missing, max_sequence_length)
    policy.free_text_encoders()


def bucket_conditions(by_task: dict[str, list[Condition]], buckets: list[tuple[int, int]]
                      ) -> dict[str, dict[tuple[int, int], list[Condition]]]:
    """{task: {(height, width): conditions}}: each condition in the bucket nearest its aspect ratio."""
    out: dict[str, dict[tuple[int, int], list[Condition]]] = {}
    for task, conds in by_task.items():
        groups: dict[tuple[int, int], list[Condition]] = {}
        for cond in conds:
            width, height = condition_size(cond) if len(buckets) > 1 else (1, 1)
            groups.setdefault(nearest_bucket(width, height, buckets), []).append(cond)
        out[task] = dict(sorted(groups.items()))
    return out


def pick_bucket(groups: dict[tuple[int, int], list[Condition]], generator: torch.Generator
                ) -> tuple[tuple[int, int], list[Condition]]:
    """A bucket with probability proportional to its conditions (every condition equally likely).

    With one non-empty bucket no random number is drawn, so square-only data replays the old runs.
    """
    items = list(groups.items())
    if len(items) == 1:
        return items[0]
    weights = torch.tensor([len(c) for _, c in items], dtype=torch.float64)
    return items[int(torch.multinomial(weights, 1, generator=generator).item())]


def heldout_conditions(config: RLConfig, by_task: dict[str, list[Condition]]
                       ) -> tuple[dict[str, list[Condition]], str | None]:
    """The fixed held-out set of the reward curve: per active task, the first ``eval_conditions`` of
    ``eval_split``; a task with none there uses its first training conditions (the split logged says so)."""
    heldout = load_conditions(config.conditions_dir, config.eval_split) if config.eval_split else []
    out, splits = {}, set()
    for task in config.active_tasks:
        conds = [c for c in heldout if c.task == task][: config.eval_conditions]
        if conds:
            splits.add(config.eval_split)
        else:
            conds = by_task[task][: config.eval_conditions]
            splits.add(config.conditions_split or "all")
        out[task] = conds
    return out, "+".join(sorted(s for s in splits if s))


def evaluate_heldout(state: TrainState, eval_set, split, reward_fn, criteria, vocabulary, buckets, autocast) -> dict:
    """Reward of the current policy on the held-out set: full sampling with fixed noise, scored
    against the base model's image from the same noise (computed once: the base never changes).

    Returns the metrics row ``{"step", "kind": "eval", "split", "eval/reward/<task>", ...}``.
    """
    cfg, policy = state.config, state.policy
    row: dict = {"step": state.step, "kind": "eval", "split": split}
    base_cache = state.extra.setdefault("eval_base_images", {})
    for task, conds in eval_set.items():
        per_criterion: dict[str, list[float]] = defaultdict(list)
        for size, group in bucket_conditions({task: conds}, buckets)[task].items():
            for start in range(0, len(group), cfg.batch_size):
                chunk = group[start : start + cfg.batch_size]
                images, masks = _load_batch(chunk, size)
                embeds = policy.encode_prompts([c.policy_prompt for c in chunk], cfg.max_sequence_length)
                # Fixed noise per chunk: the curve compares the same inputs at every evaluation.
                gen = torch.Generator("cpu").manual_seed(cfg.seed * 7919 + start)
                inputs = policy.prepare_inputs(images.to(policy.device), masks.to(policy.device), gen)
                noise = policy.initial_noise(len(chunk), *size, gen)
                schedule = policy.schedule(cfg.policy_steps, *size)
                key = (task, size, start)
                with torch.no_grad(), autocast():
                    if key not in base_cache:
                        # The base model; a full fine-tune without a frozen copy has none: its EMA stands in.
                        has_base = not cfg.full_finetune or state.frozen_reference is not None
                        with state.base() if has_base else state.reference():
                            base = policy.decode(policy.denoise(noise, inputs, embeds, schedule, None, cfg.guidance),
                                                 *size)
                        base_cache[key] = base.cpu()
                    mine = policy.decode(policy.denoise(noise, inputs, embeds, schedule, None, cfg.guidance), *size)
                    base = base_cache[key].to(mine.device)
                    if cfg.paste_back:
                        mine = paste_back_source(mine, images, masks)
                        base = paste_back_source(base, images, masks)
                    prompts = [c.prompt for c in chunk]
                    rows = criterion_rows(criteria[task], prompts, vocabulary)
                    for criterion, values in score_criteria(reward_fn, mine, base, task, rows, prompts).items():
                        per_criterion[criterion].extend(values.float().cpu().tolist())
        for criterion, values in per_criterion.items():
            row[f"eval/reward/{task}/{criterion}"] = sum(values) / len(values)
        if per_criterion:
            row[f"eval/reward/{task}"] = sum(row[f"eval/reward/{task}/{c}"] for c in per_criterion) / len(per_criterion)
    return row


def train(
    config: RLConfig,
    reward_fn: RewardFn | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run OneReward RL as configured and return the ``result.json`` content.

    ``reward_fn(first, second, task, criterion, prompts) -> Tensor[B]`` overrides the reward model
    (toy rewards in tests); otherwise ``config.reward_model`` is loaded through ``RewardScorer``.
    """
    started = time.time()
    rank, world, device = _dist_setup(config.device)
    configure_attention_kernels(config, device)
    is_main = rank == 0
    out = Path(config.output_dir)
    weight_dtype, use_bf16 = _resolve_dtype(config, device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext

    # --- data and reward: validate before loading the (big) policy -------------------------------
    conditions = load_conditions(config.conditions_dir, config.conditions_split)
    by_task: dict[str, list[Condition]] = defaultdict(list)
    for cond in conditions:
        by_task[cond.task].append(cond)
    tasks = config.active_tasks
    empty = [t for t in tasks if not by_task[t]]
    if empty:
        split = f" (split {config.conditions_split!r})" if config.conditions_split else ""
        raise ValueError(f"conditions folder {config.conditions_dir}{split} has no conditions for task(s) {', '.join(empty)}")
    reward_criteria, vocabulary = read_reward_criteria(config.reward_model) if config.reward_model else (None, BUILTIN)
    config.check_vocabulary(vocabulary)  # criterion names are the reward model's, not constants
    criteria = resolve_task_criteria(config, reward_criteria)
    check_every_condition_scored(criteria, by_task, vocabulary)
    eval_set, eval_split = heldout_conditions(config, by_task) if config.eval_every else ({}, None)

    # --- the memory plan, before any weight is read ----------------------------------------------
    plan = memory_plan(config, use_bf16, max((len(c) for c in criteria.values()), default=1),
                       with_reward=reward_fn is None)
    if is_main:
        logger.info("RL memory plan per device:\n%s", format_plan(plan))
    check_budget(plan)
    if reward_fn is None:
        if not config.reward_model:
            raise ValueError("reward_model is required (or pass reward_fn)")
        reward_fn = load_reward_fn(config, device, weight_dtype)

    # --- prompt embeddings: cached on disk under the run folder, kept on the CPU -----------------
    prompts = [c.policy_prompt for c in conditions] + [c.policy_prompt for cs in eval_set.values() for c in cs]
    if config.reference_true_cfg > 1.0:
        prompts.append(config.negative_prompt)
    embeds_dir = out / PROMPT_EMBEDS_DIR
    cached = _all_prompts_on_disk(embeds_dir, prompts, config.max_sequence_length)

    # --- policy, trainable weights, reference --------------------------------------------------
    policy = FillPolicy.from_pretrained(config.base_policy, device=device, dtype=weight_dtype,
                                        load_text_encoders=not cached)
    prepare_prompt_embeds(policy, embeds_dir, prompts, config.max_sequence_length, write=is_main)
    params = setup_trainable(policy, config)
    if config.gradient_checkpointing:
        policy.transformer.enable_gradient_checkpointing()
        policy.vae.enable_gradient_checkpointing()
    frozen_reference = None
    if config.full_finetune and (config.algorithm == 1 or config.kl_weight > 0):
        frozen_reference = copy.deepcopy(policy.transformer).requires_grad_(False)
    if config.init_weights:  # after the reference is fixed, before the EMA copies the start
        load_init_weights(policy, config)
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
    )
    state = TrainState(
        config=config,
        policy=policy,
        params=params,
        ema={n: p.detach().clone().float() for n, p in params.items()},
        optimizer=optimizer,
        generator=torch.Generator("cpu").manual_seed(config.seed * 1_000_003 + rank),
        frozen_reference=frozen_reference,
    )
    resume_from = None
    if config.resume:  # only this run's own folder: resume is a flag, never a path
        resume_from = latest_checkpoint(out)
        if resume_from is not None:
            load_checkpoint(state, resume_from)
    _broadcast_params(params, world)

    negative = None
    if config.reference_true_cfg > 1.0:
        negative = policy.encode_prompts([config.negative_prompt] * config.batch_size, config.max_sequence_length)
    buckets = aspect_bucket_sizes(config.aspect_buckets, config.resolution, 2 * policy.vae_scale_factor)
    by_bucket = bucket_conditions(by_task, buckets)
    schedules: dict[tuple[int, int], tuple] = {}

    def schedules_for(size: tuple[int, int]):
        if size not in schedules:  # the shift of the sigma schedule depends on the image size
            schedules[size] = (policy.schedule(config.reference_steps, *size), policy.schedule(config.policy_steps, *size))
        return schedules[size]

    task_probs = torch.tensor([config.task_probs[t] for t in tasks], dtype=torch.float64)

    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        (out / "memory-plan.json").write_text(json.dumps(plan, indent=2))
    metrics_file = out / "metrics.jsonl"
    window: dict[str, list[float]] = defaultdict(list)
    window_start = time.time()
    last_row: dict = {}

    while state.step < config.max_steps:
        if stop_everywhere(should_stop, DistEnv(rank=rank, world_size=world)):
            saved = save_checkpoint(state, out) if is_main else checkpoint_dir(out, state.step)
            raise RunCancelled(state.step, saved)
        gen = state.generator
        task = tasks[int(torch.multinomial(task_probs, 1, generator=gen).item())]
        size, pool = pick_bucket(by_bucket[task], gen)
        picks = torch.randint(len(pool), (config.batch_size,), generator=gen).tolist()
        conds = [pool[i] for i in picks]
        images, masks = _load_batch(conds, size)
        ref_schedule, pol_schedule = schedules_for(size)
        user_prompts = [c.prompt for c in conds]
        embeds = policy.encode_prompts([c.policy_prompt for c in conds], config.max_sequence_length)
        inputs = policy.prepare_inputs(images.to(device), masks.to(device), gen)
        noise_ref = policy.initial_noise(config.batch_size, *size, gen)
        noise_pol = policy.initial_noise(config.batch_size, *size, gen)
        k = sample_grad_step(gen, config.policy_steps, config.t_range)

        with autocast():
            ref_images = reference_rollout(state, noise_ref, inputs, embeds, negative, ref_schedule)
            pol = one_step_images(policy, inputs, embeds, noise_pol, pol_schedule, k, config.guidance)
        pol_images = pol.images
        if config.paste_back:
            ref_images = paste_back_source(ref_images, images, masks)
            pol_images = paste_back_source(pol_images, images, masks)

        # Hinge per (sample, criterion); each sample takes the weighted mean over the criteria that
        # apply to it (equal weights unless ``criterion_weights`` says otherwise, as in the paper).
        hinge_sum = torch.zeros(config.batch_size, device=device)
        counts = torch.zeros(config.batch_size, device=device)
        step_rewards: dict[str, tuple[float, float]] = {}
        rows = criterion_rows(criteria[task], user_prompts, vocabulary)
        with autocast():
            rewards = score_criteria(reward_fn, pol_images, ref_images, task, rows, user_prompts)
        for criterion, idx in rows:
            weight = config.criterion_weight(task, criterion)
            sel = torch.tensor(idx, device=device)
            reward = rewards[criterion].float()
            hinge = F.relu(config.hinge_ceiling - reward)
            hinge_sum = hinge_sum.index_add(0, sel, weight * hinge)
            counts = counts.index_add(0, sel, torch.full_like(hinge, weight))
            step_rewards[criterion] = (reward.detach().mean().item(), (hinge.detach() > 0).float().mean().item())
        loss = (hinge_sum / counts.clamp(min=1))[counts > 0].mean()
        anchor = velocity_anchor(state, pol, inputs, embeds, pol_schedule, autocast) if config.kl_weight > 0 else None
        if anchor is not None:
            loss = loss + config.kl_weight * anchor
        loss.backward()
        _all_reduce_grads(params, world)
        grads = [p.grad for p in params.values() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads).item() if grads else 0.0
        if config.grad_clip > 0 and grads:
            torch.nn.utils.clip_grads_with_norm_(list(params.values()), config.grad_clip, torch.tensor(grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_update(state.ema, params, config.ema_decay)
        state.step += 1

        # --- bookkeeping ---------------------------------------------------------------------
        window["loss"].append(loss.item())
        window["grad_norm"].append(grad_norm)
        if anchor is not None:
            window["velocity_anchor"].append(anchor.item())
        for criterion, (mean_reward, active) in step_rewards.items():
            window[f"reward/{task}/{criterion}"].append(mean_reward)
            window[f"hinge_active/{task}/{criterion}"].append(active)
        event = {"step": state.step, "total_steps": config.max_steps, "kind": "train", "task": task,
                 "loss": loss.item(), "grad_norm": grad_norm, "k": k}
        if anchor is not None:
            event["velocity_anchor"] = anchor.item()
        if progress is not None and is_main:
            progress(event)
        if is_main and config.log_every and (state.step % config.log_every == 0 or state.step == config.max_steps):
            elapsed = time.time() - window_start
            last_row = {"step": state.step, "kind": "train", "lr": config.learning_rate,
                        "steps_per_s": len(window["loss"]) / max(elapsed, 1e-9)}
            last_row.update({key: sum(vals) / len(vals) for key, vals in window.items()})
            with metrics_file.open("a") as fh:
                fh.write(json.dumps(last_row) + "\n")
            window.clear()
            window_start = time.time()
        if is_main and config.sample_grid_every and state.step % config.sample_grid_every == 0:
            save_sample_grid(out / "samples" / f"step-{state.step:06d}.png", images, masks, ref_images.detach(),
                             pol_images.detach())
        if is_main and config.eval_every and state.step % config.eval_every == 0:
            row = evaluate_heldout(state, eval_set, eval_split, reward_fn, criteria, vocabulary, buckets, autocast)
            with metrics_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if progress is not None:
                progress({"total_steps": config.max_steps, **row})
        if is_main and config.save_every and state.step % config.save_every == 0:
            save_checkpoint(state, out)

    result = {"status": "completed", "steps": state.step, "algorithm": config.algorithm,
              "deploy_weights": config.deploy_weights, "final_dir": "final",
              "resumed_from": str(resume_from) if resume_from else None,
              "last_metrics": last_row, "elapsed_s": time.time() - started, "world_size": world}
    if is_main:
        save_final(state, out / "final")
        (out / "result.json").write_text(json.dumps(result, indent=2))
    if world > 1:
        torch.distributed.barrier()
    return result
