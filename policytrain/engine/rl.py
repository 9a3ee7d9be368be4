"""OneReward RL for a FLUX.1-Fill policy: Algorithm 1 (fixed reference) and 2 (EMA reference).

One training step (the OneReward paper, arXiv 2508.21066: Algorithm 1 in Sec. 4.4, Algorithm 2 in Sec. 5.3):
  task ~ task_probs; batch of conditions of that task; two independent noises;
  reference image = full no-grad denoise (base model: LoRA disabled / frozen copy; Alg. 2: EMA weights);
  policy image = no-grad denoise to k ∈ [t1·N, t2·N], one grad-enabled step, x0 = x_k − σ_k·v, decode;
  loss = mean over the task's criteria (weighted by ``criterion_weights``, equal by default) of
         max(0, λ − reward(policy first, reference second));
  no KL, as in the paper, unless ``kl_weight`` > 0 adds a velocity anchor to the base model.
Then AdamW, an EMA update, metrics, checkpoints and sample grids. Runs under torchrun (rank 0 writes).

The engine is a recipe (``recipe.RLRecipe``: set-up / step / save / final) over small modules:
``rewards`` (criteria and scoring), ``weights`` (trainable weights, EMA, reference), ``batches``
(prompt embeddings, aspect buckets, held-out set), ``checkpoints`` (resumable checkpoints,
``final/``) and ``evaluate`` (the held-out reward curve). This module is the engine's public face:
``train`` and the names callers use, re-exported from where they live.
"""

from __future__ import annotations

from enginekit.runs import RunCancelled

from .batches import (
    PROMPT_EMBEDS_DIR,
    bucket_conditions,
    heldout_conditions,
    load_batch,
    pick_bucket,
    prepare_prompt_embeds,
)
from .checkpoints import (
    CHECKPOINT_MARKER,
    latest_checkpoint,
    load_checkpoint,
    load_init_weights,
    save_checkpoint,
    save_final,
    save_sample_grid,
)
from .evaluate import evaluate_heldout
from .pipeline import load_conditions
from .recipe import (
    SHARD_UNIT_CLASSES,
    ProgressFn,
    RLRecipe,
    _resolve_dtype,
    configure_attention_kernels,
    train,
)
from .rewards import (
    RewardFn,
    ScorerReward,
    check_every_condition_scored,
    criterion_applies,
    criterion_rows,
    load_reward_fn,
    read_reward_criteria,
    resolve_task_criteria,
    score_criteria,
)
from .weights import (
    TrainState,
    ema_update,
    reference_rollout,
    setup_trainable,
    swapped_weights,
    velocity_anchor,
)

__all__ = [
    "CHECKPOINT_MARKER", "PROMPT_EMBEDS_DIR", "SHARD_UNIT_CLASSES", "ProgressFn", "RLRecipe", "RewardFn",
    "RunCancelled", "ScorerReward", "TrainState", "_resolve_dtype", "bucket_conditions",
    "check_every_condition_scored", "configure_attention_kernels", "criterion_applies", "criterion_rows",
    "ema_update", "evaluate_heldout", "heldout_conditions", "latest_checkpoint", "load_batch",
    "load_checkpoint", "load_conditions", "load_init_weights", "load_reward_fn", "pick_bucket",
    "prepare_prompt_embeds", "read_reward_criteria", "reference_rollout", "resolve_task_criteria",
    "save_checkpoint", "save_final", "save_sample_grid", "score_criteria", "setup_trainable",
    "swapped_weights", "train", "velocity_anchor",
]
