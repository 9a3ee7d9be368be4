from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class PolicytrainConfig(AppConfig):
    name = "policytrain"

    def ready(self) -> None:
        # A mistyped promotion rule should stop the server at start, not fail a checkpoint page later.
        from .selectors import PromotionRule

        try:
            PromotionRule.from_settings()
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"settings.POLICY_PROMOTION: {exc}") from exc
