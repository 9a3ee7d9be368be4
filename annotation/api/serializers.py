"""Input and output shapes of the API. Plain serializers; the services hold the logic."""
from __future__ import annotations

import uuid
from urllib.parse import quote

from django.urls import get_script_prefix, reverse
from django.utils.http import RFC3986_SUBDELIMS
from rest_framework import serializers

from ..models import (
    Campaign,
    CampaignMode,
    Candidate,
    Criterion,
    ImportBatch,
    ImportStatus,
    Judgment,
    Lease,
    Sample,
    Split,
    TaskType,
)
from ..selectors import annotator_title, blind_for, campaign_criteria, campaigns_as_seen_by

# "" = any split; shared by every form that filters samples by split.
OPTIONAL_SPLIT_CHOICES = ["", *Split.values]
SKIP_REASON_MAX_LENGTH = Lease._meta.get_field("skip_reason").max_length


class CriterionOut(serializers.ModelSerializer):
    """A criterion with its current guideline; give it criteria from
    ``selectors.criteria_with_guidelines`` (the guideline fields are annotations)."""

    guideline_version = serializers.IntegerField(allow_null=True, read_only=True)
    guideline_markdown = serializers.SerializerMethodField()
    guideline_html = serializers.SerializerMethodField()

    class Meta:
        model = Criterion
        fields = ["id", "slug", "name", "description", "uses_prompt", "guideline_version", "guideline_markdown",
                  "guideline_html"]

    def get_guideline_markdown(self, obj: Criterion) -> str:
        return obj.guideline_markdown or ""

    def get_guideline_html(self, obj: Criterion) -> str:
        return obj.guideline_html or ""


def criteria_out(criteria: list[Criterion]) -> list[dict]:
    """``CriterionOut(criteria, many=True).data`` as plain dicts: the hand-out sends them on every
    call, and building a ModelSerializer's fields per call cost more than the rest of the payload."""
    return [{"id": c.id, "slug": c.slug, "name": c.name, "description": c.description, "uses_prompt": c.uses_prompt,
             "guideline_version": c.guideline_version, "guideline_markdown": c.guideline_markdown or "",
             "guideline_html": c.guideline_html or ""} for c in criteria]


class CriterionDetailOut(CriterionOut):
    """A criterion as curators edit it: also the task types offering it (prefetch ``task_types``).
    The hand-out keeps the lean ``CriterionOut``."""

    task_types = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta(CriterionOut.Meta):
        fields = [*CriterionOut.Meta.fields, "task_types"]


class TaskTypeOut(serializers.ModelSerializer):
    criteria = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = TaskType
        fields = ["id", "slug", "name", "fixed_prompt", "description", "criteria"]


# Slugs: their format (lowercase words joined by '_' or '-') and uniqueness are checked by the
# taxonomy services, which answer with field messages like these serializers.
class TaskTypeIn(serializers.Serializer):
    slug = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=80)
    fixed_prompt = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                         help_text="Used when a sample has no prompt.")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    criteria = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list,
                                     help_text="Slugs of the criteria this task offers.")


class CriterionIn(serializers.Serializer):
    slug = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=80)
    description = serializers.CharField(max_length=2000, help_text=(
        "What is judged, in a phrase: annotators read it and the reward model's query says "
        "'Evaluation criterion: <name> (<description>).'"))
    uses_prompt = serializers.BooleanField(required=False, default=False,
                                           help_text="Show the prompt to annotators and put it in the reward query.")
    task_types = serializers.ListField(child=serializers.CharField(max_length=50), min_length=1,
                                       help_text="Slugs of the task types that offer this criterion.")


class GuidelineIn(serializers.Serializer):
    # Bounded: the rendered guideline travels with every item an annotator is handed.
    body_markdown = serializers.CharField(max_length=50_000)


class CampaignOut(serializers.ModelSerializer):
    task_type = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    criteria = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = Campaign
        fields = ["id", "name", "description", "mode", "status", "task_type", "criteria", "candidates_per_item",
                  "overlap", "gold_fraction", "lease_seconds", "priority", "selection", "skip_reasons", "created_at",
                  "started_at"]


