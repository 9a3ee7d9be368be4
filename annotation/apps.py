from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from . import cache_invalidation
        from .seed import _after_migrate

        cache_invalidation.connect()
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="annotation-seed-taxonomy")
