from django.apps import AppConfig


class DemoConfig(AppConfig):
    """``manage.py demo``: the synthetic OneReward loop through the platform's services and HTTP API."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo"
    verbose_name = "Synthetic-world demo"
