"""Read-only admin lists; runs and jobs are started through the API, dashboard or commands."""
from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import GenerationJob, PolicyCheckpoint, PolicyRun


@admin.register(PolicyRun)
class PolicyRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "reward_model", "base_policy", "algorithm", "started_by", "created_at"]
    list_filter = ["algorithm", "job__status"]
    list_select_related = ["job", "reward_model", "started_by"]


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "base_policy", "run", "reward_model", "algorithm", "created_at"]
    list_filter = ["algorithm"]
    search_fields = ["name"]
    list_select_related = ["run", "reward_model"]


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "checkpoint", "opponent", "campaign_name", "campaign", "candidates_created",
                    "created_at"]
    list_filter = ["job__status"]
    list_select_related = ["job", "checkpoint", "opponent", "campaign"]
