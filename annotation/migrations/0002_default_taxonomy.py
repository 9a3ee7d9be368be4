"""Seed the paper's task types, criteria, first guideline versions and role groups."""
from django.db import migrations


def forwards(apps, schema_editor):
    from annotation.seed import seed_taxonomy

    seed_taxonomy(apps)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