class CampaignForAnnotatorOut(serializers.ModelSerializer):
    """What an annotator may know of a campaign: nothing that says which systems it compares
    (no selection, lineage or system names); give it campaigns from
    ``selectors.campaigns_as_seen_by``."""

    name = serializers.CharField(source="display_name", read_only=True)
    description = serializers.CharField(source="display_description", read_only=True)
    task_type = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    criteria = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = Campaign
        fields = ["id", "name", "description", "mode", "status", "task_type", "criteria", "candidates_per_item",
                  "lease_seconds", "skip_reasons"]


def campaign_out(user, campaigns, *, many: bool = False):
    """Campaign(s) serialized for ``user``: the full record for staff, the blind one for annotators."""
    if not blind_for(user):
        return CampaignOut(campaigns, many=many).data
    seen = campaigns_as_seen_by(user, campaigns if many else [campaigns])
    return CampaignForAnnotatorOut(seen if many else seen[0], many=many).data


class CampaignIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    task_type = serializers.SlugRelatedField(slug_field="slug", queryset=TaskType.objects.all())
    criteria = serializers.SlugRelatedField(slug_field="slug", queryset=Criterion.objects.all(), many=True,
                                            required=False)
    mode = serializers.ChoiceField(choices=CampaignMode.choices, default=CampaignMode.PAIRWISE)
    candidates_per_item = serializers.IntegerField(required=False, min_value=2, max_value=8)
    overlap = serializers.IntegerField(default=3, min_value=1, max_value=50)
    gold_fraction = serializers.FloatField(default=0.0, min_value=0.0, max_value=1.0)
    lease_seconds = serializers.IntegerField(default=600, min_value=10, max_value=86400)
    priority = serializers.IntegerField(default=0, min_value=-100, max_value=100)
    selection = serializers.JSONField(required=False, default=dict)
    skip_reasons = serializers.ListField(
        child=serializers.CharField(max_length=SKIP_REASON_MAX_LENGTH, trim_whitespace=True),
        required=False, max_length=12,
        help_text="Preset reasons the skip dialog offers as buttons; an empty list offers only free text.",
    )

    def validate_skip_reasons(self, value: list[str]) -> list[str]:
        # Each preset becomes a button: blanks and repeats would be buttons that say nothing new.
        if any(not reason for reason in value):
            raise serializers.ValidationError("A skip reason cannot be blank.")
        if len({reason.casefold() for reason in value}) != len(value):
            raise serializers.ValidationError("Each skip reason must be different.")
        return value


NEXT_EXCLUDE_MAX = 10


class NextIn(serializers.Serializer):
    exclude = serializers.ListField(child=serializers.UUIDField(), required=False, default=list,
                                    max_length=NEXT_EXCLUDE_MAX)


# Media URLs as ``reverse("media", kwargs={"path": name})`` makes them, without matching the URL
# map again for each of a hand-out's three or more images: reverse() percent-quotes prefix and
# path character by character, so its URL for any name is the quoted base plus the quoted name.
_MEDIA_BASES: dict[str, str] = {}  # {script prefix: base}
_URL_PATH_SAFE = RFC3986_SUBDELIMS + "/~:@"  # what reverse() leaves unquoted


def _media(field) -> str:
    prefix = get_script_prefix()
    base = _MEDIA_BASES.get(prefix)
    if base is None:
        base = _MEDIA_BASES[prefix] = reverse("media", kwargs={"path": "-"})[:-1]
    return base + quote(field.name, safe=_URL_PATH_SAFE)


