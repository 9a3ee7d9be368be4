from django.urls import include, path

from . import experiment_views, views

dashboard = [
    path("", views.dashboard_runs, name="dashboard"),
    path("runs/<int:pk>/", views.dashboard_run, name="dash-run"),
    path("runs/overlay/", experiment_views.runs_overlay, name="dash-overlay"),
    path("new/reward/", views.new_reward_run, name="dash-new-reward"),
    path("new/policy/", views.new_policy_run, name="dash-new-policy"),
    path("new/generation/", views.new_generation, name="dash-new-generation"),
    path("registry/", views.registry, name="dash-registry"),
    path("leaderboard/", views.leaderboard, name="dash-leaderboard"),
    path("reward-models/<int:pk>/", views.reward_model_detail, name="dash-reward-model"),
    path("checkpoints/<int:pk>/", views.checkpoint_detail, name="dash-checkpoint"),
    path("snapshots/<int:pk>/", views.snapshot_detail, name="dash-snapshot"),
    path("compare/reward-models/", views.compare_reward_models, name="dash-compare-rm"),
    path("compare/checkpoints/", views.compare_checkpoints, name="dash-compare-ckpt"),
    path("campaigns/", views.campaigns, name="dash-campaigns"),
    path("campaigns/new/", views.new_campaign, name="dash-new-campaign"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="dash-campaign"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/<int:pk>/", views.annotate, name="annotate"),
    path("dashboard/", include(dashboard)),
]
