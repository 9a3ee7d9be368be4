"""Run an engine under ``torchrun`` from a Celery task and stream its metrics into the job.

Multi-GPU (and multi-process CPU) training cannot run inside the worker process, so the task
launches ``python -m torch.distributed.run --standalone --nproc-per-node N -m <engine> train``
as a subprocess, tails the run folder's ``metrics.jsonl`` into the job's progress, turns a
cancel request into the engine's stop file, and returns the engine's ``result.json``.
Nothing here imports torch: the subprocess does.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from enginekit.metrics import read_new_lines

from .services import JobCancelled, JobReporter


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since - 1  # 1 s of slack for coarse file-system clocks
    except FileNotFoundError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM torchrun (it passes the signal to its ranks), then SIGKILL whatever is left.

    The ranks run in sessions of their own, so they are found as torchrun's children rather than
    by process group.
    """
    import psutil

    try:
        ranks = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        ranks = []
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for rank in ranks:
        with contextlib.suppress(psutil.NoSuchProcess):
            rank.kill()


def _stop_leftovers(launch_config: Path, reporter: JobReporter) -> None:
    """Stop a dead predecessor's ranks before launching: when a worker's pool process is killed,
    torchrun and its ranks live on as orphans, and a job taken over at once (jobs.services.job_claim)
    must not train twice into one run folder. They are found by the launch file in their command line."""
    import psutil

    me = psutil.Process()
    mine = {p.pid for p in me.children(recursive=True)} | {me.pid}
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid not in mine and str(launch_config) in (proc.info["cmdline"] or []):
                left.append(proc)
    if not left:
        return
    reporter.log(f"stopping {len(left)} process(es) left by the previous attempt")
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def run_distributed(
    *, module: str, config: dict, run_dir: Path, processes: int, reporter: JobReporter, total_steps: int = 0,
    poll_seconds: float = 0.5, exit_grace_seconds: float = 120.0, progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``module`` (``rewardtrain.engine`` / ``policytrain.engine``) on ``processes`` ranks.

    Each event the ranks log goes to ``progress`` (default: the job's progress), the same events
    a single-process run hands its callback, so the caller's handling of a checkpoint event
    (publishing it to the object store) applies here too. Once the ranks have written
    ``result.json`` the run is done. If they are still alive
    ``exit_grace_seconds`` later (a rank stuck in teardown), they are stopped and the result
    stands, so that a finished run is never left hanging in the job.
    """
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # Launch files sit beside the run folder: the engine refuses to start in a non-empty new folder.
    launch_config = run_dir.parent / f"{run_dir.name}.launch.json"
    stop_file = run_dir.parent / f"{run_dir.name}.stop"
    log_path = run_dir.parent / f"{run_dir.name}.log"
    _stop_leftovers(launch_config, reporter)
    launch_config.write_text(json.dumps(config, indent=2))
    stop_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", module, "train", "--config", str(launch_config), "--quiet", "--stop-file", str(stop_file)]
    reporter.log(f"launching {processes} processes: torchrun -m {module} train")
    metrics, result_path = run_dir / "metrics.jsonl", run_dir / "result.json"
    offset = 0
    report = progress or reporter.progress
    launched_at = time.time()
    result_seen_at: float | None = None
    stuck_after_result = False
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                finished = proc.poll() is not None
                lines, offset = read_new_lines(metrics, offset)
                for line in lines:
                    event = json.loads(line)
                    report({"total_steps": total_steps, **event})
                if finished:
                    break
                if reporter.should_stop() and not stop_file.exists():
                    stop_file.touch()
                    reporter.log("cancel requested: asked the ranks to checkpoint and stop")
                if result_seen_at is None and _written_since(result_path, launched_at):
                    result_seen_at = time.monotonic()
                if result_seen_at is not None and time.monotonic() - result_seen_at > exit_grace_seconds:
                    stuck_after_result = True
                    reporter.log(f"the ranks wrote result.json but were still running {exit_grace_seconds:.0f} s "
                                 "later: stopped them")
                    break
                time.sleep(poll_seconds)
        finally:
            if proc.poll() is None:  # the worker is going down, or the ranks hang in teardown
                _stop(proc)
    if stuck_after_result:
        return json.loads(result_path.read_text())
    # torchrun reports its ranks' exit 3 (stopped on request) as its own status 1, so the stop
    # file we wrote, not the status, tells a cancellation from a crash.
    if proc.returncode != 0 and stop_file.exists():
        raise JobCancelled("stopped at the user's request; a checkpoint was written")
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:].strip().splitlines()
        raise RuntimeError(f"torchrun exited with status {proc.returncode}: " + (tail[-1] if tail else "no output")
                           + f" (full log: {log_path})")
    return json.loads((run_dir / "result.json").read_text())
