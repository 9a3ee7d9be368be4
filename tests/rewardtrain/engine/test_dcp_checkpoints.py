"""Sharded (torch.distributed.checkpoint) checkpoints: every rank writes its own shards, nothing is
gathered, and a checkpoint resumes on another number of processes (2 -> 1 and 1 -> 2) on the
weights an uninterrupted run reaches."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rewardtrain.engine.train import RunCancelled, latest_checkpoint, train

from .test_train import _torchrun


def _final(run: Path) -> dict:
    return load_file(run / "final" / "model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _resume_copy(checkpoint: Path, run: Path) -> Path:
    """A fresh run folder holding only ``checkpoint``, to resume from."""
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, run / "checkpoints" / checkpoint.name)
    return run


def test_dcp_checkpoint_resumes_exactly_in_one_process(base_config, tmp_path):
    """Cancelled at step 2, saved as DCP shards (no gathered weights), resumed: the uninterrupted
    run's weights; a "full" checkpoint of the same run still resumes too (older format)."""
    cfg = base_config.replace(max_steps=4, checkpoint_format="dcp", lora_dropout=0.1)  # dropout: RNG restored too
    train(cfg.replace(output_dir=str(tmp_path / "full")))
    polls = iter(range(100))
    interrupted = cfg.replace(output_dir=str(tmp_path / "resumed"))
    with pytest.raises(RunCancelled):
        train(interrupted, should_stop=lambda: next(polls) >= 2)  # polled before each step: stop before step 2
    checkpoint = latest_checkpoint(tmp_path / "resumed")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert (checkpoint.name, state["checkpoint_format"]) == ("step-2", "dcp")
    assert (checkpoint / "dcp" / ".metadata").is_file()
    assert not (checkpoint / "adapter").exists() and not (checkpoint / "optimizer.pt").exists()
    assert not any(p.name.startswith(".tmp-") for p in checkpoint.parent.iterdir())
    resumed = train(interrupted.replace(resume=True))
    assert resumed["resumed_from_step"] == 2
    assert _max_diff(_final(tmp_path / "full"), _final(tmp_path / "resumed")) < 1e-6


def test_config_refuses_an_unknown_checkpoint_format(base_config):
    with pytest.raises(ValueError, match="checkpoint_format must be one of full, dcp"):
        base_config.replace(checkpoint_format="pickle")


@pytest.mark.slow
def test_dcp_checkpoint_resumes_on_another_number_of_processes(base_config, tmp_path):
    """FSDP on 2 gloo ranks saves DCP shards at step 2; one process resumes them (2 -> 1). A
    1-process DCP checkpoint resumes under 2-rank FSDP (1 -> 2). Both end on the uninterrupted
    runs' weights, and those agree across rank counts."""
    cfg = base_config.replace(max_steps=4, save_every=2, keep_checkpoints=4, checkpoint_format="dcp")
    two = _torchrun(cfg.replace(parallelism="fsdp", output_dir=str(tmp_path / "two")), tmp_path, "two")
    one = Path(train(cfg.replace(output_dir=str(tmp_path / "one")))["final_dir"]).parent
    assert _max_diff(_final(one), _final(two)) < 1e-4  # FSDP on 2 ranks == 1 process

    shards = two / "checkpoints" / "step-2"
    state = json.loads((shards / "trainer_state.json").read_text())
    assert (state["world_size"], state["parallelism"], state["checkpoint_format"]) == (2, "fsdp", "dcp")
    assert not (shards / "trainable.safetensors").exists()  # nothing gathered on rank 0
    assert len(list((shards / "dcp").glob("*.distcp"))) == 2  # one shard file per rank

    two_to_one = _resume_copy(shards, tmp_path / "two_to_one")
    resumed = train(cfg.replace(resume=True, output_dir=str(two_to_one)))
    assert (resumed["resumed_from_step"], resumed["world_size"]) == (2, 1)
    assert _max_diff(_final(two), _final(two_to_one)) < 1e-4

    one_to_two = _resume_copy(one / "checkpoints" / "step-2", tmp_path / "one_to_two")
    _torchrun(cfg.replace(resume=True, parallelism="fsdp", output_dir=str(one_to_two)), tmp_path, "one_to_two")
    result = json.loads((one_to_two / "result.json").read_text())
    assert (result["resumed_from_step"], result["world_size"], result["parallelism"]) == (2, 2, "fsdp")
    assert _max_diff(_final(one), _final(one_to_two)) < 1e-4
