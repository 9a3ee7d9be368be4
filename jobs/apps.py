from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import signals  # noqa: F401 - connects the worker start-up hook

        # Each app declares its job kinds in its own `jobs.py` (jobs.registry), as admin.py does
        # for the admin: the registry is complete in every process before a job is started or run.
        autodiscover_modules("jobs")
