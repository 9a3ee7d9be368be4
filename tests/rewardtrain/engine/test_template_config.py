"""The versioned query template and the run config validation."""

import pytest

from contracts.vocabulary import BUILTIN, CriterionSpec, TaskSpec, Vocabulary
from rewardtrain.engine.config import RewardTrainConfig, parse_override
from rewardtrain.engine.template import TEMPLATE_VERSION, build_messages, build_query


def test_builtin_wording_is_the_versioned_one():
    # Every model trained on TEMPLATE_VERSION read exactly these words: the seeds must not drift.
    assert TEMPLATE_VERSION == "onereward-query-v2"
    assert build_query("fill", "text_alignment", " a red cat ") == (
        "Task: image fill.\n"
        "Evaluation criterion: text alignment (how well the edited region matches the prompt).\n"
        "Prompt: a red cat\n"
        "Is the first image better than the second image? Answer Yes or No."
    )
    assert build_query("removal", "removal_quality", "ignored") == (
        "Task: object removal.\n"
        "Evaluation criterion: removal quality (the object is gone and the background is restored cleanly).\n"
        "Is the first image better than the second image? Answer Yes or No."
    )
    assert build_query("extend", "structure") == (
        "Task: image extend.\n"
        "Evaluation criterion: structure (plausible shapes, no distorted or broken objects).\n"
        "Is the first image better than the second image? Answer Yes or No."
    )


def test_query_is_worded_from_the_vocabulary_it_is_given():
    vocab = Vocabulary(
        tasks=(TaskSpec("fill", "Image fill"), TaskSpec("relight", "Relighting")),
        criteria=(
            CriterionSpec("text_legibility", "OCR legibility", "quoted words are spelled exactly and readable",
                          ("fill",), uses_prompt=True),
            CriterionSpec("shadows", "Shadows", "shadows agree with the light", ("relight",)),
        ),
    )
    query = build_query("fill", "text_legibility", 'the word "OPEN"', vocab)
    # Acronyms keep their case; the prompt is included because this criterion uses it.
    assert "Evaluation criterion: OCR legibility (quoted words are spelled exactly and readable)." in query
    assert 'Prompt: the word "OPEN"' in query
    assert build_query("relight", "shadows", "not shown", vocab).startswith("Task: relighting.\nEvaluation criterion: shadows")
    assert "not shown" not in build_query("relight", "shadows", "not shown", vocab)
    with pytest.raises(ValueError, match="non-empty prompt"):
        build_query("fill", "text_legibility", "", vocab)
    with pytest.raises(ValueError, match="unknown task 'extend'"):
        build_query("extend", "structure", None, vocab)
    with pytest.raises(ValueError, match="not valid for task 'fill'"):
        build_query("fill", "text_legibility", "x", BUILTIN)


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
