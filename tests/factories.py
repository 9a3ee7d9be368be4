"""factory_boy factories and small builders for annotation objects (real rows, real files)."""
from __future__ import annotations

import io

import factory
from django.contrib.auth.models import Group, User
from PIL import Image

from annotation.models import Campaign, Candidate, Criterion, Provenance, Sample, TaskType
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.imports import candidate_create_from_png, sample_create_from_images


def make_user(username: str, *roles: str, password: str = "pw-test-1234") -> User:
    user = User.objects.create_user(username=username, password=password)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    return user


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-test-1234")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or ("annotator",):
            self.groups.add(Group.objects.get(name=role))
        self.save()


def solid_png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def mask_image(size: tuple[int, int] = (64, 64)) -> Image.Image:
    m = Image.new("L", size, 0)
    m.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return m


_counter = iter(range(10**9))


def make_sample(task: str = "fill", *, n_candidates: int = 2, size=(64, 64), prompt: str = "a red circle") -> Sample:
    i = next(_counter)
    sample = sample_create_from_images(
        external_id=f"sample-{i}", task=TaskType.objects.get(slug=task),
        source=Image.new("RGB", size, (i % 200, 40, 90)), mask=mask_image(size), prompt=prompt,
    )
    for k in range(n_candidates):
        candidate_create_from_png(sample=sample, png=solid_png((k * 60 % 256, i % 256, 7), size),
                                  provenance=Provenance.SYNTHETIC, source_name=f"sys{k}")
    return sample


def make_campaign(*, task: str = "fill", n_samples: int = 3, overlap: int = 2, mode: str = "pairwise",
                  candidates_per_item: int | None = None, start: bool = True, criteria: list[str] | None = None,
                  **kwargs) -> Campaign:
    n_cands = candidates_per_item or (2 if mode == "pairwise" else 4)
    for _ in range(n_samples):
        make_sample(task, n_candidates=n_cands)
    sample_ids = list(Sample.objects.filter(task_type__slug=task).order_by("-id").values_list("id", flat=True)[:n_samples])
    crit = list(Criterion.objects.filter(slug__in=criteria)) if criteria else None
    campaign = campaign_create(
        name=kwargs.pop("name", f"campaign-{next(_counter)}"), task_type=TaskType.objects.get(slug=task),
        criteria=crit, mode=mode, candidates_per_item=candidates_per_item, overlap=overlap,
        selection={"sample_ids": sample_ids}, **kwargs,
    )
    return campaign_start(campaign=campaign) if start else campaign


def first_candidate(sample: Sample) -> Candidate:
    return sample.candidates.order_by("id").first()
