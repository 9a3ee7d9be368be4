"""Task types, criteria and their versioned guidelines: the vocabulary as data.

The paper's vocabulary is seeded (annotation.seed); curators add and edit task types and criteria
here. A slug is the name a snapshot, a reward model and every export use for its task or
criterion, so it cannot change once judgments were made under it; names, descriptions and which
criteria a task offers can (a snapshot records the wording it was built with).
"""
from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet

from contracts.vocabulary import CriterionSpec, TaskSpec, Vocabulary, VocabularyError, check_slug
from core.errors import ApplicationError, Conflict

from ..models import Criterion, GuidelineVersion, Judgment, TaskType

_TASK_FIELDS = ("slug", "name", "fixed_prompt", "description")
_CRITERION_FIELDS = ("slug", "name", "description", "uses_prompt")


@transaction.atomic
def guideline_publish(*, criterion: Criterion, body_markdown: str, user: User | None = None,
                      examples: list | None = None) -> GuidelineVersion:
    """Publish a new guideline version; earlier judgments keep pointing at theirs."""
    if not body_markdown.strip():
        raise ApplicationError("A guideline needs text.", fields={"body_markdown": ["This field may not be blank."]})
    # Lock the criterion row so two curators publishing at once get consecutive versions.
    Criterion.objects.select_for_update().get(pk=criterion.pk)
    latest = criterion.guidelines.aggregate(v=Max("version"))["v"] or 0
    return GuidelineVersion.objects.create(
        criterion=criterion, version=latest + 1, body_markdown=body_markdown, examples=examples or [], created_by=user
    )


def _check_slug(model: type[TaskType] | type[Criterion], slug: str, *, exclude_pk: int | None = None) -> None:
    what = "task type" if model is TaskType else "criterion"
    try:
        check_slug(slug, what)
    except VocabularyError as exc:
        raise ApplicationError(f"Invalid {what} slug.", fields={"slug": [str(exc)]}) from None
    if model.objects.filter(slug=slug).exclude(pk=exclude_pk).exists():
        raise ApplicationError(f"A {what} with this slug exists.", fields={"slug": [f"'{slug}' is taken."]})


def _by_slugs(model: type[TaskType] | type[Criterion], slugs: Iterable[str], field: str) -> list:
    slugs = list(dict.fromkeys(slugs))
    found = {o.slug: o for o in model.objects.filter(slug__in=slugs)}
    unknown = [s for s in slugs if s not in found]
    if unknown:
        raise ApplicationError(f"Unknown {field}.", fields={field: [f"No such slug: {', '.join(unknown)}."]})
    return [found[s] for s in slugs]


def _refuse_slug_change(obj: TaskType | Criterion, new_slug: str, judged: bool) -> None:
    if new_slug != obj.slug and judged:
        raise Conflict(
            f"'{obj.slug}' cannot be renamed: judgments were made under it, and snapshots, reward models "
            "and exports name it by its slug.",
            fields={"slug": ["Slugs are immutable once judgments exist."]}, code="slug_in_use",
        )


def _description(text: str) -> str:
    # The reward query states it in parentheses, so surrounding whitespace would show there.
    if not text.strip():
        raise ApplicationError("A criterion needs a description.", fields={"description": ["This field may not be blank."]})
    return text.strip()


def _save(obj: TaskType | Criterion) -> None:
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:  # a concurrent create took the slug between the check and the insert
        raise ApplicationError("This slug is taken.", fields={"slug": [f"'{obj.slug}' is taken."]}) from None


def judgments_under(obj: TaskType | Criterion) -> QuerySet[Judgment]:
    """The judgments made under a task type or criterion: while there are any, its slug is fixed
    (snapshots, reward-model cards and exports name it by its slug)."""
    if isinstance(obj, Criterion):
        return Judgment.objects.filter(criterion=obj)
    return Judgment.objects.filter(item__campaign__task_type=obj)


