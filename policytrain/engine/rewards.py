"""The reward inside RL: which criteria a run scores per task, and scoring them.

The criteria come from the reward model's card (``onereward.json``); ``score_criteria`` scores
every criterion of a batch in one reward-model forward when the reward supports it (``ScorerReward``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from contracts.cards import read_reward_card
from contracts.vocabulary import BUILTIN, Vocabulary, VocabularyError

from .config import RLConfig
from .pipeline import Condition

#: ``reward_fn(first, second, task, criterion, prompts) -> Tensor[B]``: a reward in code (toy rewards in tests).
RewardFn = Callable[[torch.Tensor, torch.Tensor, str, str, list[str]], torch.Tensor]


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
