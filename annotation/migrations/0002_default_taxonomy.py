"""Seed the paper's task types, criteria and first guideline versions (idempotent)."""
from django.db import migrations

TASKS = {"fill": "Image fill", "extend": "Image extend", "removal": "Object removal"}
FIXED = {"removal": "remove the specified object", "extend": "high-definition, perfect composition"}
CRITERIA = {
    "text_alignment": "Text alignment",
    "consistency": "Consistency",
    "structure": "Structure",
    "aesthetics": "Aesthetics",
    "removal_quality": "Removal quality",
}
TASK_CRITERIA = {
    "fill": ["text_alignment", "consistency", "structure", "aesthetics"],
    "extend": ["text_alignment", "consistency", "structure", "aesthetics"],
    "removal": ["removal_quality"],
}


def forwards(apps, schema_editor):
    # Frozen copies of the vocabulary: migrations must not import app code (it changes later).
    from annotation.vocabulary import INITIAL_GUIDELINES  # plain constants, safe to read here

    Criterion = apps.get_model("annotation", "Criterion")
    GuidelineVersion = apps.get_model("annotation", "GuidelineVersion")
    TaskType = apps.get_model("annotation", "TaskType")
    made = {}
    for slug, name in CRITERIA.items():
        c, _ = Criterion.objects.get_or_create(slug=slug, defaults={"name": name, "uses_prompt": slug == "text_alignment"})
        if not GuidelineVersion.objects.filter(criterion=c).exists():
            GuidelineVersion.objects.create(criterion=c, version=1, body_markdown=INITIAL_GUIDELINES[slug])
        made[slug] = c
    for slug, name in TASKS.items():
        t, created = TaskType.objects.get_or_create(slug=slug, defaults={"name": name, "fixed_prompt": FIXED.get(slug, "")})
        if created:
            t.criteria.set([made[c] for c in TASK_CRITERIA[slug]])
    Group = apps.get_model("auth", "Group")
    for role in ("annotator", "curator", "scientist"):
        Group.objects.get_or_create(name=role)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
