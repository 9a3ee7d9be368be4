"""Checkpoints are data: nothing in a checkpoint folder is unpickled as code, and a run resumes
only from its own folder; trainable weights stay fp32 masters under a bf16 base."""

import ast
import pickle
from pathlib import Path

import pytest
import torch

from policytrain.engine import rl
from policytrain.engine.config import RLConfig
from policytrain.engine.pipeline import FillPolicy

from .conftest import center_brightness

REPO = Path(__file__).resolve().parents[3]
_SOURCE_DIRS = ("annotation", "bench", "config", "core", "demo", "frontend", "jobs", "policytrain", "rewardtrain",
                "synthetic", "scripts")

_PWNED = []


def _record_side_effect(tag):  # what a malicious pickle would run on load
    _PWNED.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (_record_side_effect, ("unpickled",))


def test_every_torch_load_in_the_repo_is_weights_only():
    offenders = []
    for folder in _SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_resume_refuses_a_checkpoint_that_carries_a_pickled_object(rl_config, tmp_path):
    cfg = rl_config(max_steps=2, save_every=2, output_dir=str(tmp_path / "run"))
    rl.train(cfg, reward_fn=center_brightness)
    rng_file = tmp_path / "run" / "checkpoints" / "step-2" / "rng.pt"
    state = torch.load(rng_file, weights_only=True)  # what the engine writes loads safely
    assert isinstance(state["generator"], torch.Tensor) and isinstance(state["torch"], torch.Tensor)
    torch.save({**state, "extra": _Payload()}, rng_file)
    with pytest.raises(pickle.UnpicklingError):
        rl.train(cfg.replace(max_steps=3, resume=True), reward_fn=center_brightness)
    assert _PWNED == []


def test_resume_is_a_flag_not_a_path(rl_config, tmp_path):
    with pytest.raises(ValueError, match="resume must be true or false"):
        rl_config(resume=str(tmp_path / "elsewhere" / "checkpoints" / "step-2"))
    with pytest.raises(ValueError, match="resume must be true or false"):
        RLConfig.from_dict({"base_policy": "x", "conditions_dir": "c", "output_dir": "o", "resume": "/tmp/x"})


@pytest.mark.parametrize("full_finetune", [False, True])
def test_trainable_weights_are_fp32_masters_over_a_bf16_base(tiny_flux, full_finetune):
    """What ``rl.train`` does on CUDA with mixed_precision auto: load the base in bf16 for LoRA (fp32
    for a full fine-tune), then make every trainable weight fp32, so AdamW and the EMA update fp32."""
    config = RLConfig(base_policy=str(tiny_flux), conditions_dir="c", output_dir="o", full_finetune=full_finetune)
    weight_dtype, use_bf16 = rl._resolve_dtype(config, torch.device("cuda"))
    assert use_bf16 and weight_dtype == (torch.float32 if full_finetune else torch.bfloat16)
    policy = FillPolicy.from_pretrained(str(tiny_flux), device="cpu", dtype=weight_dtype)
    params = rl.setup_trainable(policy, config)
    assert params and {p.dtype for p in params.values()} == {torch.float32}
    frozen = {p.dtype for p in policy.transformer.parameters() if not p.requires_grad}
    assert frozen == (set() if full_finetune else {torch.bfloat16})
