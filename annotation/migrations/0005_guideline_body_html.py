"""Store each guideline version's HTML once, so a hand-out never renders Markdown."""
from django.db import migrations, models


def render_existing(apps, schema_editor):
    from annotation.guidelines import render_guideline

    GuidelineVersion = apps.get_model("annotation", "GuidelineVersion")
    for g in GuidelineVersion.objects.filter(body_html=""):
        g.body_html = render_guideline(g.body_markdown)
        g.save(update_fields=["body_html"])


class Migration(migrations.Migration):
    dependencies = [("annotation", "0004_snapshot_aggregation_v2")]

    operations = [
        migrations.AddField(
            model_name="guidelineversion",
            name="body_html",
            field=models.TextField(
                blank=True, editable=False,
                help_text="Rendered once when the version is saved (versions never change).",
            ),
        ),
        migrations.RunPython(render_existing, migrations.RunPython.noop),
    ]
