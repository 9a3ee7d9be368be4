from django.contrib.auth import views as auth_views
from django.urls import include, path, reverse_lazy

from . import curation_views as cv
from . import experiment_views, views
from . import import_views as imv
from . import items_views as iv

dashboard = [
    path("", cv.dashboard_home, name="dashboard"),
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
    path("campaigns/<int:pk>/items/", iv.campaign_items, name="dash-campaign-items"),
    path("items/<int:pk>/", iv.item_page, name="dash-item"),
    path("people/", cv.people, name="dash-people"),
    path("imports/", imv.imports, name="dash-imports"),
    path("taxonomy/", cv.taxonomy, name="dash-taxonomy"),
    path("taxonomy/criteria/new/", cv.criterion_form, name="dash-criterion-new"),
    path("taxonomy/criteria/<slug:slug>/", cv.criterion_form, name="dash-criterion"),
    path("taxonomy/criteria/<slug:slug>/guideline/", cv.guideline_editor, name="dash-guideline"),
    path("taxonomy/task-types/new/", cv.task_type_form, name="dash-task-type-new"),
    path("taxonomy/task-types/<slug:slug>/", cv.task_type_form, name="dash-task-type"),
]

# Forgot / set a password (Django's flow; curators hand out the same one-time links from People).
_RESET_TEMPLATE = "frontend/password.html"
passwords = [
    path("password-reset/", auth_views.PasswordResetView.as_view(
        template_name=_RESET_TEMPLATE, success_url=reverse_lazy("password_reset_done"),
        extra_context={"title": "Forgot your password?", "submit_label": "Send me a link",
                       "intro": "Enter your account's e-mail address; we send a one-time link to choose a new password."},
    ), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(
        template_name=_RESET_TEMPLATE, extra_context={"title": "Check your e-mail", "done_text":
                                                "If an account has that address, a link to set its password is on its way."},
    ), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        template_name=_RESET_TEMPLATE, success_url=reverse_lazy("password_reset_complete"),
        extra_context={"title": "Choose a password", "submit_label": "Set password"},
    ), name="password_reset_confirm"),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(
        template_name=_RESET_TEMPLATE, extra_context={"title": "Password set", "done_text": "Your password is set."},
    ), name="password_reset_complete"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/<int:pk>/", views.annotate, name="annotate"),
    path("dashboard/", include(dashboard)),
    path("accounts/", include(passwords)),
]
