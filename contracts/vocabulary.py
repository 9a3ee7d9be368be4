"""The task and criterion vocabulary: its schema, its JSON form and the built-in (paper) seeds.

Task types and criteria are data: curators add and edit them in the database, a dataset snapshot
carries the ones it uses (``manifest.json`` ``"vocabulary"``), and a trained reward model carries
the one it was trained on (``final/onereward.json``). This module only defines what a vocabulary
looks like and holds the paper's vocabulary, which seeds a new database and stands in for
snapshots and models written before vocabularies travelled with them.

A criterion's ``description`` is what annotators and the reward model read: the reward query says
``Evaluation criterion: <name> (<description>).`` (rewardtrain.engine.template).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Slugs are lowercase words joined by ``_`` or ``-`` (URL- and column-safe), at most 50 characters.
SLUG_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
SLUG_MAX_LENGTH = 50


class VocabularyError(ValueError):
    """A vocabulary (or its JSON form) is malformed; the message names the offending entry."""


def check_slug(slug: Any, what: str) -> None:
    """Raise VocabularyError unless ``slug`` is slug-shaped (see SLUG_RE)."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug) or len(slug) > SLUG_MAX_LENGTH:
        raise VocabularyError(
            f"{what} slug {slug!r} must be lowercase letters and digits joined by '_' or '-' "
            f"(at most {SLUG_MAX_LENGTH} characters)"
        )


