"""The fixed task and criterion vocabulary shared by every layer (docs/engine-contracts.md).

Kept free of Django imports so the engines' own copy (rewardtrain.engine.template) can be
checked against it in tests.
"""
from __future__ import annotations

FILL, EXTEND, REMOVAL = "fill", "extend", "removal"
TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS, REMOVAL_QUALITY = (
    "text_alignment",
    "consistency",
    "structure",
    "aesthetics",
    "removal_quality",
)

TASK_NAMES = {FILL: "Image fill", EXTEND: "Image extend", REMOVAL: "Object removal"}
TASK_CHOICES = list(TASK_NAMES.items())
CRITERION_NAMES = {
    TEXT_ALIGNMENT: "Text alignment",
    CONSISTENCY: "Consistency",
    STRUCTURE: "Structure",
    AESTHETICS: "Aesthetics",
    REMOVAL_QUALITY: "Removal quality",
}
TASK_CRITERIA = {
    FILL: (TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS),
    EXTEND: (TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS),
    REMOVAL: (REMOVAL_QUALITY,),
}
# Fixed prompts where the paper (or its official repo) uses one.
FIXED_PROMPTS = {REMOVAL: "remove the specified object", EXTEND: "high-definition, perfect composition"}

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


def split_for_key(key: str) -> str:
    """Deterministic train/val/test split for a sample key (80/10/10), never per pair."""
    import hashlib

    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else ("val" if bucket < 90 else "test")