def assignment_payload(lease: Lease) -> dict:
    """Everything the workspace needs to show one leased item, in displayed order.

    Blind by construction: candidates carry only an id, a screen label and an image URL, never
    their system, canonical position or campaign lineage, and the order is the lease's own
    shuffle. Campaign-wide progress is not here: the workspace polls ``/progress/`` slowly.
    Expects the lease as ``lease_next`` returns it (item, sample and slots loaded).
    """
    item = lease.item
    campaign = item.campaign
    sample: Sample = item.sample
    by_id = {s.candidate_id: s.candidate for s in item.slots.all()}
    labels = "ABCDEFGH"
    return {
        "lease": str(lease.uid),
        "expires_at": lease.expires_at.isoformat(),
        "campaign": {"id": campaign.id, "name": annotator_title(campaign), "mode": campaign.mode},
        "item": item.id,
        "sample": {
            "id": sample.external_id, "task": sample.task_type.slug, "prompt": sample.effective_prompt,
            "source_url": _media(sample.source_image), "mask_url": _media(sample.mask),
            "width": sample.width, "height": sample.height,
        },
        "candidates": [
            {"id": cid, "label": labels[i], "url": _media(by_id[cid].image)}
            for i, cid in enumerate(lease.displayed_order)
        ],
        "criteria": criteria_out(campaign_criteria(campaign)),
    }


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_answer(value) -> bool:
    """Whether ``value`` has one of the shapes an answer can take (``_answer_shape``)."""
    return (_is_id(value) or (isinstance(value, str) and len(value) <= 64)
            or (isinstance(value, dict) and set(value) == {"best", "worst"} and all(map(_is_id, value.values()))))


def _answer_shape(value):
    """Only the shapes an answer can take (the service checks the values against the item): a
    candidate id, a word ("tie", "both_bad", "no_difference") or {"best": id, "worst": id}. Lists,
    nested objects, floats and null are refused here, so nothing unhashable reaches the service."""
    if not _is_answer(value):
        raise serializers.ValidationError('A candidate id, "tie", "both_bad", "no_difference" or '
                                          '{"best": id, "worst": id}.')
    return value


class SubmitIn(serializers.Serializer):
    answers = serializers.DictField(child=serializers.JSONField(validators=[_answer_shape]), allow_empty=False)
    idempotency_key = serializers.CharField(max_length=64)
    active_ms = serializers.IntegerField(min_value=0, default=0)


# ``next`` and submit are most of the API's requests, and a DRF serializer costs more Python to
# build and run than the rest of their input handling. So the bodies the workspace sends are
# checked directly, to exactly what the serializer would return (a test holds the two equal over
# valid and invalid bodies); anything else goes through the serializer, which words every error.

