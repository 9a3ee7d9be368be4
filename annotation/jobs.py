"""The annotation app's job kinds (jobs.registry): CPU jobs of a few minutes, on the `default` queue."""
from jobs.registry import JobType, register

register(JobType(kind="snapshot", execute="annotation.services.snapshots.snapshot_build_job"))
register(JobType(kind="export", execute="annotation.services.exports.export_write_job"))
register(JobType(kind="import", execute="annotation.services.imports.import_job",
                 finished="annotation.services.imports.import_finished"))
