"""The one versioned reward-model query template.

The OneReward paper (Fig. 5) does not publish its template wording, only its shape: the query
states the edit task and the evaluation criterion, includes the user's prompt *only* for text
alignment, and asks whether the FIRST image is better than the SECOND. This module is the single
place where that wording lives; `TEMPLATE_VERSION` is stored with every trained model
(`final/onereward.json`) so a scorer can refuse a model trained with a different wording.
"""

from __future__ import annotations

from typing import Any

#: Bump whenever the wording below changes: models trained on another version are incompatible.
TEMPLATE_VERSION = "onereward-query-v2"

#: Task slugs, in the order of the paper's Table 1.
TASKS: tuple[str, ...] = ("fill", "extend", "removal")

#: Valid criteria per task (docs/engine-contracts.md vocabulary).
CRITERIA: dict[str, tuple[str, ...]] = {
    "fill": ("text_alignment", "consistency", "structure", "aesthetics"),
    "extend": ("text_alignment", "consistency", "structure", "aesthetics"),
    "removal": ("removal_quality",),
}

TASK_NAMES: dict[str, str] = {
    "fill": "image fill",
    "extend": "image extend",
    "removal": "object removal",
}

#: What each criterion asks the model to judge; part of the versioned wording.
CRITERION_DESCRIPTIONS: dict[str, str] = {
    "text_alignment": "text alignment (how well the edited region matches the prompt)",
    "consistency": "consistency (how seamlessly the edited region blends with the rest of the image)",
    "structure": "structure (plausible shapes, no distorted or broken objects)",
    "aesthetics": "aesthetics (overall visual appeal, colour and detail)",
    "removal_quality": "removal quality (the object is gone and the background is restored cleanly)",
}

#: The answer words; each must be a single token right after the assistant header.
YES = "Yes"
NO = "No"


def validate_task_criterion(task: str, criterion: str) -> None:
    """Raise ValueError unless `criterion` is a valid criterion of `task`."""
    if task not in CRITERIA:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if criterion not in CRITERIA[task]:
        raise ValueError(
            f"criterion {criterion!r} is not valid for task {task!r}; expected one of {', '.join(CRITERIA[task])}"
        )


def build_query(task: str, criterion: str, prompt: str | None = None) -> str:
    """Return the query text for one (task, criterion) judgement.

    The prompt is included only for ``text_alignment`` (paper §4.3: other criteria must judge
    visual quality without semantic bias), where it is required. For every other criterion the
    prompt is ignored, so callers can pass a row's prompt unconditionally.
    """
    validate_task_criterion(task, criterion)
    lines = [
        f"Task: {TASK_NAMES[task]}.",
        f"Evaluation criterion: {CRITERION_DESCRIPTIONS[criterion]}.",
    ]
    if criterion == "text_alignment":
        if not prompt or not prompt.strip():
            raise ValueError("criterion 'text_alignment' needs a non-empty prompt")
        lines.append(f"Prompt: {prompt.strip()}")
    lines.append(f"Is the first image better than the second image? Answer {YES} or {NO}.")
    return "\n".join(lines)


def build_messages(task: str, criterion: str, prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for the processor's chat template: the query, then the first and second image.

    The query comes first (v2) so that, in a causal model, every image token is read in the light
    of the task and criterion. With the images first (v1) only the last few tokens could combine
    the criterion with the images. On the demo snapshot, where the criteria disagree about the same
    pair, the tiny reward model then never left the order-symmetric ln 2 saddle: label accuracy
    was 0.47 with v1 and 0.68 with v2 at equal steps.
    """
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": build_query(task, criterion, prompt)},
                {"type": "image"},
                {"type": "image"},
            ],
        }
    ]
