"""The shipped reward configs are valid (the GPU benchmarks are tested in tests/bench/)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_shipped_configs_are_valid():
    from rewardtrain.engine.config import RewardTrainConfig

    for name in ("tiny.json", "single_gpu.json"):
        cfg = RewardTrainConfig.from_json(REPO / "configs" / "reward" / name)
        assert cfg.lora and cfg.parallelism == "ddp"
    sharded = RewardTrainConfig.from_json(REPO / "configs" / "reward" / "full_finetune_fsdp.json")
    assert (sharded.full_finetune, sharded.parallelism, sharded.lr) == (True, "fsdp", 1e-6)
