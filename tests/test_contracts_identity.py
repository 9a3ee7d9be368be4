"""Each contract is defined once, in ``contracts/``: every layer's name for it is the same object.

These replace the copies that used to disagree (two split hashes differed on a third of the keys;
two card readers had opposite key precedence; a snapshot writer wrote no ``pairs.parquet``).
"""

from __future__ import annotations

import contracts.splits


def test_one_split_function():
    import annotation.vocabulary
    import synthetic.conditions

    assert annotation.vocabulary.split_for_key is contracts.splits.split_for_key
    assert synthetic.conditions.split_for is contracts.splits.split_for_key


def test_the_split_is_the_databases_80_10_10_hash():
    import hashlib

    def stored(key: str) -> str:  # what every sample in the database was given
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
        return "train" if bucket < 80 else ("val" if bucket < 90 else "test")

    keys = [f"syn-fill-{i}-0" for i in range(1000)]
    assert [contracts.splits.split_for_key(k) for k in keys] == [stored(k) for k in keys]


def test_one_reader_and_writer_per_card(tmp_path):
    import json

    import contracts.cards
    import policytrain.engine.config
    import policytrain.services
    import rewardtrain.engine.scorer

    assert policytrain.engine.config.read_policy_meta is contracts.cards.read_policy_card
    assert policytrain.engine.config.POLICY_FILE == contracts.cards.POLICY_CARD
    assert rewardtrain.engine.scorer.MODEL_CARD == policytrain.services.MODEL_CARD == contracts.cards.REWARD_CARD

    # Both readers of the reward card share one precedence: a non-empty trained_on wins over tasks.
    from policytrain.engine.rl import read_reward_criteria

    (tmp_path / "onereward.json").write_text(json.dumps({"trained_on": {"fill": ["structure"]},
                                                        "tasks": {"fill": ["aesthetics"]}}))
    assert read_reward_criteria(tmp_path)[0] == {"fill": ["structure"]}

    class Model:
        path = str(tmp_path)

    assert policytrain.services.reward_model_criteria(Model()) == {"fill": ["structure"]}
    # An empty trained_on (the untrained control) is read from tasks.
    contracts.cards.write_reward_card(tmp_path, {"trained_on": {}, "tasks": {"fill": ["aesthetics"]}})
    assert read_reward_criteria(tmp_path)[0] == {"fill": ["aesthetics"]}
    assert policytrain.services.reward_model_criteria(Model()) == {"fill": ["aesthetics"]}


def test_policy_card_round_trip(tmp_path):
    from contracts.cards import read_policy_card, write_policy_card

    write_policy_card(tmp_path, base_policy="base", kind="lora", lora={"rank": 2}, weights="ema", step=3)
    assert read_policy_card(tmp_path) == {"format": 1, "base_policy": "base", "kind": "lora",
                                          "lora": {"rank": 2}, "weights": "ema", "step": 3}


def test_one_snapshot_contract():
    import annotation.services.snapshots as service
    import contracts.snapshot
    import rewardtrain.engine.data as data

    assert service.PAIR_SCHEMA is contracts.snapshot.PAIR_SCHEMA
    assert service.FORMAT_VERSION == contracts.snapshot.FORMAT_VERSION
    for name in ("SnapshotError", "PairRow", "read_pairs", "iter_raw_rows", "load_manifest", "load_vocabulary"):
        assert getattr(data, name) is getattr(contracts.snapshot, name), name


def test_the_snapshot_writer_writes_jsonl_and_parquet_that_read_back_alike(tmp_path):
    from contracts.snapshot import iter_raw_rows, write_manifest, write_pairs

    rows = [{"pair_id": f"p{i}", "split": "train", "task": "fill", "criterion": "structure", "prompt": "",
             "winner": "images/a.png", "loser": "images/b.png", "sample_id": "s", "votes": 2, "agreement": 1.0}
            for i in range(3)]
    assert write_pairs(tmp_path, rows) == 3
    write_manifest(tmp_path, {"counts": {"pairs": 3}})
    from_jsonl = [r for _, r in iter_raw_rows(tmp_path)]
    (tmp_path / "pairs.jsonl").unlink()
    from_parquet = [{k: v for k, v in r.items() if v is not None} for _, r in iter_raw_rows(tmp_path)]
    assert from_jsonl == from_parquet == rows


def test_one_conditions_contract(tmp_path):
    import contracts.conditions
    import policytrain.conditions
    from policytrain.engine.pipeline import load_conditions
    from synthetic.conditions import read_conditions_folder, write_conditions_folder
    from synthetic.scenes import make_conditions

    assert policytrain.conditions.CONDITIONS_FILE == contracts.conditions.CONDITIONS_FILE
    conds = make_conditions(3, seed=0, size=64)
    write_conditions_folder(conds, tmp_path)
    read = contracts.conditions.read_conditions(tmp_path)
    assert [r.id for r in read] == [c.id for c in conds]
    assert [c.id for c in load_conditions(tmp_path)] == [r.id for r in read_conditions_folder(tmp_path)]


def test_one_strict_preset_loader(tmp_path):
    import pytest

    from contracts.presets import PresetError, UnknownPreset, load_preset_file
    from rewardtrain import presets

    assert presets.preset_names() == ["full_finetune_fsdp", "multi_gpu", "single_gpu", "tiny"]
    # A broken file is an error naming it, never a silent fall-back to a built-in.
    (tmp_path / "tiny.json").write_text("{not json")
    with pytest.raises(PresetError, match="tiny.json"):
        load_preset_file(tmp_path, "tiny")
    (tmp_path / "odd.json").write_text('{"lr": 1, "not_a_field": 2}')
    with pytest.raises(PresetError, match="odd.json: unknown field"):
        load_preset_file(tmp_path, "odd", fields={"lr"})
    with pytest.raises(UnknownPreset) as info:
        load_preset_file(tmp_path, "../tiny")
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        presets.load_preset("huge")


def test_one_lineage_serialiser_per_level():
    import frontend.selectors
    import policytrain.selectors
    import rewardtrain.selectors

    assert policytrain.selectors.snapshot_ref is rewardtrain.selectors.snapshot_ref
    assert not hasattr(frontend.selectors, "snapshot_lineage")  # the dashboard's graphs are *_graph
