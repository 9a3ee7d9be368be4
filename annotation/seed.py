"""The fixed taxonomy (task types, criteria, first guidelines) and role groups.

Written by migration 0002 and re-applied after every ``flush`` (post_migrate), so a database
that was emptied — e.g. between transactional tests — never loses the paper's vocabulary.
Idempotent. Uses the ``apps`` registry it is given, as migrations must.
"""
from __future__ import annotations

from . import vocabulary as vocab
from .roles import ROLE_PERMISSIONS


def seed_taxonomy(apps) -> None:
    Criterion = apps.get_model("annotation", "Criterion")
    GuidelineVersion = apps.get_model("annotation", "GuidelineVersion")
    TaskType = apps.get_model("annotation", "TaskType")
    Group = apps.get_model("auth", "Group")
    made = {}
    for slug, name in vocab.CRITERION_NAMES.items():
        criterion, _ = Criterion.objects.get_or_create(
            slug=slug, defaults={"name": name, "uses_prompt": slug == vocab.TEXT_ALIGNMENT}
        )
        if not GuidelineVersion.objects.filter(criterion=criterion).exists():
            GuidelineVersion.objects.create(criterion=criterion, version=1, body_markdown=vocab.INITIAL_GUIDELINES[slug])
        made[slug] = criterion
    for slug, name in vocab.TASK_NAMES.items():
        task, created = TaskType.objects.get_or_create(
            slug=slug, defaults={"name": name, "fixed_prompt": vocab.FIXED_PROMPTS.get(slug, "")}
        )
        if created:
            task.criteria.set([made[c] for c in vocab.TASK_CRITERIA[slug]])
    Permission = apps.get_model("auth", "Permission")
    for role in ("annotator", "curator", "scientist"):
        group, _ = Group.objects.get_or_create(name=role)
        # Permissions appear only after migrate (post_migrate); until then this grants what exists,
        # and the post_migrate run grants the rest.
        for app_label, codenames in ROLE_PERMISSIONS.get(role, {}).items():
            group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


def _after_migrate(sender, apps=None, using="default", **kwargs) -> None:
    """post_migrate handler: ``migrate`` passes its state registry, ``flush`` passes none."""
    if apps is None:
        from django.apps import apps
    try:
        apps.get_model("annotation", "Criterion")
    except LookupError:  # migrating backwards past 0001
        return
    seed_taxonomy(apps)
