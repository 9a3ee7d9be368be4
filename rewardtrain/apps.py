from django.apps import AppConfig


class RewardtrainConfig(AppConfig):
    name = "rewardtrain"
