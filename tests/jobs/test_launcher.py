"""run_distributed: a finished run whose ranks hang in teardown still ends, with its result."""
from __future__ import annotations

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
