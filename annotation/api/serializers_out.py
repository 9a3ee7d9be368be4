"""Output serializers for the annotation API's dict payloads: the OpenAPI contract of what the
views return.

The payloads are built by selectors and small helpers (``assignment_payload``, ``item_payload``,
``campaign_progress``, the export job view); these serializers describe them field by field for
/api/schema/, and the views return those dicts unchanged, so a client and the schema agree.
"""
from __future__ import annotations

from rest_framework import serializers

from .serializers import CampaignOut, CriterionOut, JudgmentOut


class MeOut(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField(), help_text="annotator, curator, scientist")


class TokenOut(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class HtmlOut(serializers.Serializer):
    html = serializers.CharField(help_text="The guideline rendered as sanitised HTML.")


class CampaignWithAnnotatorsOut(CampaignOut):
    annotators = serializers.ListField(child=serializers.CharField(),
                                       help_text="Usernames the campaign is restricted to; empty = every annotator.")

    class Meta(CampaignOut.Meta):
        fields = [*CampaignOut.Meta.fields, "annotators"]


class CampaignProgressOut(serializers.Serializer):
    """Items done / leased / left; the ``mine_*`` keys are the caller's own standing (annotators)."""

    items_total = serializers.IntegerField()
    items_done = serializers.IntegerField()
    items_full = serializers.IntegerField()
    items_open = serializers.IntegerField()
    leases_active = serializers.IntegerField()
    slots_total = serializers.IntegerField()
    slots_done = serializers.IntegerField()
    fraction_done = serializers.FloatField()
    judgments_per_criterion = serializers.DictField(child=serializers.IntegerField())
    as_of = serializers.DateTimeField()
    mine_left = serializers.IntegerField(required=False)
    mine_submitted = serializers.IntegerField(required=False)
    items_left_for_others = serializers.IntegerField(required=False)


class AnnotatorStatsOut(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    annotator = serializers.CharField()
    judgments = serializers.IntegerField()
    ties = serializers.IntegerField()
    left_picks = serializers.IntegerField()
    sided = serializers.IntegerField()
    gold_seen = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    tie_rate = serializers.FloatField()
    left_rate = serializers.FloatField(allow_null=True)
    gold_accuracy = serializers.FloatField(allow_null=True)
    peer_compared = serializers.IntegerField()
    peer_agreement = serializers.FloatField(allow_null=True)
    peer_expected = serializers.FloatField(allow_null=True)
    peer_agreement_ratio = serializers.FloatField(allow_null=True)
    median_active_ms = serializers.IntegerField(allow_null=True)


class CampaignQualityOut(serializers.Serializer):
    agreement = serializers.DictField(child=serializers.FloatField(allow_null=True),
                                      help_text="Krippendorff's alpha per criterion.")
    annotators = AnnotatorStatsOut(many=True)


class AssignmentCampaignOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    mode = serializers.CharField()


class AssignmentSampleOut(serializers.Serializer):
    id = serializers.CharField(help_text="The sample's external id.")
    task = serializers.CharField()
    prompt = serializers.CharField()
    source_url = serializers.CharField()
    mask_url = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class AssignmentCandidateOut(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    url = serializers.CharField()


class AssignmentOut(serializers.Serializer):
    """One leased item, blind: candidates in the lease's own order, without their systems."""

    lease = serializers.UUIDField()
    expires_at = serializers.DateTimeField()
    campaign = AssignmentCampaignOut()
    item = serializers.IntegerField()
    sample = AssignmentSampleOut()
    candidates = AssignmentCandidateOut(many=True)
    criteria = CriterionOut(many=True)


class LastSubmittedOut(AssignmentOut):
    judgments = JudgmentOut(many=True)


class SkipOut(serializers.Serializer):
    lease = serializers.UUIDField()
    state = serializers.CharField()


class ItemCriterionOut(serializers.Serializer):
    judgments = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    majority = serializers.CharField(allow_null=True)
    split = serializers.BooleanField()
    disputed = serializers.BooleanField()
    adjudicated = serializers.CharField(allow_null=True, required=False)


class ItemRowOut(serializers.Serializer):
    id = serializers.IntegerField()
    sample = serializers.CharField()
    status = serializers.CharField()
    is_gold = serializers.BooleanField()
    judgments = serializers.IntegerField()
    annotators = serializers.ListField(child=serializers.CharField())
    disputed = serializers.BooleanField()
    criteria = serializers.DictField(child=ItemCriterionOut())


class ItemPageOut(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    page_size = serializers.IntegerField()
    criteria = serializers.ListField(child=serializers.CharField())
    threshold = serializers.FloatField()
    results = ItemRowOut(many=True)


class ItemOut(serializers.Serializer):
    """One item in full for curators (``item_payload``): the sample, the candidates with the system
    that made each, every judgment, adjudication and skip."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    is_gold = serializers.BooleanField()
    gold_answer = serializers.JSONField(allow_null=True)
    campaign = serializers.DictField()
    criteria = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    sample = serializers.DictField()
    candidates = serializers.ListField(child=serializers.DictField())
    agreement = serializers.DictField(child=ItemCriterionOut())
    judgments = serializers.ListField(child=serializers.DictField())
    adjudications = serializers.ListField(child=serializers.DictField())
    skips = serializers.ListField(child=serializers.DictField())


class ExportJobOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    name = serializers.CharField()
    format = serializers.CharField(allow_null=True)
    campaign_ids = serializers.ListField(child=serializers.IntegerField())
    progress = serializers.FloatField()
    rows_done = serializers.IntegerField()
    rows_total = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField()
    rows = serializers.IntegerField(allow_null=True)
    size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField()
    download_url = serializers.URLField(allow_null=True, help_text="Set once the export has succeeded.")


class ExportJobListOut(serializers.Serializer):
    results = ExportJobOut(many=True)
