"""Launching a two-rank gloo job under torchrun from a test, for both engines' N-vs-1 tests."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (the launcher and its ranks)."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def torchrun(config, tmp_path: Path, name: str, program: list[str], timeout: int = 180) -> Path:
    """Write ``config`` to ``<tmp_path>/<name>.json`` and run ``program`` (torchrun's arguments after
    the launcher's own; ``{config}`` stands for that file) on two ranks; returns the run folder."""
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(config.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    # --standalone picks a free rendezvous port. Output goes to a file, not a pipe: torchrun starts
    # its ranks in sessions of their own, and a stray rank holding a pipe would block us forever.
    log_path = tmp_path / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             *(arg.replace("{config}", str(config_path)) for arg in program)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_processes_mentioning(str(config_path))
        pytest.fail("torchrun run timed out:\n" + log_path.read_text()[-3000:])
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    return Path(config.output_dir)
