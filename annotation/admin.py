"""Curator tools in the Django admin. Every write goes through a service."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError
from core.roles import IMPORT_PERMISSION

from .guidelines import render_guideline
from .models import (
    Adjudication,
    Campaign,
    CampaignStatus,
    Candidate,
    Criterion,
    DatasetSnapshot,
    GuidelineVersion,
    ImportBatch,
    Item,
    Judgment,
    Lease,
    Sample,
    TaskType,
)
from .selectors import campaign_progress
from .services.campaigns import campaign_create, campaign_set_status, campaign_start, campaign_validate
from .services.imports import import_upload
from .services.taxonomy import guideline_publish, judgments_under

admin.site.site_header = "OneReward Platform — curation"
admin.site.site_title = "OneReward curation"



class SlugFixedOnceJudged:
    """The admin keeps the API's rule: a slug that judgments were made under cannot be renamed."""

    def get_readonly_fields(self, request, obj=None):
        fixed = obj is not None and judgments_under(obj).exists()
        return [*super().get_readonly_fields(request, obj), *(["slug"] if fixed else [])]


@admin.register(TaskType)
class TaskTypeAdmin(SlugFixedOnceJudged, admin.ModelAdmin):
    list_display = ["slug", "name", "fixed_prompt"]
    filter_horizontal = ["criteria"]


class GuidelineInline(admin.TabularInline):
    model = GuidelineVersion
    fields = ["version", "preview", "created_at", "created_by"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Guideline")
    def preview(self, obj: GuidelineVersion) -> str:
        return format_html("<div style='max-width:60em'>{}</div>", render_guideline(obj.body_markdown))


class CriterionForm(forms.ModelForm):
    new_guideline = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), required=False,
        help_text="Markdown. Saving publishes it as the next version; earlier judgments keep theirs.",
    )

    class Meta:
        model = Criterion
        fields = ["slug", "name", "description", "uses_prompt"]  # the reward query states the description


