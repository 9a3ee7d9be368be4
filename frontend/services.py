"""Writes the dashboard makes itself (everything else goes through the apps' services)."""
from __future__ import annotations

from core.errors import ApplicationError
from jobs.models import Job

from .selectors import run_of

MAX_TAGS = 20
MAX_TAG_CHARS = 40


def run_tags_set(*, job: Job, tags: list) -> list[str]:
    """Replace the tags of ``job``'s reward or RL run with ``tags`` (trimmed, inner whitespace
    collapsed, duplicates dropped keeping the first spelling) and return them. Other jobs have no
    run row to carry tags: a field error, like an empty, over-long or non-text tag."""
    run = run_of(job)
    if run is None:
        raise ApplicationError("Only reward and RL runs carry tags.",
                               fields={"tags": [f"A {job.get_kind_display().lower()} job has no tags."]})
    if not isinstance(tags, list):
        raise ApplicationError("Invalid tags.", fields={"tags": ["Send a list of tags."]})
    clean: list[str] = []
    errors: list[str] = []
    for tag in tags:
        text = " ".join(tag.split()) if isinstance(tag, str) else None
        if not text:
            errors.append("Each tag is non-empty text.")
        elif len(text) > MAX_TAG_CHARS:
            errors.append(f"“{text[:20]}…” is longer than {MAX_TAG_CHARS} characters.")
        elif text.casefold() not in {t.casefold() for t in clean}:
            clean.append(text)
    if len(clean) > MAX_TAGS:
        errors.append(f"At most {MAX_TAGS} tags per run.")
    if errors:
        raise ApplicationError("Invalid tags.", fields={"tags": errors})
    run.tags = clean
    run.save(update_fields=["tags"])
    return clean
