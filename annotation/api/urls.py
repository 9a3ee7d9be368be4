from django.urls import path

from . import accounts as acc
from . import candidates as cand
from . import exports as ex
from . import items as it
from . import snapshots as sn
from . import views as v
from .auth import LogoutApi, TokenObtainApi

urlpatterns = [
    # The annotator's two calls first: Django tries the patterns in order, and these two are most
    # of the API's traffic (moving them up changes no match: no other pattern fits their paths).
    path("campaigns/<int:pk>/next/", v.NextItemApi.as_view(), name="api-next"),
    path("leases/<uuid:uid>/submit/", v.SubmitApi.as_view(), name="api-submit"),
    path("auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("auth/logout/", LogoutApi.as_view(), name="api-logout"),
    path("me/", v.MeApi.as_view(), name="api-me"),
    path("task-types/", v.TaskTypeListApi.as_view(), name="api-task-types"),
    path("task-types/<slug:slug>/", v.TaskTypeDetailApi.as_view(), name="api-task-type"),
    path("criteria/", v.CriterionListApi.as_view(), name="api-criteria"),
    path("criteria/<slug:slug>/", v.CriterionDetailApi.as_view(), name="api-criterion"),
    path("criteria/<slug:slug>/guidelines/", v.GuidelinePublishApi.as_view(), name="api-guideline-publish"),
    path("guidelines/preview/", acc.GuidelinePreviewApi.as_view(), name="api-guideline-preview"),
    path("users/", acc.UserListCreateApi.as_view(), name="api-users"),
    path("users/<int:pk>/", acc.UserDetailApi.as_view(), name="api-user"),
    path("users/<int:pk>/reset-password/", acc.UserPasswordResetApi.as_view(), name="api-user-reset-password"),
    path("campaigns/", v.CampaignListCreateApi.as_view(), name="api-campaigns"),
    path("campaigns/from-candidates/", cand.CampaignFromCandidatesApi.as_view(), name="api-campaigns-from-candidates"),
    path("candidate-sources/", cand.CandidateSourcesApi.as_view(), name="api-candidate-sources"),
    path("campaigns/<int:pk>/", v.CampaignDetailApi.as_view(), name="api-campaign"),
    path("campaigns/<int:pk>/progress/", v.CampaignProgressApi.as_view(), name="api-campaign-progress"),
    path("campaigns/<int:pk>/quality/", v.CampaignQualityApi.as_view(), name="api-campaign-quality"),
    path("campaigns/<int:pk>/last/", v.LastSubmittedApi.as_view(), name="api-last"),
    path("campaigns/<int:pk>/items/", it.CampaignItemsApi.as_view(), name="api-campaign-items"),
    path("campaigns/<int:pk>/<str:action>/", v.CampaignActionApi.as_view(), name="api-campaign-action"),
    path("items/<int:pk>/", it.ItemDetailApi.as_view(), name="api-item"),
    path("items/<int:pk>/adjudicate/", it.ItemAdjudicateApi.as_view(), name="api-item-adjudicate"),
    path("items/<int:pk>/gold/", it.ItemGoldApi.as_view(), name="api-item-gold"),
    path("leases/<uuid:uid>/skip/", v.SkipApi.as_view(), name="api-skip"),
    path("leases/<uuid:uid>/release/", v.ReleaseApi.as_view(), name="api-release"),
    path("judgments/", v.JudgmentListApi.as_view(), name="api-judgments"),
    path("judgments/<int:pk>/", v.JudgmentEditApi.as_view(), name="api-judgment"),
    path("samples/", v.SampleListApi.as_view(), name="api-samples"),
    path("imports/", v.ImportApi.as_view(), name="api-imports"),
    path("imports/<int:pk>/", v.ImportDetailApi.as_view(), name="api-import"),
    path("snapshots/", sn.SnapshotListCreateApi.as_view(), name="api-snapshots"),
    path("snapshots/preview/", sn.SnapshotPreviewApi.as_view(), name="api-snapshot-preview"),
    path("snapshots/<int:pk>/", sn.SnapshotDetailApi.as_view(), name="api-snapshot"),
    path("exports/judgments.<str:fmt>", ex.ExportApi.as_view(), name="api-export"),
    path("exports/jobs/", ex.ExportJobListApi.as_view(), name="api-export-jobs"),
    path("exports/jobs/<int:pk>/", ex.ExportJobApi.as_view(), name="api-export-job"),
    path("exports/jobs/<int:pk>/cancel/", ex.ExportJobCancelApi.as_view(), name="api-export-cancel"),
    path("exports/jobs/<int:pk>/download/", ex.ExportJobDownloadApi.as_view(), name="api-export-download"),
]
