# An import's status is its job's (ADR 0002, ADR 0014): the copy goes. `manage.py import_samples`
# records a job too now; a batch imported inline before this has no job, and its recorded outcome
# (row errors or counts) says whether it failed (ImportBatch.status).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0011_snapshot_status_from_job'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='importbatch',
            name='status',
        ),
    ]
