import json
import shutil

import pytest
import torch

from policytrain.engine.pipeline import (
    Condition,
    FillPolicy,
    load_condition_tensors,
    load_conditions,
    paste_back_source,
    policy_prompt,
)

from .conftest import write_conditions


@pytest.fixture(scope="module")
def policy(tiny_flux):
    return FillPolicy.from_pretrained(tiny_flux)


def _batch(n=1, size=64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.zeros(n, 1, size, size)
    masks[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return images, masks


def test_non_fill_base_model_is_rejected(tiny_flux, tmp_path):
    bad = tmp_path / "flux-dev-like"
    shutil.copytree(tiny_flux, bad)
    cfg_path = bad / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["in_channels"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"not a FLUX Fill model.*384"):
        FillPolicy.from_pretrained(bad)


def test_mask_size_mismatch_is_rejected(tmp_path, policy):
    root = write_conditions(tmp_path, [{"task": "fill", "prompt": "x"}], size=64, mask_size=48)
    (cond,) = load_conditions(root)
    with pytest.raises(ValueError, match="mask size 48x48 differs from image size 64x64"):
        load_condition_tensors(cond)
    images, masks = _batch()
    with pytest.raises(ValueError, match="mask size"):
        policy.generate(images, masks[..., :48, :48], ["x"], seed=0, steps=1, max_sequence_length=16)


def test_size_must_be_multiple_of_16(tmp_path):
    root = write_conditions(tmp_path, [{"task": "fill", "prompt": "x"}], size=72)
    (cond,) = load_conditions(root)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        load_condition_tensors(cond)
    assert load_condition_tensors(cond, resolution=64)[0].shape == (1, 3, 64, 64)


def test_fixed_prompts():
    assert policy_prompt("removal", "car") == "remove the specified object"
    assert policy_prompt("extend", "  ") == "high-definition, perfect composition"
    assert policy_prompt("extend", "a tree") == "a tree"
    assert Condition("i", "fill", "a cat", None, None).policy_prompt == "a cat"


def test_own_loop_matches_official_pipeline_and_cfg_changes_output(policy):
    images, masks = _batch(2)
    kwargs = dict(seed=3, steps=3, max_sequence_length=16)
    official = policy.generate(images, masks, ["a red cat", "a blue sky"], **kwargs)
    ours = policy.generate(images, masks, ["a red cat", "a blue sky"], use_pipeline=False, **kwargs)
    assert official.shape == (2, 3, 64, 64)
    assert torch.equal(official, ours)
    cfg = policy.generate(images, masks, ["a red cat", "a blue sky"], true_cfg=3.0, negative_prompt="dark", **kwargs)
    assert (cfg - official).abs().max() > 1e-3
    other_seed = policy.generate(images, masks, ["a red cat", "a blue sky"], seed=4, steps=3, max_sequence_length=16)
    assert (other_seed - official).abs().max() > 1e-4


def test_paste_back_keeps_the_source_outside_the_mask_and_the_fill_inside(policy):
    images, masks = _batch(2)
    kwargs = dict(seed=3, steps=2, max_sequence_length=16)
    raw = policy.generate(images, masks, ["a red cat", "a blue sky"], **kwargs)
    pasted = policy.generate(images, masks, ["a red cat", "a blue sky"], paste_back=True, **kwargs)
    outside, inside = masks.expand_as(images) == 0, masks.expand_as(images) == 1
    assert (raw[outside] - images[outside]).abs().max() > 0.05  # the tiny model changes the known region
    assert torch.equal(pasted[outside], images[outside])
    assert torch.equal(pasted[inside], raw[inside])


def test_paste_back_rejects_mismatched_shapes():
    images, masks = _batch()
    with pytest.raises(ValueError, match="paste-back needs matching shapes"):
        paste_back_source(images[..., :32, :32], images, masks)


def test_disabled_adapter_reproduces_base_exactly(tiny_flux):
    base = FillPolicy.from_pretrained(tiny_flux)
    tuned = FillPolicy.from_pretrained(tiny_flux)
    torch.manual_seed(0)
    tuned.add_lora(4, 4, ["to_q", "to_k", "to_v", "to_out.0"])
    with torch.no_grad():  # make the adapter non-trivial (peft initialises lora_B to zero)
        for name, p in tuned.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    images, masks = _batch()
    kwargs = dict(seed=1, steps=2, max_sequence_length=16)
    reference = base.generate(images, masks, ["a red cat"], **kwargs)
    assert (tuned.generate(images, masks, ["a red cat"], **kwargs) - reference).abs().max() > 1e-4
    tuned.transformer.disable_adapters()
    assert torch.equal(tuned.generate(images, masks, ["a red cat"], **kwargs), reference)


def test_bad_conditions_row(tmp_path):
    (tmp_path / "conditions.jsonl").write_text('{"id": "x", "task": "paint"}\n')
    with pytest.raises(ValueError, match="conditions.jsonl:1"):
        load_conditions(tmp_path)
    with pytest.raises(ValueError, match="no conditions.jsonl"):
        load_conditions(tmp_path / "missing")


@pytest.mark.parametrize("prompt", ['the word "STAR"', "extend the scene with a cyan square on the top",
                                    "Q? x-ray, 42% (quoted) 'ok'!"])
def test_tiny_tokenizers_know_every_character_of_a_prompt(policy, prompt):
    """No character is unknown: T5 never emits <unk>, and CLIP (whose unknown token is its end token)
    ends the text only once, at the end; both keep every letter of a quoted capitalised word."""
    t5 = policy.pipe.tokenizer_2(prompt).input_ids
    assert policy.pipe.tokenizer_2.unk_token_id not in t5
    clip = policy.pipe.tokenizer(prompt).input_ids
    assert clip.count(policy.pipe.tokenizer.eos_token_id) == 1 and clip[-1] == policy.pipe.tokenizer.eos_token_id
    assert "STAR" in policy.pipe.tokenizer_2.decode(policy.pipe.tokenizer_2('the word "STAR"').input_ids)
