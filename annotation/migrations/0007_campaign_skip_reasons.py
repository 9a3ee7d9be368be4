"""Campaigns get preset skip reasons, which the workspace's skip dialog offers as buttons."""
from django.db import migrations, models

import annotation.models


class Migration(migrations.Migration):
    dependencies = [("annotation", "0006_criterion_description_free_task_slugs")]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="skip_reasons",
            field=models.JSONField(
                blank=True, default=annotation.models.default_skip_reasons,
                help_text="Preset reasons the skip dialog offers as buttons (annotators can still type another).",
            ),
        ),
    ]
