# A snapshot's status and error are its build job's (ADR 0002, ADR 0014): the copies go.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0010_import_job_and_split_counts'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='datasetsnapshot',
            name='status',
        ),
        migrations.RemoveField(
            model_name='datasetsnapshot',
            name='error',
        ),
    ]