def _validated(serializer_class: type[serializers.Serializer], data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _uuids(values) -> list[uuid.UUID] | None:
    """``values`` (strings) as UUIDs the way ``UUIDField`` reads them; None if one is not."""
    try:
        return [uuid.UUID(hex=v) for v in values]
    except ValueError:
        return None


def next_input(data) -> dict:
    """``NextIn(data=data)``'s validated data (``{"exclude": [UUID, …]}``), or its 400."""
    if type(data) is dict:
        exclude = data.get("exclude", [])
        if type(exclude) is list and len(exclude) <= NEXT_EXCLUDE_MAX and all(type(v) is str for v in exclude):
            uids = _uuids(exclude)
            if uids is not None:
                return {"exclude": uids}
    return _validated(NextIn, data)


def submit_input(data) -> dict:
    """``SubmitIn(data=data)``'s validated data (answers, idempotency_key, active_ms), or its 400."""
    if type(data) is dict:
        answers, key, active_ms = data.get("answers"), data.get("idempotency_key"), data.get("active_ms", 0)
        # isprintable() is False for NUL and surrogates, which CharField refuses (and for a few
        # characters it accepts: those go the serializer's way, as does surrounding whitespace).
        if (type(answers) is dict and answers and all(type(k) is str and _is_answer(v) for k, v in answers.items())
                and type(key) is str and 0 < len(key) <= 64 and key.isprintable() and key == key.strip()
                and type(active_ms) is int and active_ms >= 0):
            return {"answers": answers, "idempotency_key": key, "active_ms": active_ms}
    return _validated(SubmitIn, data)


class SkipIn(serializers.Serializer):
    reason = serializers.CharField(max_length=SKIP_REASON_MAX_LENGTH, allow_blank=True, default="")


class JudgmentOut(serializers.ModelSerializer):
    criterion = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    campaign = serializers.IntegerField(source="item.campaign_id", read_only=True)
    lease = serializers.UUIDField(source="lease.uid", read_only=True)
    guideline_version = serializers.IntegerField(source="guideline_version.version", read_only=True)

    class Meta:
        model = Judgment
        fields = ["id", "campaign", "item", "lease", "criterion", "choice", "best", "worst", "displayed_order",
                  "guideline_version", "active_ms", "idempotency_key", "created_at", "updated_at"]


_DATETIME = serializers.DateTimeField()


def judgments_out(judgments: list[Judgment]) -> list[dict]:
    """``JudgmentOut(judgments, many=True).data`` as plain dicts, for the submit response (the
    same fields and formats; a test holds them equal). Expects ``lease`` and
    ``guideline_version`` loaded, as ``judgment_submit`` returns them."""
    return [{
        "id": j.pk, "campaign": j.item.campaign_id, "item": j.item_id, "lease": str(j.lease.uid),
        "criterion": j.criterion.slug, "choice": j.choice, "best": j.best_id, "worst": j.worst_id,
        "displayed_order": j.displayed_order, "guideline_version": j.guideline_version.version,
        "active_ms": j.active_ms, "idempotency_key": j.idempotency_key,
        "created_at": _DATETIME.to_representation(j.created_at), "updated_at": _DATETIME.to_representation(j.updated_at),
    } for j in judgments]


class JudgmentEditIn(serializers.Serializer):
    answer = serializers.JSONField(validators=[_answer_shape])


class ImportIn(serializers.Serializer):
    file = serializers.FileField()


class ImportBatchOut(serializers.ModelSerializer):
    """An import: queued or running with its job's progress (rows checked, then rows written),
    then its counts and new samples per split, or every row error (nothing imported)."""

    url = serializers.SerializerMethodField()
    # The batch's status is its job's (ImportBatch.status): declared, as the model has no column.
    status = serializers.ChoiceField(choices=ImportStatus.choices, read_only=True)
    job = serializers.SerializerMethodField()

    class Meta:
        model = ImportBatch
        fields = ["id", "url", "source_name", "status", "samples_created", "candidates_created", "split_counts",
                  "errors", "created_at", "job"]

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, obj: ImportBatch) -> str:
        return self._absolute(reverse("api-import", args=[obj.pk]))

    def get_job(self, obj: ImportBatch) -> dict | None:
        job = obj.job
        if job is None:
            return None  # imported inline before imports recorded a job, or its job was deleted
        metrics = job.last_metrics or {}
        return {"id": job.pk, "status": job.status, "progress": job.progress, "phase": metrics.get("phase"),
                "rows_done": metrics.get("rows_done"), "rows_total": metrics.get("rows_total"),
                "error": job.error.splitlines()[0] if job.error else "", "finished_at": job.finished_at,
                "url": self._absolute(reverse("dash-api-job", args=[job.pk]))}


class SampleCandidateOut(serializers.ModelSerializer):
    """One candidate of a sample: its id (as in exports and snapshots), the system that made it and
    its image (fetchable with the API token)."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = Candidate
        fields = ["id", "source_name", "provenance", "source_ref", "seed", "sha256", "url"]

    def get_url(self, obj: Candidate) -> str:
        return _media(obj.image)


class SampleOut(serializers.ModelSerializer):
    """A sample with its candidates; give it samples with ``candidates`` prefetched."""

    task = serializers.SlugRelatedField(source="task_type", slug_field="slug", read_only=True)
    candidates = SampleCandidateOut(many=True, read_only=True)
    source_url = serializers.SerializerMethodField()
    mask_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["id", "external_id", "task", "prompt", "split", "split_key", "width", "height", "source_url",
                  "mask_url", "candidates", "created_at"]

    def get_source_url(self, obj: Sample) -> str:
        return _media(obj.source_image)

    def get_mask_url(self, obj: Sample) -> str:
        return _media(obj.mask)


class SampleListQuery(serializers.Serializer):
    task = serializers.SlugField(required=False, help_text="Only samples of this task type.")
    split = serializers.ChoiceField(choices=Split.values, required=False)
