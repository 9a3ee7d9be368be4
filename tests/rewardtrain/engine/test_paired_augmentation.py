"""Paired augmentation (`augment_flip`, `augment_crop`): one transform for both candidates of a
training pair, deterministic in (seed, step, pair), never applied to evaluation, no flip where the
label reads the prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file

from rewardtrain.engine.config import RewardTrainConfig
from rewardtrain.engine.data import (
    PairAugmentation,
    PairCollator,
    PairRow,
    StepBatches,
    load_image,
    load_training_pairs,
)
from rewardtrain.engine.model import load_reward_model
from rewardtrain.engine.train import RunCancelled, train


def _row(tmp_path: Path, criterion: str = "consistency", pair_id: str = "p0") -> PairRow:
    """A pair whose loser is the winner's colour negative: any identical geometric transform keeps
    loser == 255 - winner at every pixel, a different one for each image breaks it."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)  # not square: crops keep the aspect
    winner, loser = tmp_path / f"{pair_id}-w.png", tmp_path / f"{pair_id}-l.png"
    Image.fromarray(noise).save(winner)
    ImageOps.invert(Image.fromarray(noise)).save(loser)
    prompt = "the word CAT on the left" if criterion == "text_alignment" else ""
    return PairRow(pair_id=pair_id, split="train", task="fill", criterion=criterion, prompt=prompt,
                   winner=winner, loser=loser)


def test_both_candidates_get_the_identical_transform(tmp_path):
    row = _row(tmp_path)
    augmentation = PairAugmentation(flip=True, crop=0.3, seed=1)
    original = np.asarray(load_image(row.winner), dtype=np.int16)
    flips = changed = 0
    for step in range(12):
        winner, loser = (np.asarray(im, dtype=np.int16) for im in augmentation.images(step, row))
        assert winner.shape == loser.shape == original.shape
        # Interpolation commutes with the negative up to rounding: identical windows and flips.
        assert np.abs(255 - winner - loser).max() <= 1
        flips += augmentation.transform_for(step, row).flip
        changed += not np.array_equal(winner, original)
    assert 0 < flips < 12 and changed == 12
    # The check is sensitive: flipping only one of the two images breaks the relation.
    one_sided = np.asarray(ImageOps.mirror(load_image(row.loser)), dtype=np.int16)
    assert np.abs(255 - original - one_sided).max() > 1


def test_flip_is_skipped_where_the_label_reads_the_prompt(tmp_path):
    text = _row(tmp_path, "text_alignment", "t0")
    visual = _row(tmp_path, "consistency", "t0")  # same pair id, so the same draws
    augmentation = PairAugmentation(flip=True, crop=0.2, seed=0)
    text_transforms = [augmentation.transform_for(step, text) for step in range(16)]
    visual_transforms = [augmentation.transform_for(step, visual) for step in range(16)]
    assert not any(t.flip for t in text_transforms)
    assert any(t.flip for t in visual_transforms)
    # Only the flip is skipped: text pairs still get the same crops.
    assert [t.box for t in text_transforms] == [t.box for t in visual_transforms]
    assert any(t.box != (0.0, 0.0, 1.0, 1.0) for t in text_transforms)


def test_same_seed_same_augmentation_other_seed_another(tiny_model_dir, snapshot_dir):
    processor = load_reward_model(str(tiny_model_dir), device="cpu").processor
    rows = load_training_pairs(snapshot_dir)

    def batches(seed: int, augment: bool) -> StepBatches:
        augmentation = PairAugmentation(flip=augment, crop=0.3 if augment else 0.0, seed=seed)
        return StepBatches(rows, PairCollator(processor), batch_size=4, seed=0, rank=0, world_size=1,
                           start_step=0, total_steps=4, augmentation=augmentation)

    plain = batches(0, augment=False)
    assert plain.augmentation is None  # off: the batches of a run without augmentation
    for step in range(3):
        a, b = batches(7, True).batch_for(step), batches(7, True).batch_for(step)
        assert all(torch.equal(a[k], b[k]) for k in a)
        other = batches(8, True).batch_for(step)
        unaugmented = plain.batch_for(step)
        assert torch.equal(a["input_ids"], unaugmented["input_ids"])  # same pairs, same queries
        assert not torch.equal(a["pixel_values"], unaugmented["pixel_values"])
        assert not torch.equal(a["pixel_values"], other["pixel_values"])


def test_training_augments_train_pairs_only_and_resumes_the_same(base_config, tmp_path, monkeypatch):
    calls: list[tuple[str, bool]] = []
    original = PairCollator.__call__

    def recording(self, rows, images=None):
        calls.extend((r.split, images is not None) for r in rows)
        return original(self, rows, images)

    monkeypatch.setattr(PairCollator, "__call__", recording)
    cfg = base_config.replace(max_steps=4, eval_every=2, save_every=2, lora_dropout=0.1,
                              augment_flip=True, augment_crop=0.2)
    train(cfg.replace(output_dir=str(tmp_path / "full")))
    assert {split for split, augmented in calls if augmented} == {"train"}
    assert {split for split, augmented in calls if not augmented} == {"val"}  # evaluation untouched

    stops = {"n": 0}

    def stop_after_three() -> bool:
        stops["n"] += 1
        return stops["n"] > 3

    with pytest.raises(RunCancelled):
        train(cfg.replace(output_dir=str(tmp_path / "resumed")), should_stop=stop_after_three)
    train(cfg.replace(output_dir=str(tmp_path / "resumed"), resume=True))
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_augmentation_changes_what_training_learns_from(base_config, tmp_path):
    plain = train(base_config.replace(max_steps=2, output_dir=str(tmp_path / "plain")))
    augmented = train(base_config.replace(max_steps=2, output_dir=str(tmp_path / "aug"), augment_crop=0.3))
    assert plain["status"] == augmented["status"] == "completed"
    a = load_file(tmp_path / "plain" / "final" / "model.safetensors")
    b = load_file(tmp_path / "aug" / "final" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("changes", "message"), [
    ({"augment_crop": 0.6}, "augment_crop must be a number in [0, 0.5]"),
    ({"augment_crop": -0.1}, "augment_crop must be a number in [0, 0.5]"),
    ({"augment_crop": "0.1"}, "augment_crop must be a number in [0, 0.5]"),
    ({"augment_crop": True}, "augment_crop must be a number in [0, 0.5]"),
    ({"augment_flip": "yes"}, "augment_flip must be true or false"),
])
def test_config_rejects_bad_augmentation(changes, message):
    data = {"base_model": "m", "snapshot_dir": "s", "output_dir": "o", **changes}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RewardTrainConfig.from_dict(data)


def test_config_defaults_off_and_round_trips():
    cfg = RewardTrainConfig(base_model="m", snapshot_dir="s", output_dir="o")
    assert cfg.augment_flip is False and cfg.augment_crop == 0.0
    on = cfg.replace(augment_flip=True, augment_crop=0.1)
    assert RewardTrainConfig.from_dict(on.to_dict()) == on
