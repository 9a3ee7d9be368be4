"""The GPU benchmark script runs end to end with tiny sizes on CPU (--dry-run)."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # a benchmark dry run trains both cases end to end: the full suite runs it, `make check` does not
def test_reward_7b_dry_run(capsys):
    spec = importlib.util.spec_from_file_location("reward_7b", REPO / "bench" / "gpu" / "reward_7b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--dry-run"])
    assert [r["status"] for r in out["results"]] == ["ok", "ok"]
    assert out["results"][0]["trainable"] < out["results"][1]["trainable"] == out["params"]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("result: lora:")
    real = module.qwen25vl_config(dry_run=False)
    assert (real.text_config.hidden_size, real.text_config.num_hidden_layers, real.vision_config.depth) == (3584, 28, 32)


def test_shipped_configs_are_valid():
    from rewardtrain.engine.config import RewardTrainConfig

    for name in ("tiny.json", "single_gpu.json"):
        cfg = RewardTrainConfig.from_json(REPO / "configs" / "reward" / name)
        assert cfg.lora and cfg.parallelism == "ddp"
    sharded = RewardTrainConfig.from_json(REPO / "configs" / "reward" / "full_finetune_fsdp.json")
    assert (sharded.full_finetune, sharded.parallelism, sharded.lr) == (True, "fsdp", 1e-6)
