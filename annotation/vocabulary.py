"""The built-in task and criterion vocabulary as annotation uses it, and the first guidelines.

The vocabulary itself (schema and seeds) lives in ``contracts.vocabulary``; the database rows seeded
from it are the live vocabulary, which curators extend through the API. The names below are views of
the built-in seeds for code that only ever handles the paper's tasks.
"""
from __future__ import annotations

from contracts.splits import split_for_key  # noqa: F401 - the one split function, re-exported
from contracts.vocabulary import (  # noqa: F401 - re-exported slugs
    AESTHETICS,
    BUILTIN,
    CONSISTENCY,
    EXTEND,
    FILL,
    REMOVAL,
    REMOVAL_QUALITY,
    STRUCTURE,
    TEXT_ALIGNMENT,
)

TASK_NAMES = {t.slug: t.name for t in BUILTIN.tasks}
TASK_CHOICES = list(TASK_NAMES.items())
CRITERION_NAMES = {c.slug: c.name for c in BUILTIN.criteria}
TASK_CRITERIA = BUILTIN.task_criteria
FIXED_PROMPTS = {t.slug: t.fixed_prompt for t in BUILTIN.tasks if t.fixed_prompt}

# The first version of each built-in criterion's guideline (annotators read these in full).
INITIAL_GUIDELINES = {
    TEXT_ALIGNMENT: (
        "Does the edited region show **what the prompt asks for** — the right object, colour, "
        "attributes, position and, for quoted words, the exact letters? Ignore overall beauty."
    ),
    CONSISTENCY: (
        "Does the edited region **blend with its surroundings** — colour, texture, lighting and "
        "style continue across the mask border with no visible seam?"
    ),
    STRUCTURE: (
        "Is the geometry **clean and plausible** — contours, perspective and layout intact, no "
        "melted, duplicated or broken shapes?"
    ),
    AESTHETICS: (
        "Which image is **more pleasing overall** — fewer artefacts, less noise, better "
        "composition and fidelity?"
    ),
    REMOVAL_QUALITY: (
        "Is the object **completely gone** and the hole filled like the background around it, "
        "with **no new object** and no smear or residue?"
    ),
}
