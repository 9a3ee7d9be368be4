"""Criteria get the description annotators and the reward model read (filled for the built-in
ones); task-type slugs are no longer limited to the built-in three."""
from django.db import migrations, models


def fill_descriptions(apps, schema_editor):
    from annotation.seed import seed_taxonomy

    seed_taxonomy(apps)  # idempotent: fills the built-in criteria's empty descriptions


class Migration(migrations.Migration):
    dependencies = [("annotation", "0005_guideline_body_html")]

    operations = [
        migrations.AddField(
            model_name="criterion",
            name="description",
            field=models.TextField(
                default="",
                help_text="One line on what is judged; annotators see it and the reward model's query states it.",
            ),
        ),
        migrations.AlterField(
            model_name="criterion",
            name="uses_prompt",
            field=models.BooleanField(
                default=False,
                help_text="Show the prompt to annotators and the reward model (text alignment in the paper).",
            ),
        ),
        migrations.AlterField(model_name="tasktype", name="slug", field=models.SlugField(unique=True)),
        migrations.RunPython(fill_descriptions, migrations.RunPython.noop),
    ]
