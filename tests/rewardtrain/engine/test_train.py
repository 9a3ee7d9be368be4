"""Training: learns a pixel criterion, resumes exactly, cancels resumably, matches under torchrun."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardtrain.engine.evaluate import evaluate, format_table
from rewardtrain.engine.train import RunCancelled, latest_checkpoint, train
from tests.enginekit.torchrun import torchrun


@pytest.mark.slow
def test_learns_brightness_criterion_to_high_heldout_accuracy(base_config, synthetic_snapshot, tmp_path):
    snap = synthetic_snapshot(tmp_path / "snap", n_train=96, n_val=8, n_test=48, seed=3)
    cfg = base_config.replace(snapshot_dir=str(snap), max_steps=60, eval_every=30, log_every=10)
    events = []
    result = train(cfg, progress=events.append)
    out = Path(cfg.output_dir)
    assert result["status"] == "completed" and (out / "result.json").exists()
    assert {"config.json", "metrics.jsonl", "final"} <= {p.name for p in out.iterdir()}
    assert any(e["kind"] == "eval" for e in events) and all("total_steps" in e for e in events)
    card = json.loads((out / "final" / "onereward.json").read_text())
    assert card["template_version"] and card["snapshot"]["content_hash"]
    assert card["trained_on"]["removal"] == ["removal_quality"]
    report = evaluate(out / "final", snap, split="test")
    assert report["overall_accuracy"] >= 0.90, format_table(report)
    assert report["counts"]["fill"]["text_alignment"] == 16
    assert report["human_ceiling"]["removal"]["removal_quality"] == 0.92
    assert 0 <= report["position_consistency"] <= 1 and 0 <= report["ece"] <= 1
    table = format_table(report)
    assert "Image fill" in table and "(83.77)" in table and "Removal quality" in table


def test_resume_from_mid_run_checkpoint_matches_uninterrupted(base_config, tmp_path):
    cfg = base_config.replace(max_steps=6, save_every=3, lora_dropout=0.1)
    full = train(cfg.replace(output_dir=str(tmp_path / "full")))
    calls = {"n": 0}

    def stop_after_four():
        calls["n"] += 1
        return calls["n"] > 4  # polled before each step: stop before step index 4

    interrupted = cfg.replace(output_dir=str(tmp_path / "resumed"))
    with pytest.raises(RunCancelled) as exc:
        train(interrupted, should_stop=stop_after_four)
    assert exc.value.step == 4 and exc.value.checkpoint.name == "step-4"
    assert not (tmp_path / "resumed" / "result.json").exists()
    assert latest_checkpoint(tmp_path / "resumed").name == "step-4"
    resumed = train(interrupted.replace(resume=True))
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == full["steps"] == 6
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # replayed steps are not duplicated


def test_refuses_to_overwrite_a_run_without_resume(base_config):
    train(base_config.replace(max_steps=1))
    with pytest.raises(ValueError, match="already holds a run"):
        train(base_config.replace(max_steps=1))


def _train_losses(run_dir):
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["kind"] == "train"]


def _torchrun(config, tmp_path: Path, name: str) -> Path:
    """Train ``config`` on two gloo ranks under torchrun; returns the run folder."""
    return torchrun(config, tmp_path, name, ["-m", "rewardtrain.engine", "train", "--config", "{config}", "--quiet"])


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_torchrun_two_processes_match_one_process(base_config, tmp_path, parallelism):
    """Same global batch, same loss curve and final weights, whether the ranks replicate (DDP) or
    shard (FSDP2) the model."""
    # FSDP with activation checkpointing, as a 7B full fine-tune would run it.
    cfg = base_config.replace(max_steps=4, output_dir=str(tmp_path / "one"), gradient_checkpointing=parallelism == "fsdp")
    train(cfg)
    two = _torchrun(cfg.replace(output_dir=str(tmp_path / "two"), parallelism=parallelism), tmp_path, "two")
    one_losses, two_losses = _train_losses(tmp_path / "one"), _train_losses(two)
    assert len(one_losses) == len(two_losses) == 4
    assert max(abs(a - b) for a, b in zip(one_losses, two_losses, strict=True)) < 1e-4
    result = json.loads((two / "result.json").read_text())
    assert (result["world_size"], result["parallelism"]) == (2, parallelism)
    a, b = load_file(tmp_path / "one" / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


@pytest.mark.slow
def test_fsdp_run_resumes_from_its_sharded_checkpoint(base_config, tmp_path):
    """An FSDP checkpoint holds named full tensors; resuming from it ends on the uninterrupted
    run's weights, and a DDP resume of it is refused with a clear message."""
    full = _torchrun(base_config.replace(max_steps=4, save_every=2, keep_checkpoints=4, parallelism="fsdp",
                                         output_dir=str(tmp_path / "full")), tmp_path, "full")
    checkpoint = full / "checkpoints" / "step-2"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["parallelism"] == "fsdp"
    assert any(".lora_A." in name for name in load_file(checkpoint / "trainable.safetensors"))
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, resumed_dir / "checkpoints" / "step-2")
    with pytest.raises(ValueError, match="resume it with parallelism=fsdp"):
        train(base_config.replace(max_steps=4, resume=True, output_dir=str(resumed_dir)))
    resumed = _torchrun(base_config.replace(max_steps=4, resume=True, parallelism="fsdp",
                                            output_dir=str(resumed_dir)), tmp_path, "resumed")
    assert json.loads((resumed / "result.json").read_text())["resumed_from_step"] == 2
    a, b = load_file(full / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