def _update(obj: TaskType | Criterion, changes: dict, allowed: tuple[str, ...]) -> None:
    """Apply and save field ``changes`` (a row locked by the caller); a slug change is refused
    (409) while judgments exist under it and must stay well-formed and unique."""
    unknown = set(changes) - set(allowed)
    if unknown:
        raise TypeError(f"unknown {type(obj).__name__} field(s): {', '.join(sorted(unknown))}")
    if "slug" in changes:
        _refuse_slug_change(obj, changes["slug"], judgments_under(obj).exists())
        _check_slug(type(obj), changes["slug"], exclude_pk=obj.pk)
    for key, value in changes.items():
        setattr(obj, key, value)
    _save(obj)


@transaction.atomic
def task_type_create(*, slug: str, name: str, fixed_prompt: str = "", description: str = "",
                     criteria: Iterable[str] = ()) -> TaskType:
    """Create a task type offering the given criteria (slugs); field errors for a bad or taken slug."""
    _check_slug(TaskType, slug)
    chosen = _by_slugs(Criterion, criteria, "criteria")
    task = TaskType(slug=slug, name=name, fixed_prompt=fixed_prompt, description=description)
    _save(task)
    task.criteria.set(chosen)
    return task


@transaction.atomic
def task_type_update(*, task_type: TaskType, criteria: Iterable[str] | None = None, **changes) -> TaskType:
    """Change a task type's fields (any of slug, name, fixed_prompt, description) and, when given, the
    criteria it offers. Renaming the slug of a task with judgments is a Conflict (409)."""
    task = TaskType.objects.select_for_update().get(pk=task_type.pk)
    chosen = _by_slugs(Criterion, criteria, "criteria") if criteria is not None else None
    _update(task, changes, _TASK_FIELDS)
    if chosen is not None:
        task.criteria.set(chosen)
    return task


@transaction.atomic
def criterion_create(*, slug: str, name: str, description: str, task_types: Iterable[str],
                     uses_prompt: bool = False) -> Criterion:
    """Create a criterion offered by the given task types (slugs). Publish its guideline
    (``guideline_publish``) before a campaign uses it: every judgment records its guideline version."""
    _check_slug(Criterion, slug)
    tasks = _by_slugs(TaskType, task_types, "task_types")
    criterion = Criterion(slug=slug, name=name, description=_description(description), uses_prompt=uses_prompt)
    _save(criterion)
    criterion.task_types.set(tasks)
    return criterion


@transaction.atomic
def criterion_update(*, criterion: Criterion, task_types: Iterable[str] | None = None, **changes) -> Criterion:
    """Change a criterion's fields (any of slug, name, description, uses_prompt) and, when given, the
    task types that offer it. Renaming the slug of a criterion with judgments is a Conflict (409)."""
    crit = Criterion.objects.select_for_update().get(pk=criterion.pk)
    if "description" in changes:
        changes["description"] = _description(changes["description"])
    tasks = _by_slugs(TaskType, task_types, "task_types") if task_types is not None else None
    _update(crit, changes, _CRITERION_FIELDS)
    if tasks is not None:
        crit.task_types.set(tasks)
    return crit


def vocabulary_from_db(*, task_criteria: dict[str, Iterable[str]]) -> Vocabulary:
    """The vocabulary of the given {task: criteria} (slugs) as the database words it now: names,
    fixed prompts, descriptions and ``uses_prompt``; each criterion lists the given tasks it was
    paired with. What a snapshot records (manifest ``"vocabulary"``) for the reward engine."""
    pairs = {(t, c) for t, crits in task_criteria.items() for c in crits}
    tasks = TaskType.objects.filter(slug__in={t for t, _ in pairs}).order_by("id")
    criteria = Criterion.objects.filter(slug__in={c for _, c in pairs}).order_by("id")
    task_slugs = [t.slug for t in tasks]
    return Vocabulary(
        tasks=tuple(TaskSpec(slug=t.slug, name=t.name, fixed_prompt=t.fixed_prompt) for t in tasks),
        criteria=tuple(
            CriterionSpec(slug=c.slug, name=c.name, description=c.description, uses_prompt=c.uses_prompt,
                          tasks=tuple(t for t in task_slugs if (t, c.slug) in pairs))
            for c in criteria
        ),
    )
