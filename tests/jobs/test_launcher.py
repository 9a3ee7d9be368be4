"""run_distributed: a finished run whose ranks hang in teardown still ends, with its result; ranks a
dead predecessor left behind are stopped before a new launch."""
from __future__ import annotations

import contextlib
import time

import psutil

from jobs.launcher import run_distributed


class RecordingReporter:
    """The three JobReporter methods the launcher calls, recorded."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.logs: list[str] = []

    def progress(self, event: dict) -> None:
        self.events.append(event)

    def log(self, message: str) -> None:
        self.logs.append(message)

    def should_stop(self) -> bool:
        return False


def test_ranks_stuck_after_writing_their_result_are_stopped_and_the_result_stands(tmp_path):
    run_dir = tmp_path / "run"
    reporter = RecordingReporter()
    started = time.monotonic()
    result = run_distributed(module="tests.jobs.stuck_engine", config={"output_dir": str(run_dir)}, run_dir=run_dir,
                             processes=2, reporter=reporter, total_steps=1, poll_seconds=0.2, exit_grace_seconds=2)
    assert result == {"status": "completed", "steps": 1}
    assert time.monotonic() - started < 120  # the engine itself would sleep 600 s
    assert any("still running" in line for line in reporter.logs), reporter.logs
    assert reporter.events and reporter.events[0]["step"] == 1
    launch_config = str(tmp_path / "run.launch.json")
    left = [p for p in psutil.process_iter(["cmdline"]) if launch_config in " ".join(p.info["cmdline"] or [])]
    assert not left, f"ranks left running: {left}"



def _orphan(*args: str) -> psutil.Process:
    """A process whose parent is gone (started from a shell that exits), like a killed worker's ranks."""
    import subprocess
    import sys

    code = "import time; time.sleep(60)"
    out = subprocess.run(["sh", "-c", f'"$0" -c "{code}" --config "$1" >/dev/null 2>&1 & echo $!', sys.executable,
                          *args], capture_output=True, text=True, check=True).stdout
    return psutil.Process(int(out))


def test_a_dead_predecessors_ranks_are_stopped_before_a_taken_over_job_launches(tmp_path):
    """A pool process killed mid-run leaves torchrun and its ranks behind; the next attempt on this
    host stops them (found by the run's launch file) instead of training twice into one folder."""
    from jobs.launcher import _stop_leftovers

    launch_config = tmp_path / "run.launch.json"
    orphan, other_run = _orphan(str(launch_config)), _orphan(str(tmp_path / "other.launch.json"))
    try:
        reporter = RecordingReporter()
        _stop_leftovers(launch_config, reporter)
        psutil.wait_procs([orphan], timeout=5)
        assert not orphan.is_running()
        assert other_run.is_running()  # another job's ranks are left alone
        assert reporter.logs == ["stopping 1 process(es) left by the previous attempt"]
    finally:
        for proc in (orphan, other_run):
            with contextlib.suppress(psutil.Error):
                proc.kill()
