"""Output serializers shared by the job-backed endpoints: a job's metric points and the resolved
config a run-start preview answers.

They describe (for the OpenAPI schema) the dicts ``jobs.selectors.job_metric_series`` builds; the
endpoints return those dicts as they are.
"""
from __future__ import annotations

from rest_framework import serializers


class MetricPointOut(serializers.Serializer):
    """One logged metric point; the logged values (``loss``, ``accuracy``, ``split``, …) sit beside
    these keys, as the run logged them."""

    id = serializers.IntegerField(help_text="Poll with ?after=<the last id> for newer points.")
    step = serializers.IntegerField()
    kind = serializers.CharField(help_text="train or eval")


class ResolvedConfigOut(serializers.Serializer):
    """What a ``runs/preview/`` route answers: the config the run would train with."""

    config = serializers.DictField(help_text="The final resolved config; nothing was written or queued.")
