"""The one versioned reward-model query template.

The OneReward paper (Fig. 5) does not publish its template wording, only its shape: the query
states the edit task and the evaluation criterion, includes the user's prompt *only* for criteria
that use it (text alignment in the paper), and asks whether the FIRST image is better than the
SECOND. The task and criterion words come from a vocabulary (contracts.vocabulary): the snapshot's
for training, the model card's for scoring. This module is the single place where the wording
around them lives; `TEMPLATE_VERSION` is stored with every trained model (`final/onereward.json`)
so a scorer can refuse a model trained with a different wording.
"""

from __future__ import annotations

from typing import Any

from contracts.vocabulary import BUILTIN, Vocabulary, VocabularyError

#: Bump whenever the wording below (or the built-in vocabulary's) changes: models trained on another
#: version are incompatible.
TEMPLATE_VERSION = "onereward-query-v2"

#: The answer words; each must be a single token right after the assistant header.
YES = "Yes"
NO = "No"


def _in_sentence(name: str) -> str:
    """A display name as it reads mid-sentence: "Image fill" -> "image fill", "OCR score" unchanged."""
    if len(name) > 1 and name[1].isupper():
        return name
    return name[:1].lower() + name[1:]


def validate_task_criterion(task: str, criterion: str, vocabulary: Vocabulary = BUILTIN) -> None:
    """Raise ValueError unless `criterion` is a criterion of `task` in `vocabulary`."""
    vocabulary.check_pair(task, criterion)


def build_query(task: str, criterion: str, prompt: str | None = None, vocabulary: Vocabulary = BUILTIN) -> str:
    """Return the query text for one (task, criterion) judgement, worded from `vocabulary`.

    The prompt is included only for a criterion that ``uses_prompt`` (paper §4.3: other criteria
    must judge visual quality without semantic bias), where it is required. For every other
    criterion the prompt is ignored, so callers can pass a row's prompt unconditionally.
    """
    spec = vocabulary.check_pair(task, criterion)
    lines = [
        f"Task: {_in_sentence(vocabulary.task(task).name)}.",
        f"Evaluation criterion: {_in_sentence(spec.name)} ({spec.description.strip()}).",
    ]
    if spec.uses_prompt:
        if not prompt or not prompt.strip():
            raise VocabularyError(f"criterion {criterion!r} needs a non-empty prompt")
        lines.append(f"Prompt: {prompt.strip()}")
    lines.append(f"Is the first image better than the second image? Answer {YES} or {NO}.")
    return "\n".join(lines)


def build_messages(
    task: str, criterion: str, prompt: str | None = None, vocabulary: Vocabulary = BUILTIN
) -> list[dict[str, Any]]:
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
                {"type": "text", "text": build_query(task, criterion, prompt, vocabulary)},
                {"type": "image"},
                {"type": "image"},
            ],
        }
    ]
