"""Read-only admin lists; runs and jobs are started through the API, dashboard or commands."""
from django.contrib import admin

from .models import GenerationJob, PolicyCheckpoint, PolicyRun


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PolicyRun)
class PolicyRunAdmin(_ReadOnly):
    list_display = ["id", "job", "reward_model", "base_policy", "algorithm", "started_by", "created_at"]
    list_filter = ["algorithm", "job__status"]
    list_select_related = ["job", "reward_model", "started_by"]


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(_ReadOnly):
    list_display = ["id", "name", "base_policy", "run", "reward_model", "algorithm", "created_at"]
    list_filter = ["algorithm"]
    search_fields = ["name"]
    list_select_related = ["run", "reward_model"]


@admin.register(GenerationJob)
class GenerationJobAdmin(_ReadOnly):
    list_display = ["id", "job", "checkpoint", "opponent", "campaign_name", "campaign", "candidates_created",
                    "created_at"]
    list_filter = ["job__status"]
    list_select_related = ["job", "checkpoint", "opponent", "campaign"]
