"""A criterion added through the API is annotated, lands in a snapshot with its wording, trains the
tiny reward model and scores with it (issue 24: criteria and task types are data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import Sample
from annotation.services.snapshots import snapshot_create, snapshot_execute
from contracts.vocabulary import BUILTIN
from core.errors import ApplicationError
from policytrain.services import check_reward_coverage
from rewardtrain.models import RewardModel
from rewardtrain.services import reward_run_start, reward_score_start
from tests.factories import make_sample, make_user

pytestmark = pytest.mark.django_db

DESCRIPTION = "quoted words are spelled exactly and easy to read"


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_new_criterion_goes_from_the_api_to_the_reward_model_and_rl(tmp_path):
    curator = _client(make_user("cur", "curator"))
    made = curator.post("/api/criteria/", {"slug": "text_legibility", "name": "Text legibility",
                                           "description": DESCRIPTION, "uses_prompt": True,
                                           "task_types": ["fill"]}, format="json")
    assert made.status_code == 201, made.content
    guideline = curator.post("/api/criteria/text_legibility/guidelines/",
                             {"body_markdown": "Pick the image whose quoted words read **exactly**."}, format="json")
    assert guideline.status_code == 201, guideline.content

    samples = [make_sample("fill", n_candidates=2) for _ in range(8)]
    campaign = curator.post("/api/campaigns/", {"name": "legibility", "task_type": "fill",
                                                "criteria": ["text_legibility"], "overlap": 1,
                                                "selection": {"sample_ids": [s.pk for s in samples]}}, format="json")
    assert campaign.status_code == 201, campaign.content
    cid = campaign.json()["id"]
    assert curator.post(f"/api/campaigns/{cid}/start/").status_code == 200

    annotator = _client(make_user("ann", "annotator"))
    for n in range(len(samples)):
        item = annotator.post(f"/api/campaigns/{cid}/next/", {}, format="json").json()
        assert [c["slug"] for c in item["criteria"]] == ["text_legibility"]
        winner = min(c["id"] for c in item["candidates"])  # the first candidate of each sample always wins
        done = annotator.post(f"/api/leases/{item['lease']}/submit/",
                              {"answers": {"text_legibility": winner}, "idempotency_key": f"k{n}"}, format="json")
        assert done.status_code == 201, done.content

    ids = [s.pk for s in samples]
    Sample.objects.filter(pk__in=ids[:6]).update(split="train")
    Sample.objects.filter(pk=ids[6]).update(split="val")
    Sample.objects.filter(pk=ids[7]).update(split="test")
    pending = snapshot_create(name="legibility", filter={"campaign_ids": [cid]}, enqueue=False)
    snapshot = snapshot_execute(pending.job_id)
    manifest = json.loads((Path(snapshot.path) / "manifest.json").read_text())
    assert manifest["vocabulary"] == {
        "tasks": {"fill": {"name": "Image fill", "fixed_prompt": ""}},
        "criteria": {"text_legibility": {"name": "Text legibility", "description": DESCRIPTION,
                                         "uses_prompt": True, "tasks": ["fill"]}},
    }

    from policytrain.engine.config import RLConfig
    from policytrain.engine.rl import read_reward_criteria
    from rewardtrain.engine.config import RewardTrainConfig
    from rewardtrain.engine.data import read_pairs
    from rewardtrain.engine.evaluate import evaluate_scorer, format_table
    from rewardtrain.engine.scorer import RewardScorer, ScoreRequest
    from rewardtrain.engine.tiny import build_tiny_reward_model
    from rewardtrain.engine.train import train

    base = build_tiny_reward_model(tmp_path / "base")
    config = RewardTrainConfig(
        base_model=str(base), snapshot_dir=snapshot.path, output_dir=str(tmp_path / "run"), lora_r=4, lora_alpha=8,
        lr=1e-3, batch_size=2, max_steps=2, min_pixels=28 * 28, max_pixels=56 * 56, gradient_checkpointing=False,
        save_every=0, log_every=1, device="cpu", eval_batch_size=4, warmup_steps=0,
    )
    train(config)
    final = tmp_path / "run" / "final"
    card = json.loads((final / "onereward.json").read_text())
    assert card["trained_on"] == {"fill": ["text_legibility"]}
    assert card["vocabulary"]["criteria"]["text_legibility"]["description"] == DESCRIPTION

    scorer = RewardScorer.from_pretrained(final)
    (query,) = scorer.collator.texts_for([("fill", "text_legibility", "the word OPEN")])
    assert f"Evaluation criterion: text legibility ({DESCRIPTION})." in query and "Prompt: the word OPEN" in query
    first, second = (c.image.path for c in samples[0].candidates.order_by("id"))
    (score,) = scorer.score([ScoreRequest(first, second, "fill", "text_legibility", "the word OPEN")])
    assert 0.0 < score.p_yes < 1.0
    report = evaluate_scorer(scorer, read_pairs(snapshot.path, split="test"))
    assert report["counts"] == {"fill": {"text_legibility": 1}}
    assert "Text legibility" in format_table(report) and "Image fill" in format_table(report)

    # RL takes the criterion names from the reward model's card, not from constants.
    covered, vocabulary = read_reward_criteria(final)
    assert covered == {"fill": ["text_legibility"]}
    rl = RLConfig(base_policy="b", conditions_dir="c", output_dir="o", reward_model=str(final),
                  criterion_weights={"fill": {"text_legibility": 2.0}})
    rl.check_vocabulary(vocabulary)
    with pytest.raises(ValueError, match="unknown criterion 'text_legibility'"):
        rl.check_vocabulary(BUILTIN)  # the paper's vocabulary has no such criterion

    # The web side checks requests against the registered model's card in the same way.
    run = reward_run_start(snapshot=snapshot, preset="tiny")
    model = RewardModel.objects.create(run=run, name="legibility-rm", path=str(final), base_model=str(base),
                                       template_version=card["template_version"], snapshot=snapshot)
    first_id, second_id = samples[0].candidates.order_by("id").values_list("id", flat=True)
    job = reward_score_start(model=model, pairs=[{"first": first_id, "second": second_id,
                                                  "criterion": "text_legibility"}], enqueue=False)
    assert job.config["pairs"][0]["criterion"] == "text_legibility"
    with pytest.raises(ApplicationError) as refused:
        reward_score_start(model=model, pairs=[{"first": first_id, "second": second_id, "criterion": "structure"}],
                           enqueue=False)
    assert "text_legibility" in refused.value.fields["pairs"]["0"][0]
    fill_only = {"base_policy": "b", "conditions_dir": "c", "output_dir": "o", "reward_model": str(final),
                 "task_probs": {"fill": 1.0}}
    assert check_reward_coverage(model, RLConfig(**fill_only, criterion_weights={"fill": {"text_legibility": 2}})) == {
        "fill": ["text_legibility"]}
    with pytest.raises(ApplicationError) as unknown:
        check_reward_coverage(model, RLConfig(**fill_only, criterion_weights={"fill": {"structure": 1}}))
    assert "unknown criterion 'structure'" in unknown.value.fields["criterion_weights"][0]
