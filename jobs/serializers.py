"""Output serializers for what every job-backed endpoint returns about a job: its metric points.

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
