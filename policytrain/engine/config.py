"""Configuration of a fill-policy RL run and of a candidate-generation job.

Every knob the OneReward paper leaves unspecified (λ, τ, [t1, t2], sampler steps, CFG, optimiser,
deployed weights) is a field here with a documented default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from contracts.cards import POLICY_CARD, read_policy_card
from contracts.vocabulary import BUILTIN, EXTEND, REMOVAL, Vocabulary, VocabularyError

#: The tasks the fill pipeline can build inputs for (extend pads the canvas, removal uses its fixed
#: prompt): the built-in ones. Which criteria score them is the reward model's vocabulary.
TASKS: tuple[str, ...] = BUILTIN.task_slugs
POLICY_FILE = POLICY_CARD  # beside a policy weights folder's weights: kind, LoRA shape, base, step
EXTEND_DEFAULT_PROMPT = BUILTIN.task(EXTEND).fixed_prompt
REMOVAL_PROMPT = BUILTIN.task(REMOVAL).fixed_prompt
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    values = dict(data)
    for name in ("t_range", "betas", "lora_targets", "seeds", "aspect_buckets"):
        if name in values and isinstance(values[name], list):
            values[name] = tuple(values[name])
    return cls(**values)


@dataclass(frozen=True)
class RLConfig:
    """OneReward RL (Algorithm 1 or 2) over a FLUX.1-Fill-architecture policy.

    Defaults that the paper does not give, and why they were chosen:

    - ``hinge_lambda`` 0.9: the reward ceiling λ of Eq. 5, always stated as a probability. A P(Yes)
      above 0.9 stops pulling (anti-hacking, as the paper intends) while leaving room to improve from
      the typical 0.2–0.6 start (paper Fig. 6). With ``reward="log_odds"`` the hinge is applied to the
      log-odds with the ceiling logit(λ) ≈ 2.2, so both modes share one meaning of λ.
    - ``ema_decay`` τ 0.99: an averaging horizon of ~100 steps. Over the paper's ~8k iterations this is
      short enough that Algorithm 2's reference keeps up with the policy, long enough to smooth it.
    - ``t_range`` (0.5, 0.9): fractions of ``policy_steps``. The policy runs k ~ U{ceil(t1·N)..floor(t2·N)}
      Euler steps without grad, then makes the one grad-enabled x0 prediction. Late-ish steps give sharp
      x0 predictions (ReFL uses 30–39 of 40); SRPO warns that the very last low-noise steps invite
      colour hacking and that σ≈1 predictions are blurry, hence neither end.
    - ``reference_steps`` / ``policy_steps`` 28, ``guidance`` 30 (FLUX.1-Fill-dev's guidance-distilled
      default), ``reference_true_cfg`` 1.0 (no true CFG: it doubles reference cost; set >1 with a
      ``negative_prompt`` to get a stronger reference).
    - ``learning_rate`` 1e-5 and ``batch_size`` 8 (the paper's policy settings), AdamW betas
      (0.9, 0.999), weight decay 1e-4, grad clip 1.0.
    - LoRA r=4, α=4 on the attention projections (on the tiny policy these are ~3 % of the
      transformer's weights, and a reward still rises within 60 steps); ``full_finetune`` trains the
      whole transformer instead (what the released FLUX OneReward checkpoints did).
    - ``deploy_weights`` "ema": the EMA is the smoother, less reward-hacked model; under Algorithm 2
      it is also the model the paper calls πref and releases.
    - ``parallelism`` "ddp": under torchrun every rank holds the whole policy, draws its own batch
      of ``batch_size`` and gradients are averaged. "fsdp" (full fine-tunes only) shards the FLUX
      transformer with FSDP2 (fp32 master weights, AdamW moments, EMA and Algorithm 1's reference
      all in 1/N slices per rank, bf16 compute under bf16 mixed precision), ``batch_size`` is the
      global batch split across the ranks, so N ranks reproduce one process, and checkpoints are
      torch.distributed.checkpoint shards. LoRA stays the default: its weights are megabytes.
    - ``mixed_precision`` "auto": bf16 on CUDA, fp32 on CPU. "bf16" on CPU is an error for LoRA
      (its frozen base would be bf16); a full fine-tune keeps fp32 masters and computes in bf16
      under CPU autocast, which is how the tests check mixed precision without a GPU.
    - ``cudnn_attention`` False: on an H200 (torch 2.11 + CUDA 13) the backward of cuDNN's fused
      attention failed inside the RL step (``mha_graph.execute``) while flash / memory-efficient
      attention ran it at 5.4 s per step (docs/benchmarks.md); True lets torch pick cuDNN again.
    - ``paste_back`` True: the policy and reference images are composited with the source outside the
      mask before the reward model sees them (``pipeline.paste_back_source``), as a fill product
      delivers them; the paper does not say. The reward then judges only the edit, and the policy
      cannot raise it by changing pixels it was asked to keep: on the synthetic demo, RL without it
      learned a global stripe pattern the tiny reward model liked.
    - ``kl_weight`` β 0.0: the paper has no KL term, so none by default. β > 0 adds
      β·mean((v_policy − v_base)²) at the grad-enabled step (``rl.velocity_anchor``): the flow-matching
      form of a KL penalty against the base model, a guard against reward hacking when the reward
      model is weak. The base is the same anchor under both algorithms (Algorithm 2's EMA reference
      drifts with the policy, so it would not hold it back).
    - ``init_weights`` None: RL's trainable (LoRA) weights start fresh. A LoRA policy weights folder
      (a checkpoint's ``final/``, same base and LoRA shape) makes them start there instead: the next
      round of the loop continues from the production policy. Algorithm 1's fixed reference and
      the velocity anchor stay the base policy (the paper's reference is the pre-trained base);
      Algorithm 2's EMA reference starts at these weights, as it always starts at the policy.
    - ``resume`` False: True continues from the newest ``checkpoints/step-N/`` of ``output_dir``,
      and only from there. It is a flag, not a path: a checkpoint folder chosen elsewhere would be
      read (and its files unpickled) on the training worker. The platform sets it only on Resume.
    - ``criterion_weights`` {} (every weight 1): the paper averages the hinge over the task's
      criteria with equal weight. ``{"extend": {"structure": 2}}`` makes extend's loss the weighted
      mean Σ w·hinge / Σ w over the criteria that apply; a weight of 0 drops a criterion from RL.
      Unnamed criteria keep weight 1.
    - ``reward_gradient_checkpointing`` True: inside RL the reward model is frozen, loaded in the
      compute dtype (bf16 on CUDA, fp32 on CPU) and its language model recomputes its layers in the
      backward; all criteria of a batch are scored in one batched forward, so one reward-model
      graph is alive per step; False keeps the LM's activations (faster, more memory).
    - ``aspect_buckets`` 5: conditions are trained at the nearest of 5 aspect ratios (width/height
      1:2, 1:1.41, 1:1, 1.41:1, 2:1), each about ``resolution``² pixels with sides multiples of 16,
      instead of being squashed to a square; a batch comes from one bucket. Five buckets keep the
      worst distortion of a condition's ratio below ~19 % (half a bucket step of √2) while leaving
      each bucket enough conditions to fill batches. 1 = the square behaviour; a list gives the
      ratios explicitly.
    - ``memory_budget_gb`` None: at start the run estimates weights, gradients, optimizer state
      and activations per component from the models' configs (modules built on the meta device, no
      weights read) and logs the plan; with a budget (GiB per device) a plan above it is refused
      before anything is loaded.
    - ``eval_every`` 250, ``eval_split`` "val", ``eval_conditions`` 8: every ``eval_every`` steps
      the current policy fully samples a fixed held-out set (the first ``eval_conditions``
      conditions per task of ``eval_split``, or of the training split where that split has none)
      with fixed noise, and the reward of its images against the base model's (same noise) is
      logged as ``eval/reward/<task>``: a curve that, unlike the training reward, is always measured
      on the same inputs. 250 matches the sample grids; 0 disables.
    """

    base_policy: str
    conditions_dir: str
    output_dir: str
    reward_model: str | None = None
    algorithm: int = 1
    task_probs: dict[str, float] = field(
        default_factory=lambda: {"fill": 0.5, "extend": 0.25, "removal": 0.25}
    )
    conditions_split: str | None = "train"
    hinge_lambda: float = 0.9
    ema_decay: float = 0.99
    t_range: tuple[float, float] = (0.5, 0.9)
    reference_steps: int = 28
    policy_steps: int = 28
    guidance: float = 30.0
    reference_true_cfg: float = 1.0
    negative_prompt: str = ""
    max_sequence_length: int = 512
    reward: str = "p_yes"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    full_finetune: bool = False
    parallelism: str = "ddp"
    learning_rate: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    batch_size: int = 8
    max_steps: int = 8000
    seed: int = 0
    resolution: int = 512
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    cudnn_attention: bool = False
    device: str = "auto"
    save_every: int = 500
    sample_grid_every: int = 250
    log_every: int = 10
    resume: bool = False
    init_weights: str | None = None
    deploy_weights: str = "ema"
    paste_back: bool = True
    kl_weight: float = 0.0
    criterion_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    reward_gradient_checkpointing: bool = True
    aspect_buckets: int | tuple[float, ...] = 5
    memory_budget_gb: float | None = None
    eval_every: int = 250
    eval_split: str | None = "val"
    eval_conditions: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.aspect_buckets, list):
            object.__setattr__(self, "aspect_buckets", tuple(self.aspect_buckets))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line, field-named message on the first invalid value."""
        _check(bool(self.base_policy), "base_policy is required (a FLUX.1-Fill folder or hub id)")
        _check(bool(self.conditions_dir), "conditions_dir is required")
        _check(bool(self.output_dir), "output_dir is required")
        _check(self.algorithm in (1, 2), f"algorithm must be 1 or 2, got {self.algorithm!r}")
        _check(isinstance(self.task_probs, dict) and bool(self.task_probs), "task_probs must be a non-empty dict")
        for task, prob in self.task_probs.items():
            _check(task in TASKS, f"task_probs: unknown task {task!r} (expected one of {', '.join(TASKS)})")
            _check(
                isinstance(prob, int | float) and prob >= 0,
                f"task_probs[{task!r}] must be a number >= 0, got {prob!r}",
            )
        total = sum(self.task_probs.values())
        _check(total > 0, "task_probs must have at least one positive probability")
        _check(abs(total - 1.0) < 1e-6, f"task_probs must sum to 1, got {total:g}")
        _check(0.0 < self.hinge_lambda < 1.0, f"hinge_lambda must be in (0, 1), got {self.hinge_lambda}")
        _check(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _check(
            len(self.t_range) == 2 and 0.0 <= self.t_range[0] <= self.t_range[1] < 1.0,
            f"t_range must be [t1, t2] with 0 <= t1 <= t2 < 1, got {list(self.t_range)}",
        )
        _check(self.reference_steps >= 1, f"reference_steps must be >= 1, got {self.reference_steps}")
        _check(self.policy_steps >= 1, f"policy_steps must be >= 1, got {self.policy_steps}")
        _check(self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")
        _check(self.reference_true_cfg >= 1.0, f"reference_true_cfg must be >= 1, got {self.reference_true_cfg}")
        _check(
            1 <= self.max_sequence_length <= 512,
            f"max_sequence_length must be in [1, 512], got {self.max_sequence_length}",
        )
        _check(self.reward in ("p_yes", "log_odds"), f"reward must be 'p_yes' or 'log_odds', got {self.reward!r}")
        _check(self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}")
        _check(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        _check(bool(self.lora_targets), "lora_targets must name at least one module")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"betas must be two numbers in [0, 1), got {list(self.betas)}",
        )
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(
            self.resolution >= 16 and self.resolution % 16 == 0,
            f"resolution must be a positive multiple of 16 (FLUX packs 2x2 latents of an 8x VAE), got {self.resolution}",
        )
        _check(
            self.mixed_precision in ("auto", "no", "bf16"),
            f"mixed_precision must be 'auto', 'no' or 'bf16', got {self.mixed_precision!r}",
        )
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), f"bad device {self.device!r}")
        for name in ("save_every", "sample_grid_every", "log_every"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")
        _check(isinstance(self.resume, bool),
               f"resume must be true or false (the run resumes from its own output_dir), got {self.resume!r}")
        _check(self.kl_weight >= 0, f"kl_weight must be >= 0 (0 disables), got {self.kl_weight}")
        _check(self.init_weights is None or (isinstance(self.init_weights, str) and bool(self.init_weights.strip())),
               f"init_weights must be a policy weights folder or null, got {self.init_weights!r}")
        _check(self.parallelism in ("ddp", "fsdp"), f"parallelism must be 'ddp' or 'fsdp', got {self.parallelism!r}")
        _check(self.parallelism != "fsdp" or self.full_finetune,
               "parallelism 'fsdp' shards a full fine-tune; set full_finetune true (LoRA runs use 'ddp')")
        _check(not (self.init_weights and self.full_finetune),
               "init_weights starts LoRA weights from a LoRA checkpoint; a full fine-tune starts from base_policy")
        _check(
            self.deploy_weights in ("ema", "policy"),
            f"deploy_weights must be 'ema' or 'policy', got {self.deploy_weights!r}",
        )
        self._validate_criterion_weights()
        self._validate_scale()

    def _validate_scale(self) -> None:
        buckets = self.aspect_buckets
        if isinstance(buckets, tuple):
            _check(bool(buckets) and all(isinstance(r, int | float) and not isinstance(r, bool) and 0.2 <= r <= 5
                                         for r in buckets),
                   f"aspect_buckets must be a number of buckets or a list of width/height ratios in [0.2, 5], "
                   f"got {list(buckets)}")
        else:
            _check(isinstance(buckets, int) and not isinstance(buckets, bool) and 1 <= buckets <= 16,
                   f"aspect_buckets must be a number of buckets in [1, 16] or a list of ratios, got {buckets!r}")
        _check(self.memory_budget_gb is None or (isinstance(self.memory_budget_gb, int | float)
                                                  and self.memory_budget_gb > 0),
               f"memory_budget_gb must be a positive number of GiB or null, got {self.memory_budget_gb!r}")
        _check(isinstance(self.eval_every, int) and self.eval_every >= 0,
               f"eval_every must be >= 0 (0 disables), got {self.eval_every!r}")
        _check(isinstance(self.eval_conditions, int) and self.eval_conditions >= 1,
               f"eval_conditions must be >= 1, got {self.eval_conditions!r}")

    def _validate_criterion_weights(self) -> None:
        _check(isinstance(self.criterion_weights, dict), "criterion_weights must be a dict {task: {criterion: weight}}")
        for task, weights in self.criterion_weights.items():
            _check(task in TASKS, f"criterion_weights: unknown task {task!r} (expected one of {', '.join(TASKS)})")
            _check(isinstance(weights, dict), f"criterion_weights[{task!r}] must be a dict {{criterion: weight}}")
            for criterion, weight in weights.items():
                _check(
                    isinstance(weight, int | float) and not isinstance(weight, bool)
                    and math.isfinite(weight) and weight >= 0,
                    f"criterion_weights[{task!r}][{criterion!r}] must be a finite number >= 0, got {weight!r}",
                )
        if not self.reward_model:
            # No reward model to read a vocabulary from: the criteria are the built-in ones. With
            # one, the run checks the weights against its card's vocabulary (check_vocabulary).
            self.check_vocabulary(BUILTIN)

    def check_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Raise ``ValueError`` unless every ``criterion_weights`` criterion belongs to its task in
        ``vocabulary`` (the reward model's) and leaves each weighted task a positive weight."""
        for task, weights in self.criterion_weights.items():
            try:
                allowed = vocabulary.criteria_for(task)
            except VocabularyError as exc:
                raise ValueError(f"criterion_weights: {exc}") from None
            for criterion in weights:
                _check(
                    criterion in allowed,
                    f"criterion_weights[{task!r}]: unknown criterion {criterion!r} "
                    f"(expected one of {', '.join(allowed)})",
                )
            _check(
                any(self.criterion_weight(task, c) > 0 for c in allowed),
                f"criterion_weights[{task!r}]: every weight is 0, the task would have no loss",
            )

    def criterion_weight(self, task: str, criterion: str) -> float:
        """The weight of one criterion in its task's hinge average (1 unless ``criterion_weights`` says)."""
        return float(self.criterion_weights.get(task, {}).get(criterion, 1.0))

    @property
    def active_tasks(self) -> list[str]:
        """Tasks RL samples (probability > 0), in ``task_probs`` order."""
        return [task for task, prob in self.task_probs.items() if prob > 0]

    def scored_criteria(self, covered: dict[str, list[str]]) -> dict[str, list[str]]:
        """{active task: the ``covered`` criteria with a positive weight}; a list may be empty."""
        return {task: [c for c in covered.get(task, []) if self.criterion_weight(task, c) > 0]
                for task in self.active_tasks}

    @property
    def hinge_ceiling(self) -> float:
        """λ on the scale of the chosen reward (a probability, or its log-odds)."""
        if self.reward == "log_odds":
            return math.log(self.hinge_lambda / (1.0 - self.hinge_lambda))
        return self.hinge_lambda

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """Build from a JSON-like dict; unknown keys are an error (typos must not pass silently)."""
        return _from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("t_range", "betas", "lora_targets"):
            data[name] = list(data[name])
        if isinstance(data["aspect_buckets"], tuple):
            data["aspect_buckets"] = list(data["aspect_buckets"])
        return data

    def replace(self, **changes: Any) -> RLConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GenerateConfig:
    """Fill a conditions folder with a policy: ``weights`` is a run's ``final/`` or ``checkpoints/step-N/``.

    ``base_policy`` may be omitted when ``weights`` holds a ``policy.json`` naming its base.
    """

    conditions_dir: str
    out_dir: str
    base_policy: str | None = None
    weights: str | None = None
    seeds: tuple[int, ...] = (0,)
    num_inference_steps: int = 28
    guidance: float = 30.0
    true_cfg: float = 1.0
    negative_prompt: str = ""
    max_sequence_length: int = 512
    split: str | None = None
    device: str = "auto"
    paste_back: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.conditions_dir), "conditions_dir is required")
        _check(bool(self.out_dir), "out_dir is required")
        _check(bool(self.base_policy) or bool(self.weights), "give base_policy, weights (with policy.json), or both")
        _check(len(self.seeds) >= 1, "seeds must list at least one seed")
        _check(self.num_inference_steps >= 1, f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        _check(self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")
        _check(self.true_cfg >= 1.0, f"true_cfg must be >= 1, got {self.true_cfg}")
        _check(
            1 <= self.max_sequence_length <= 512,
            f"max_sequence_length must be in [1, 512], got {self.max_sequence_length}",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateConfig:
        return _from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seeds"] = list(data["seeds"])
        return data


#: The ``policy.json`` of a policy weights folder (kind, LoRA shape, base policy, step): the one
#: reader of the policy card (contracts.cards).
read_policy_meta = read_policy_card
