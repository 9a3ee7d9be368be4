"""/api/dashboard/: the JSON endpoints behind the dashboard pages (frontend/api.py)."""
from django.urls import path

from . import api

urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="dash-api-jobs"),
    path("jobs/queues/", api.QueueOverviewApi.as_view(), name="dash-api-queues"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="dash-api-job"),
    path("jobs/<int:pk>/tags/", api.JobTagsApi.as_view(), name="dash-api-job-tags"),
    path("runs/overlay/", api.RunOverlayApi.as_view(), name="dash-api-overlay"),
    path("jobs/<int:pk>/artifacts/<path:path>", api.JobArtifactApi.as_view(), name="dash-api-artifact"),
    path("lineage/<str:kind>/<int:pk>/", api.LineageApi.as_view(), name="dash-api-lineage"),
    path("compare/reward-models/", api.CompareRewardModelsApi.as_view(), name="dash-api-compare-rm"),
    path("compare/checkpoints/", api.CompareCheckpointsApi.as_view(), name="dash-api-compare-ckpt"),
    path("campaigns/", api.CampaignListApi.as_view(), name="dash-api-campaigns"),
    path("campaigns/<int:pk>/", api.CampaignDashboardApi.as_view(), name="dash-api-campaign"),
    path("leaderboard/", api.LeaderboardApi.as_view(), name="dash-api-leaderboard"),
]
