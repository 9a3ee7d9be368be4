"""Submitting, replaying and editing judgments."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from annotation.models import Choice, Judgment, JudgmentRevision
from annotation.services.judgments import judgment_edit, judgment_submit
from annotation.services.queue import lease_next
from core.errors import ApplicationError, Conflict, NotAllowed, NotFound
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def leased():
    campaign = make_campaign(n_samples=1, overlap=1, criteria=["structure", "aesthetics"])
    ann = make_user("ann", "annotator")
    return lease_next(campaign=campaign, annotator=ann), ann


def canonical(lease):
    return list(lease.item.slots.order_by("position").values_list("candidate_id", flat=True))


def test_submit_stores_canonical_choice_displayed_order_and_guideline_version(leased):
    lease, ann = leased
    a, b = canonical(lease)
    js, _ = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": b, "aesthetics": "tie"},
                         idempotency_key="k1", active_ms=1234)
    by = {j.criterion.slug: j for j in js}
    assert by["structure"].choice == Choice.B and by["aesthetics"].choice == Choice.TIE
    assert by["structure"].displayed_order == lease.displayed_order
    assert by["structure"].guideline_version.version == 1 and by["structure"].active_ms == 1234


def test_replaying_the_same_key_returns_the_stored_rows_without_duplicates(leased):
    lease, ann = leased
    a, _ = canonical(lease)
    first, created = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": a, "aesthetics": a}, idempotency_key="k1")
    again, created_again = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": "tie", "aesthetics": "tie"},
                            idempotency_key="k1")
    assert sorted(j.pk for j in first) == sorted(j.pk for j in again)
    assert (created, created_again) == (True, False)
    assert Judgment.objects.count() == 2
    assert set(Judgment.objects.values_list("choice", flat=True)) == {Choice.A}


def test_a_second_submission_with_a_new_key_is_a_conflict(leased):
    lease, ann = leased
    a, _ = canonical(lease)
    judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": a, "aesthetics": a}, idempotency_key="k1")
    with pytest.raises(Conflict):
        judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": a, "aesthetics": a}, idempotency_key="k2")


@pytest.mark.parametrize(("answers", "field"), [
    ({"structure": "tie"}, "aesthetics"),  # missing criterion
    ({"structure": "tie", "aesthetics": "tie", "consistency": "tie"}, "consistency"),  # not in campaign
    ({"structure": 999999, "aesthetics": "tie"}, "structure"),  # not a candidate of the item
    ({"structure": "left", "aesthetics": "tie"}, "structure"),  # unknown word
    ({"structure": {"best": 1, "worst": 2}, "aesthetics": "tie"}, "structure"),  # best-worst shape on a pair
])
def test_invalid_answers_are_rejected_with_field_messages_and_nothing_is_written(leased, answers, field):
    lease, ann = leased
    with pytest.raises(ApplicationError) as info:
        judgment_submit(lease_uid=lease.uid, annotator=ann, answers=answers, idempotency_key="k1")
    assert field in info.value.fields["answers"]
    assert Judgment.objects.count() == 0


def test_someone_elses_lease_is_invisible(leased):
    lease, _ = leased
    other = make_user("other", "annotator")
    with pytest.raises(NotFound):
        judgment_submit(lease_uid=lease.uid, annotator=other, answers={"structure": "tie", "aesthetics": "tie"},
                        idempotency_key="x")


def test_best_worst_answers_are_validated_and_stored():
    campaign = make_campaign(n_samples=1, overlap=1, mode="best_worst", criteria=["structure", "aesthetics"])
    ann = make_user("ann", "annotator")
    lease = lease_next(campaign=campaign, annotator=ann)
    ids = canonical(lease)
    with pytest.raises(ApplicationError):
        judgment_submit(lease_uid=lease.uid, annotator=ann, idempotency_key="k",
                        answers={"structure": {"best": ids[0], "worst": ids[0]}, "aesthetics": "no_difference"})
    js, _ = judgment_submit(lease_uid=lease.uid, annotator=ann, idempotency_key="k",
                         answers={"structure": {"best": ids[2], "worst": ids[1]}, "aesthetics": "no_difference"})
    by = {j.criterion.slug: j for j in js}
    assert (by["structure"].best_id, by["structure"].worst_id) == (ids[2], ids[1])
    assert by["aesthetics"].choice == Choice.NO_DIFFERENCE and by["aesthetics"].best_id is None


def test_edit_within_the_window_keeps_history_and_closes_after_it(leased, settings):
    lease, ann = leased
    a, b = canonical(lease)
    js, _ = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": a, "aesthetics": a}, idempotency_key="k")
    j = next(x for x in js if x.criterion.slug == "structure")
    judgment_edit(judgment=j, annotator=ann, answer=b)
    j.refresh_from_db()
    assert j.choice == Choice.B
    assert list(JudgmentRevision.objects.filter(judgment=j).values_list("choice", flat=True)) == [Choice.A]
    with pytest.raises(NotAllowed):
        judgment_edit(judgment=j, annotator=make_user("x", "annotator"), answer=a)
    Judgment.objects.filter(pk=j.pk).update(created_at=j.created_at - timedelta(seconds=settings.ANNOTATION_EDIT_WINDOW_SECONDS + 5))
    with pytest.raises(Conflict):
        judgment_edit(judgment=j, annotator=ann, answer=a)


def test_database_refuses_a_second_judgment_for_the_same_item_criterion_and_annotator(leased):
    lease, ann = leased
    a, _ = canonical(lease)
    js, _ = judgment_submit(lease_uid=lease.uid, annotator=ann, answers={"structure": a, "aesthetics": a}, idempotency_key="k")
    j = js[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(item=j.item, lease=j.lease, criterion=j.criterion, annotator=ann, choice="tie",
                                displayed_order=[], guideline_version=j.guideline_version, idempotency_key="other")
