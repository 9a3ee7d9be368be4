"""Run an engine under ``torchrun`` from a Celery task and stream its metrics into the job.

Multi-GPU (and multi-process CPU) training cannot run inside the worker process, so the task
launches ``python -m torch.distributed.run --standalone --nproc-per-node N -m <engine> train``
as a subprocess, tails the run folder's ``metrics.jsonl`` into the job's progress, turns a
cancel request into the engine's stop file, and returns the engine's ``result.json``.
Nothing here imports torch: the subprocess does.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .services import JobCancelled, JobReporter


def _tail_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete new lines of ``path`` after byte ``offset`` (a half-written last line waits)."""
    if not path.exists():
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").splitlines(), offset + end


def run_distributed(
    *, module: str, config: dict, run_dir: Path, processes: int, reporter: JobReporter, total_steps: int = 0,
    poll_seconds: float = 0.5,
) -> dict:
    """Train ``module`` (``rewardtrain.engine`` / ``policytrain.engine``) on ``processes`` ranks."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # Launch files sit beside the run folder: the engine refuses to start in a non-empty new folder.
    launch_config = run_dir.parent / f"{run_dir.name}.launch.json"
    stop_file = run_dir.parent / f"{run_dir.name}.stop"
    log_path = run_dir.parent / f"{run_dir.name}.log"
    launch_config.write_text(json.dumps(config, indent=2))
    stop_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", module, "train", "--config", str(launch_config), "--quiet", "--stop-file", str(stop_file)]
    reporter.log(f"launching {processes} processes: torchrun -m {module} train")
    metrics = run_dir / "metrics.jsonl"
    offset = 0
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                finished = proc.poll() is not None
                lines, offset = _tail_lines(metrics, offset)
                for line in lines:
                    event = json.loads(line)
                    reporter.progress({"total_steps": total_steps, **event})
                if finished:
                    break
                if reporter.should_stop() and not stop_file.exists():
                    stop_file.touch()
                    reporter.log("cancel requested: asked the ranks to checkpoint and stop")
                time.sleep(poll_seconds)
        finally:
            if proc.poll() is None:  # the worker itself is going down: take the ranks with it
                proc.terminate()
                proc.wait(30)
    # torchrun reports its ranks' exit 3 (stopped on request) as its own status 1, so the stop
    # file we wrote, not the status, tells a cancellation from a crash.
    if proc.returncode != 0 and stop_file.exists():
        raise JobCancelled("stopped at the user's request; a checkpoint was written")
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:].strip().splitlines()
        raise RuntimeError(f"torchrun exited with status {proc.returncode}: " + (tail[-1] if tail else "no output")
                           + f" (full log: {log_path})")
    return json.loads((run_dir / "result.json").read_text())
