"""The versioned query template and the run config validation."""

import pytest

from rewardtrain.engine.config import RewardTrainConfig, parse_override
from rewardtrain.engine.template import CRITERIA, TASKS, TEMPLATE_VERSION, build_messages, build_query


def test_vocabulary_matches_contract():
    assert TASKS == ("fill", "extend", "removal")
    assert CRITERIA["fill"] == ("text_alignment", "consistency", "structure", "aesthetics")
    assert CRITERIA["removal"] == ("removal_quality",)
    assert TEMPLATE_VERSION


def test_prompt_only_in_text_alignment_query():
    with_prompt = build_query("fill", "text_alignment", "a red balloon")
    assert "a red balloon" in with_prompt
    for criterion in ("consistency", "structure", "aesthetics"):
        query = build_query("fill", criterion, "a red balloon")
        assert "a red balloon" not in query
        assert "first image better than the second" in query
    assert "object removal" in build_query("removal", "removal_quality", "remove the specified object")


def test_query_errors():
    with pytest.raises(ValueError, match="unknown task"):
        build_query("inpaint", "structure")
    with pytest.raises(ValueError, match="not valid for task 'removal'"):
        build_query("removal", "aesthetics")
    with pytest.raises(ValueError, match="unknown task|not valid"):
        build_query("fill", "sharpness")
    with pytest.raises(ValueError, match="non-empty prompt"):
        build_query("extend", "text_alignment", "  ")


def test_messages_put_the_query_before_the_two_images():
    content = build_messages("extend", "structure")[0]["content"]
    assert [c["type"] for c in content] == ["text", "image", "image"]
    assert TEMPLATE_VERSION == "onereward-query-v2"


def test_config_round_trip_and_validation(tmp_path):
    cfg = RewardTrainConfig(base_model="m", snapshot_dir="s", output_dir=str(tmp_path))
    assert RewardTrainConfig.from_dict(cfg.to_dict()) == cfg
    assert "lm_head" in cfg.lora_target_modules and "qkv" in cfg.lora_target_modules
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        RewardTrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="missing config keys: base_model"):
        RewardTrainConfig.from_dict({"snapshot_dir": "s", "output_dir": "o"})
    with pytest.raises(ValueError, match="exactly one of lora and full_finetune"):
        cfg.replace(full_finetune=True)
    with pytest.raises(ValueError, match="max_pixels must be >= min_pixels"):
        cfg.replace(min_pixels=10000, max_pixels=5000)
    with pytest.raises(ValueError, match="dtype must be one of"):
        cfg.replace(dtype="int8")
    assert parse_override("lr=0.01") == ("lr", 0.01)
    assert parse_override("device=cpu") == ("device", "cpu")
