"""The two model cards: the reward model's ``onereward.json`` and a policy's ``policy.json``.

A card is the JSON file beside a model's weights that says what the weights are. Each has one
reader and one writer here; the engines, the Django apps and the synthetic world all go through
them.

Reward-model card (``<model>/onereward.json``, written by ``rewardtrain.engine`` into ``final/``):
``template_version``, ``criteria`` and ``vocabulary`` (what the model can word), ``trained_on``
({task: [criteria]} its snapshot held), ``base_model``, ``snapshot``, ``answer_tokens``,
``min_pixels`` / ``max_pixels``, ``training``, ``created_at``. Hand-written cards (tests, the
untrained control) may give the map as ``tasks`` instead.

**Precedence**: a non-empty ``trained_on`` wins; ``tasks`` is read only when ``trained_on`` is
missing or empty. ``trained_on`` is what the reward engine measured on its training rows, so it is
the authority; an empty one means "trained on nothing", which only the untrained control writes,
and that card names the criteria RL should still ask it about in ``tasks``. (The policy engine and
the policy services used to read the two keys in opposite orders.)

Policy card (``<weights>/policy.json``, written by the RL engine and ``save_policy_weights``):
``{"format": 1, "base_policy", "kind": "lora" | "full" | ..., "lora": {...} | None, "weights",
"step"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.vocabulary import Vocabulary, vocabulary_or_builtin

#: File name of the reward-model card inside a model folder.
REWARD_CARD = "onereward.json"
#: File name of the policy card inside a policy weights folder.
POLICY_CARD = "policy.json"
#: ``format`` of the policy cards written now.
POLICY_CARD_FORMAT = 1


# --- reward-model card ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardCard:
    """A reward model's card as read from ``path``; ``data`` is the whole JSON object."""

    path: Path
    data: dict[str, Any]

    @property
    def template_version(self) -> Any:
        return self.data.get("template_version")

    def trained_on(self) -> dict[str, list[str]] | None:
        """{task: [criteria]} the model was trained on (see the module's precedence rule), or None
        when the card has neither a ``trained_on`` nor a ``tasks`` map."""
        tasks = self.data.get("trained_on") or self.data.get("tasks")
        if not isinstance(tasks, dict):
            return None
        return {task: list(criteria or []) for task, criteria in tasks.items()}

    def vocabulary(self) -> Vocabulary:
        """The vocabulary the model words its queries with (the built-in one for cards written
        before cards carried one); raises VocabularyError when the card's is malformed."""
        return vocabulary_or_builtin(self.data.get("vocabulary"))


def read_reward_card(model_dir: str | Path) -> RewardCard | None:
    """The card of the reward model in ``model_dir``, or None when it has none (an untrained base).

    Raises ValueError (naming the file) when the card is not a JSON object.
    """
    path = Path(model_dir) / REWARD_CARD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return RewardCard(path=path, data=data)


def write_reward_card(model_dir: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as the card of the reward model in ``model_dir``; returns its path."""
    path = Path(model_dir) / REWARD_CARD
    path.write_text(json.dumps(data, indent=2))
    return path


# --- policy card ----------------------------------------------------------------------------------


def write_policy_card(
    folder: str | Path, *, base_policy: str | None, kind: str, lora: dict | None, weights: str, step: int
) -> Path:
    """Write ``policy.json`` into a policy weights folder; returns its path."""
    meta = {"format": POLICY_CARD_FORMAT, "base_policy": base_policy, "kind": kind, "lora": lora,
            "weights": weights, "step": step}
    path = Path(folder) / POLICY_CARD
    path.write_text(json.dumps(meta, indent=2))
    return path


def read_policy_card(folder: str | Path) -> dict[str, Any]:
    """The ``policy.json`` of a policy weights folder (kind, LoRA shape, base policy, step).

    Raises ValueError when the folder has none (it is not a policy weights folder).
    """
    path = Path(folder) / POLICY_CARD
    if not path.is_file():
        raise ValueError(f"{folder} has no {POLICY_CARD}: not a policy weights folder")
    return json.loads(path.read_text())
