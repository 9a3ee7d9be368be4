"""The engine GPU benchmarks (bench/gpu/reward_engine.py, rl_engine.py) run end to end at tiny sizes on
the CPU (--dry-run) through the product's own `train` entry points, and their real sizes are the
published ones."""

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
GPU = REPO / "bench" / "gpu"


def load(name):
    spec = importlib.util.spec_from_file_location(name, GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a benchmark dry run trains both cases end to end: the full suite runs it, `make check` does not
def test_reward_engine_dry_run(capsys, tmp_path):
    out = load("reward_engine").main(["--dry-run", "--work", str(tmp_path)])
    assert [(r["case"], r["status"]) for r in out["rows"]] == [("reward lora", "ok"), ("reward full", "ok")]
    assert all(r["step_s"] > 0 and r["flops"] > 0 for r in out["rows"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "rewardtrain.engine.train.train" in "\n".join(lines)
    assert lines[-1].startswith("result: reward lora:") and "tokens/s" in lines[-1] and "MFU" in lines[-1]


@pytest.mark.slow  # as above
def test_rl_engine_dry_run(capsys, tmp_path):
    module = load("rl_engine")
    out = module.main(["--dry-run", "--work", str(tmp_path)])
    statuses = [r["status"] for r in out["rows"]]
    # The full fine-tune runs the engine's FSDP path (one rank here: it is not sharded, but takes that code).
    assert statuses == ["ok", "ok", "ok"]
    assert out["rows"][2]["case"] == "rl full @64 x1 ranks"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("result: rl lora-64 @64:") and "images/s" in last


def test_real_sizes_are_the_published_ones():
    eb = load("engine_bench")
    _tok, config = eb.reward_config(real=True)
    with torch.device("meta"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        params = sum(p.numel() for p in Qwen2_5_VLForConditionalGeneration(config).parameters())
    assert abs(params / 1e9 - 8.292) < 0.001  # Qwen2.5-VL-7B's 8.29 B
    from policytrain.engine.tiny import tiny_transformer

    with torch.device("meta"):
        transformer = tiny_transformer(**eb.FLUX_FILL_TRANSFORMER)
    assert abs(sum(p.numel() for p in transformer.parameters()) / 1e9 - 11.90) < 0.01  # FLUX.1-Fill-dev


def test_runner_script_is_valid_bash_and_runs_every_case():
    script = GPU / "run_all.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for needle in ("reward_engine.py --case lora", "reward_engine.py --case full", "rl_engine.py --case lora-512",
                   "rl_engine.py --case lora-1024", "rl_engine.py --case full"):
        assert needle in text