@admin.register(Criterion)
class CriterionAdmin(SlugFixedOnceJudged, admin.ModelAdmin):
    form = CriterionForm
    list_display = ["slug", "name", "uses_prompt", "guideline_version"]
    inlines = [GuidelineInline]

    @admin.display(description="Current guideline")
    def guideline_version(self, obj: Criterion):
        g = obj.current_guideline
        return f"v{g.version}" if g else "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if text := form.cleaned_data.get("new_guideline", "").strip():
            version = guideline_publish(criterion=obj, body_markdown=text, user=request.user)
            messages.success(request, f"Published guideline v{version.version} for {obj.slug}.")


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .zip with manifest.jsonl at its top and the images it names.")


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ["external_id", "task_type", "prompt", "split", "width", "height", "n_candidates", "thumb"]
    list_filter = ["task_type", "split"]
    search_fields = ["external_id", "prompt"]
    readonly_fields = ["uid", "split", "width", "height", "thumb"]
    change_list_template = "admin/annotation/sample/change_list.html"

    def has_add_permission(self, request):
        return False  # samples come in through the validated import

    @admin.display(description="Candidates")
    def n_candidates(self, obj: Sample) -> int:
        return obj.candidates.count()

    @admin.display(description="Source")
    def thumb(self, obj: Sample) -> str:
        return format_html('<img src="{}" style="height:48px">', reverse("media", args=[obj.source_image.name]))

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="annotation_sample_import"),
                *super().get_urls()]

    def import_view(self, request):
        # admin_view only checks is_staff; importing writes samples, so it needs its permission.
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                batch = import_upload(upload=form.cleaned_data["file"], user=request.user)
            except ApplicationError as exc:
                for message in (exc.fields or {}).get("file", []) or [exc.message]:
                    form.add_error("file", str(message))
            else:
                messages.success(request, f"Importing {batch.source_name} as job #{batch.job_id}: this record shows "
                                          "its status, then its counts or every row error (the dashboard's Import "
                                          "page follows it live).")
                return redirect("admin:annotation_importbatch_change", batch.pk)
        context = {**self.admin_site.each_context(request), "form": form,
                   "title": "Import samples and candidates", "opts": self.model._meta}
        return render(request, "admin/annotation/sample/import.html", context)


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    list_display = ["id", "sample", "provenance", "source_name", "seed", "created_at"]
    list_filter = ["provenance", "source_name"]
    search_fields = ["sample__external_id", "source_name"]


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = ["name", "description", "task_type", "criteria", "mode", "candidates_per_item", "overlap",
                  "gold_fraction", "lease_seconds", "priority", "annotators", "selection"]

    def clean(self):
        data = super().clean()
        if self.errors or not data.get("task_type"):
            return data
        errors = campaign_validate(
            name=data["name"], task_type=data["task_type"], criteria=list(data.get("criteria") or [])
            or list(data["task_type"].criteria.all()), mode=data["mode"],
            candidates_per_item=data["candidates_per_item"], overlap=data["overlap"],
            gold_fraction=data["gold_fraction"], lease_seconds=data["lease_seconds"], exclude_pk=self.instance.pk,
            selection=data.get("selection"),
        )
        for field, msgs in errors.items():
            self.add_error(field if field in self.fields else None, msgs)
        return data


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ["name", "task_type", "mode", "status", "overlap", "priority", "progress_bar", "created_at"]
    list_filter = ["status", "mode", "task_type"]
    search_fields = ["name"]
    filter_horizontal = ["criteria", "annotators"]
    readonly_fields = ["status", "started_at", "progress_detail"]
    actions = ["start_campaigns", "pause_campaigns", "resume_campaigns", "complete_campaigns"]

    def get_readonly_fields(self, request, obj=None):
        # The definition is frozen once items exist: changing it would corrupt the queue.
        if obj and obj.started_at:
            return [*self.readonly_fields, "task_type", "mode", "candidates_per_item", "selection", "overlap"]
        return self.readonly_fields

    @admin.display(description="Progress")
    def progress_bar(self, obj: Campaign) -> str:
        p = campaign_progress(obj)
        pct = round(100 * p["fraction_done"])
        return format_html('<progress value="{}" max="100" style="width:8em"></progress> {}% ({} / {} items)',
                           pct, pct, p["items_done"], p["items_total"])

    @admin.display(description="Progress detail")
    def progress_detail(self, obj: Campaign) -> str:
        p = campaign_progress(obj)
        return format_html("done {} · leased/full {} · open {} · active leases {} · judgments {}", p["items_done"],
                           p["items_full"], p["items_open"], p["leases_active"], p["judgments_per_criterion"])

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        created = campaign_create(
            name=data["name"], description=data["description"], task_type=data["task_type"],
            criteria=list(data.get("criteria") or []), mode=data["mode"],
            candidates_per_item=data["candidates_per_item"], overlap=data["overlap"],
            gold_fraction=data["gold_fraction"], lease_seconds=data["lease_seconds"], priority=data["priority"],
            selection=data.get("selection") or {}, created_by=request.user,
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        if change:
            return super().save_related(request, form, formsets, change)
        form.instance.annotators.set(form.cleaned_data.get("annotators") or [])

    def _run(self, request, queryset, fn, verb: str) -> None:
        done = 0
        for campaign in queryset:
            try:
                fn(campaign)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{campaign.name}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} campaign(s).", messages.SUCCESS)

    @admin.action(description="Start selected campaigns (materialise items)")
    def start_campaigns(self, request, queryset):
        self._run(request, queryset, lambda c: campaign_start(campaign=c), "Started")

    @admin.action(description="Pause selected campaigns")
    def pause_campaigns(self, request, queryset):
        self._run(request, queryset, lambda c: campaign_set_status(campaign=c, status=CampaignStatus.PAUSED), "Paused")

    @admin.action(description="Resume selected campaigns")
    def resume_campaigns(self, request, queryset):
        self._run(request, queryset, lambda c: campaign_set_status(campaign=c, status=CampaignStatus.ACTIVE), "Resumed")

    @admin.action(description="Complete selected campaigns")
    def complete_campaigns(self, request, queryset):
        self._run(request, queryset, lambda c: campaign_set_status(campaign=c, status=CampaignStatus.COMPLETED),
                  "Completed")


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "campaign", "sample", "status", "leased_count", "completed_count", "is_gold"]
    list_filter = ["campaign", "status", "is_gold"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "annotator", "state", "created_at", "expires_at", "skip_reason"]
    list_filter = ["state", "item__campaign"]


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "criterion", "annotator", "choice", "guideline_version", "active_ms", "created_at"]
    list_filter = ["criterion", "choice", "item__campaign"]


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    """Written on the item page (dashboard) or the API, never here: a new answer is a new row."""

    list_display = ["id", "item", "criterion", "choice", "created_by", "created_at"]
    list_filter = ["criterion", "item__campaign"]


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "source_name", "status", "samples_created", "candidates_created", "split_counts", "job",
                    "created_by", "created_at"]
    # status and the job column read the job row, created_by the user: joined, not one query per row.
    list_select_related = ["job", "created_by"]


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "status", "content_hash", "created_at"]
