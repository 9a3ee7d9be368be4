"""Demo data: users for each role and a small started campaign per task type, built from the
synthetic world (no downloads) through the annotation services. Idempotent: running it twice
changes nothing. ``manage.py seed_demo`` runs it; ``make run`` calls that on every start."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import Group, User
from django.db import transaction

from annotation.images import png_bytes
from annotation.models import Campaign, CampaignMode, Provenance, Sample, TaskType
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.imports import candidate_create_from_png, sample_create_from_images

# Two annotators: the demo campaigns want two judgments per item (overlap 2), so one annotator
# alone could never finish them.
DEMO_USERS = {  # username: (password, roles)
    "annotator": ("annotate-me", ("annotator",)),
    "annotator2": ("annotate-me-too", ("annotator",)),
    "curator": ("curate-me", ("curator",)),
    "scientist": ("science-me", ("scientist",)),
}


@dataclass(frozen=True)
class DemoSummary:
    """Passwords by demo username, and the demo campaigns' names."""

    users: dict[str, str]
    campaigns: list[str]


def demo_users_ensure() -> dict[str, str]:
    """Create the demo users (staff for curator/scientist so the admin opens) and return passwords."""
    for username, (password, roles) in DEMO_USERS.items():
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.is_staff = "curator" in roles
            user.save()
        user.groups.add(*Group.objects.filter(name__in=roles))
    return {u: p for u, (p, _) in DEMO_USERS.items()}


@transaction.atomic
def demo_campaigns_ensure(*, samples_per_task: int = 6, size: int = 112, seed: int = 7) -> list[str]:
    """One started campaign per task type (best–worst of 4 for fill, pairwise for the others)."""
    from synthetic.oracles import degrade
    from synthetic.scenes import make_condition

    names = []
    for t_index, task in enumerate(("fill", "extend", "removal")):
        name = f"Demo — {task}"
        names.append(name)
        if Campaign.objects.filter(name=name).exists():
            continue
        task_type = TaskType.objects.get(slug=task)
        mode = CampaignMode.BEST_WORST if task == "fill" else CampaignMode.PAIRWISE
        n_cands = 4 if mode == CampaignMode.BEST_WORST else 2
        ids = []
        for i in range(samples_per_task):
            cond = make_condition(task, seed=seed * 1000 + t_index * 100 + i, size=size, with_prompt=i % 2 == 0)
            ext = f"demo-{task}-{i}"
            sample = Sample.objects.filter(external_id=ext).first() or sample_create_from_images(
                external_id=ext, task=task_type, source=cond.source, mask=cond.mask, prompt=cond.prompt,
                meta={"synthetic": cond.meta},
            )
            rng = np.random.default_rng(seed + i)
            for k in range(n_cands):
                img = degrade(cond, strength=0.15 + 0.2 * k, rng=rng)
                candidate_create_from_png(sample=sample, png=png_bytes(img), provenance=Provenance.SYNTHETIC,
                                          source_name=f"synthetic-degrade-{k}", seed=seed + i)
            ids.append(sample.pk)
        campaign = campaign_create(
            name=name, task_type=task_type, mode=mode, candidates_per_item=n_cands, overlap=2, lease_seconds=900,
            selection={"sample_ids": ids, "max_items_per_sample": 1},
            description=f"Synthetic {task} scenes with degraded candidates (seeded).",
        )
        campaign_start(campaign=campaign, seed=seed)
    return names


def demo_seed() -> DemoSummary:
    """The demo users and campaigns, created if missing; what ``seed_demo`` prints."""
    return DemoSummary(users=demo_users_ensure(), campaigns=demo_campaigns_ensure())
