"""Read-only admin lists for reward runs and the reward-model registry (writes go through services)."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin

from .models import RewardModel, RewardRun


def _link(app_model: str, obj) -> str:
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse(f"admin:{app_model}_change", args=[obj.pk]), obj)



@admin.register(RewardRun)
class RewardRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "job_link", "status", "snapshot_link", "preset", "base_model", "started_by", "created_at"]
    list_filter = ["job__status", "preset"]
    list_select_related = ["job", "snapshot", "started_by"]

    @admin.display(description="job")
    def job_link(self, obj):
        return _link("jobs_job", obj.job)

    @admin.display(description="status")
    def status(self, obj):
        return obj.job.status

    @admin.display(description="snapshot")
    def snapshot_link(self, obj):
        return _link("annotation_datasetsnapshot", obj.snapshot)


@admin.register(RewardModel)
class RewardModelAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "run_link", "snapshot_link", "eval_split", "accuracy", "template_version",
                    "created_at"]
    list_select_related = ["run", "snapshot"]

    @admin.display(description="run")
    def run_link(self, obj):
        return _link("rewardtrain_rewardrun", obj.run)

    @admin.display(description="snapshot")
    def snapshot_link(self, obj):
        return _link("annotation_datasetsnapshot", obj.snapshot)

    @admin.display(description="overall accuracy")
    def accuracy(self, obj):
        value = (obj.eval_report or {}).get("overall_accuracy")
        return f"{value:.3f}" if isinstance(value, int | float) else "-"