def _text(value: Any, what: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise VocabularyError(f"{what} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class TaskSpec:
    """An edit task. ``fixed_prompt`` is used when a sample has none (removal, prompt-free extend)."""

    slug: str
    name: str
    fixed_prompt: str = ""


@dataclass(frozen=True)
class CriterionSpec:
    """An evaluation criterion of one or more tasks.

    ``uses_prompt``: the user's prompt is shown to annotators and put in the reward query, and a
    pair of this criterion needs one (the paper keeps it to text alignment, so the other criteria
    judge visual quality without semantic bias).
    """

    slug: str
    name: str
    description: str
    tasks: tuple[str, ...]
    uses_prompt: bool = False


@dataclass(frozen=True)
class Vocabulary:
    """Tasks and criteria in display order (tasks first to last, criteria within a task likewise)."""

    tasks: tuple[TaskSpec, ...]
    criteria: tuple[CriterionSpec, ...]
    _tasks: dict[str, TaskSpec] = field(init=False, repr=False, compare=False)
    _criteria: dict[str, CriterionSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "criteria", tuple(self.criteria))
        self.validate()
        object.__setattr__(self, "_tasks", {t.slug: t for t in self.tasks})
        object.__setattr__(self, "_criteria", {c.slug: c for c in self.criteria})

    def validate(self) -> None:
        """Raise VocabularyError on the first malformed entry (slugs, names, references)."""
        task_slugs: set[str] = set()
        for task in self.tasks:
            check_slug(task.slug, "task")
            if task.slug in task_slugs:
                raise VocabularyError(f"task {task.slug!r} is listed twice")
            task_slugs.add(task.slug)
            _text(task.name, f"task {task.slug!r} name")
            _text(task.fixed_prompt, f"task {task.slug!r} fixed_prompt", required=False)
        seen: set[str] = set()
        for crit in self.criteria:
            check_slug(crit.slug, "criterion")
            if crit.slug in seen:
                raise VocabularyError(f"criterion {crit.slug!r} is listed twice")
            seen.add(crit.slug)
            _text(crit.name, f"criterion {crit.slug!r} name")
            _text(crit.description, f"criterion {crit.slug!r} description")
            if not isinstance(crit.uses_prompt, bool):
                raise VocabularyError(f"criterion {crit.slug!r} uses_prompt must be true or false")
            unknown = [t for t in crit.tasks if t not in task_slugs]
            if unknown:
                raise VocabularyError(f"criterion {crit.slug!r} names unknown task(s) {', '.join(map(str, unknown))}")

    # ------------------------------------------------------------------------------------ lookups
    @property
    def task_slugs(self) -> tuple[str, ...]:
        return tuple(t.slug for t in self.tasks)

    def task(self, slug: str) -> TaskSpec:
        """The task ``slug``; VocabularyError names the known ones when it is unknown."""
        try:
            return self._tasks[slug]
        except KeyError:
            raise VocabularyError(f"unknown task {slug!r}; expected one of {', '.join(self.task_slugs)}") from None

    def criterion(self, slug: str) -> CriterionSpec:
        """The criterion ``slug``; VocabularyError when it is unknown."""
        try:
            return self._criteria[slug]
        except KeyError:
            known = ", ".join(c.slug for c in self.criteria)
            raise VocabularyError(f"unknown criterion {slug!r}; expected one of {known}") from None

    def criteria_for(self, task: str) -> tuple[str, ...]:
        """Slugs of the criteria of ``task``, in vocabulary order (unknown task: VocabularyError)."""
        self.task(task)
        return tuple(c.slug for c in self.criteria if task in c.tasks)

    @property
    def task_criteria(self) -> dict[str, tuple[str, ...]]:
        """{task: its criteria}, for every task (in order)."""
        return {t.slug: self.criteria_for(t.slug) for t in self.tasks}

    def check_pair(self, task: str, criterion: str) -> CriterionSpec:
        """The criterion when it applies to ``task``, else VocabularyError saying which would."""
        allowed = self.criteria_for(task)
        if criterion not in allowed:
            raise VocabularyError(
                f"criterion {criterion!r} is not valid for task {task!r}; expected one of {', '.join(allowed)}"
            )
        return self._criteria[criterion]

    def restricted_to(self, task_criteria: dict[str, list[str] | tuple[str, ...]]) -> Vocabulary:
        """The sub-vocabulary of the given {task: criteria}, each criterion keeping only those tasks."""
        for task, crits in task_criteria.items():
            for crit in crits:
                self.check_pair(task, crit)
        tasks = tuple(t for t in self.tasks if task_criteria.get(t.slug))
        criteria = tuple(
            CriterionSpec(
                slug=c.slug, name=c.name, description=c.description, uses_prompt=c.uses_prompt,
                tasks=tuple(t.slug for t in tasks if c.slug in task_criteria[t.slug]),
            )
            for c in self.criteria
            if any(c.slug in task_criteria[t.slug] for t in tasks)
        )
        return Vocabulary(tasks=tasks, criteria=criteria)

    # ---------------------------------------------------------------------------------- JSON form
    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"tasks": {slug: {name, fixed_prompt}}, "criteria": {slug: {name,
        description, uses_prompt, tasks}}}`` (object key order is the vocabulary order)."""
        return {
            "tasks": {t.slug: {"name": t.name, "fixed_prompt": t.fixed_prompt} for t in self.tasks},
            "criteria": {
                c.slug: {"name": c.name, "description": c.description, "uses_prompt": c.uses_prompt,
                         "tasks": list(c.tasks)}
                for c in self.criteria
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> Vocabulary:
        """Parse the JSON form written by ``to_dict``; VocabularyError names what is wrong.

        Writers may sort JSON keys (snapshot manifests do), so built-in entries come back in the
        paper's order and the others after them, in the order given.
        """
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict) or not isinstance(
            data.get("criteria"), dict
        ):
            raise VocabularyError("a vocabulary is an object with 'tasks' and 'criteria' objects")
        unknown = set(data) - {"tasks", "criteria"}
        if unknown:
            raise VocabularyError(f"unknown vocabulary key(s) {', '.join(sorted(unknown))}")
        tasks = []
        for slug, task in data["tasks"].items():
            if not isinstance(task, dict):
                raise VocabularyError(f"task {slug!r} must be an object")
            tasks.append(TaskSpec(slug=slug, name=task.get("name"), fixed_prompt=task.get("fixed_prompt") or ""))
        criteria = []
        for slug, crit in data["criteria"].items():
            if not isinstance(crit, dict) or not isinstance(crit.get("tasks"), list):
                raise VocabularyError(f"criterion {slug!r} must be an object with a 'tasks' list")
            criteria.append(
                CriterionSpec(
                    slug=slug, name=crit.get("name"), description=crit.get("description"),
                    uses_prompt=crit.get("uses_prompt", False), tasks=tuple(crit["tasks"]),
                )
            )
        return cls(tasks=tuple(sorted(tasks, key=_builtin_first)), criteria=tuple(sorted(criteria, key=_builtin_first)))


def vocabulary_or_builtin(data: Any) -> Vocabulary:
    """The vocabulary of a manifest or model card's ``"vocabulary"`` entry, or BUILTIN when absent
    (snapshots and models written before vocabularies travelled with them used the paper's)."""
    return BUILTIN if data is None else Vocabulary.from_dict(data)


def _builtin_first(entry: TaskSpec | CriterionSpec) -> int:
    order = _TASK_ORDER if isinstance(entry, TaskSpec) else _CRITERION_ORDER
    return order.get(entry.slug, len(order))  # sorted() is stable: the others keep their order


def is_builtin(vocabulary: Vocabulary) -> bool:
    """True when ``vocabulary`` is part of the built-in one, worded exactly as it is."""
    try:
        return BUILTIN.restricted_to(vocabulary.task_criteria) == vocabulary
    except VocabularyError:
        return False


# ------------------------------------------------------------------------------------ the seeds
FILL, EXTEND, REMOVAL = "fill", "extend", "removal"
TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS, REMOVAL_QUALITY = (
    "text_alignment",
    "consistency",
    "structure",
    "aesthetics",
    "removal_quality",
)

#: The paper's vocabulary (Table 1 order). Names and descriptions are the reward query's wording
#: (template TEMPLATE_VERSION): changing one changes what every built-in model was trained on.
BUILTIN = Vocabulary(
    tasks=(
        TaskSpec(FILL, "Image fill"),
        # Fixed prompts where the paper (or its official repo) uses one.
        TaskSpec(EXTEND, "Image extend", "high-definition, perfect composition"),
        TaskSpec(REMOVAL, "Object removal", "remove the specified object"),
    ),
    criteria=(
        CriterionSpec(TEXT_ALIGNMENT, "Text alignment", "how well the edited region matches the prompt",
                      (FILL, EXTEND), uses_prompt=True),
        CriterionSpec(CONSISTENCY, "Consistency", "how seamlessly the edited region blends with the rest of the image",
                      (FILL, EXTEND)),
        CriterionSpec(STRUCTURE, "Structure", "plausible shapes, no distorted or broken objects", (FILL, EXTEND)),
        CriterionSpec(AESTHETICS, "Aesthetics", "overall visual appeal, colour and detail", (FILL, EXTEND)),
        CriterionSpec(REMOVAL_QUALITY, "Removal quality",
                      "the object is gone and the background is restored cleanly", (REMOVAL,)),
    ),
)
_TASK_ORDER = {t.slug: i for i, t in enumerate(BUILTIN.tasks)}
_CRITERION_ORDER = {c.slug: i for i, c in enumerate(BUILTIN.criteria)}
