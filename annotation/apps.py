from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from .seed import _after_migrate

        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="annotation-seed-taxonomy")
