from django.apps import AppConfig


class PolicytrainConfig(AppConfig):
    name = "policytrain"
