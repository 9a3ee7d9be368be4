"""One rank of a torchrun RL run with the toy reward (a reward in code cannot go through the CLI).

``python -m torch.distributed.run --nproc-per-node 2 tests/policytrain/engine/fsdp_worker.py CONFIG.json``
"""
import json
import sys
from pathlib import Path

import torch

from enginekit.cli import exit_process
from policytrain.engine.config import RLConfig
from policytrain.engine.rl import train
from tests.policytrain.engine.conftest import center_brightness

if __name__ == "__main__":
    torch.set_num_threads(1)
    train(RLConfig.from_dict(json.loads(Path(sys.argv[1]).read_text())), reward_fn=center_brightness)
    exit_process(0)
