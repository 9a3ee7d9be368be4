from django.urls import path

from . import api

urlpatterns = [
    path("runs/", api.PolicyRunListCreateApi.as_view(), name="api-policy-runs"),
    path("runs/preview/", api.PolicyRunPreviewApi.as_view(), name="api-policy-run-preview"),
    path("runs/<int:pk>/", api.PolicyRunDetailApi.as_view(), name="api-policy-run"),
    path("runs/<int:pk>/artifacts/<path:path>", api.PolicyRunArtifactApi.as_view(), name="api-policy-run-artifact"),
    path("runs/<int:pk>/<str:action>/", api.PolicyRunActionApi.as_view(), name="api-policy-run-action"),
    path("checkpoints/", api.CheckpointListApi.as_view(), name="api-policy-checkpoints"),
    path("checkpoints/<int:pk>/", api.CheckpointDetailApi.as_view(), name="api-policy-checkpoint"),
    path("checkpoints/<int:pk>/promotion/", api.CheckpointPromotionGateApi.as_view(), name="api-policy-promotion-gate"),
    path("checkpoints/<int:pk>/promote/", api.CheckpointPromoteApi.as_view(), name="api-policy-promote"),
    path("production/", api.ProductionApi.as_view(), name="api-policy-production"),
    path("generations/", api.GenerationListCreateApi.as_view(), name="api-policy-generations"),
    path("generations/<int:pk>/", api.GenerationDetailApi.as_view(), name="api-policy-generation"),
]
