from django.urls import path

from . import api as v

urlpatterns = [
    path("presets/", v.PresetListApi.as_view(), name="reward-presets"),
    path("runs/", v.RunListCreateApi.as_view(), name="reward-runs"),
    path("runs/preview/", v.RunPreviewApi.as_view(), name="reward-run-preview"),
    path("runs/<int:pk>/", v.RunDetailApi.as_view(), name="reward-run"),
    path("runs/<int:pk>/<str:action>/", v.RunActionApi.as_view(), name="reward-run-action"),
    path("models/", v.ModelListApi.as_view(), name="reward-models"),
    path("models/<int:pk>/", v.ModelDetailApi.as_view(), name="reward-model"),
    path("models/<int:pk>/score/", v.ModelScoreApi.as_view(), name="reward-model-score"),
    path("models/<int:pk>/evaluations/", v.ModelEvaluationsApi.as_view(), name="reward-model-evaluations"),
    path("scores/<int:job_id>/", v.ScoreResultApi.as_view(), name="reward-score"),
    path("baselines/", v.BaselineListCreateApi.as_view(), name="reward-baselines"),
    path("baselines/<int:pk>/", v.BaselineDetailApi.as_view(), name="reward-baseline"),
    path("baselines/<int:pk>/cancel/", v.BaselineCancelApi.as_view(), name="reward-baseline-cancel"),
]
