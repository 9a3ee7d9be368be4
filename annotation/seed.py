"""The built-in taxonomy (task types, criteria, first guidelines) and role groups.

The vocabulary is the paper's (``contracts.vocabulary.BUILTIN``). Written by migrations 0002 and
0006 and re-applied after every ``flush`` (post_migrate), so a database that was emptied — e.g.
between transactional tests — never loses the paper's vocabulary. Idempotent, and it never
overwrites what curators changed: rows that exist keep their names and criteria; only an empty
criterion description is filled. Uses the ``apps`` registry it is given, as migrations must.
"""
from __future__ import annotations

from contracts.vocabulary import BUILTIN
from core.roles import ROLE_PERMISSIONS

from . import vocabulary as vocab


def seed_taxonomy(apps) -> None:
    Criterion = apps.get_model("annotation", "Criterion")
    GuidelineVersion = apps.get_model("annotation", "GuidelineVersion")
    TaskType = apps.get_model("annotation", "TaskType")
    Group = apps.get_model("auth", "Group")
    # Migration 0002 runs this before 0006 adds the description column.
    has_description = any(f.name == "description" for f in Criterion._meta.get_fields())
    made = {}
    for spec in BUILTIN.criteria:
        criterion, _ = Criterion.objects.get_or_create(
            slug=spec.slug, defaults={"name": spec.name, "uses_prompt": spec.uses_prompt}
        )
        if has_description and not criterion.description:
            criterion.description = spec.description
            criterion.save(update_fields=["description"])
        if not GuidelineVersion.objects.filter(criterion=criterion).exists():
            GuidelineVersion.objects.create(
                criterion=criterion, version=1, body_markdown=vocab.INITIAL_GUIDELINES[spec.slug]
            )
        made[spec.slug] = criterion
    for spec in BUILTIN.tasks:
        task, created = TaskType.objects.get_or_create(
            slug=spec.slug, defaults={"name": spec.name, "fixed_prompt": spec.fixed_prompt}
        )
        if created:
            task.criteria.set([made[c] for c in BUILTIN.criteria_for(spec.slug)])
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
