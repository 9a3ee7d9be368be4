"""Django project package (the product card calls it ``platform``; see docs/decisions/0001)."""
from .celery_app import app as celery_app

__all__ = ["celery_app"]
