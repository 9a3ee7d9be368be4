"""``python manage.py demo [--quick] [--report PATH] [--base-url URL] [--seed N] [--cache-dir DIR]``."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class Command(BaseCommand):
    help = ("Run the synthetic OneReward loop on the current database through the real services and HTTP API: "
            "seed → simulated annotators over HTTP → snapshot → reward model → RL (Algorithms 1, 2 and an "
            "untrained-RM control) → generation campaign → oracle evaluation.")

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="configs/demo/quick.json with the platform's "
                            "smoke-run caps (< 3 min with a cached base policy)")
        parser.add_argument("--report", help="write the JSON report here")
        parser.add_argument("--base-url", help="a running server (http://127.0.0.1:PORT); default: start one "
                            "in process on a free port")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cache-dir", help="where the pre-trained base policy and reward-model base are "
                            "cached (default ARTIFACTS_ROOT/demo-cache)")

    def handle(self, *args, **opts):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
        from demo.services import DemoError, format_summary, run_demo

        def progress(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            report = run_demo(size="quick" if opts["quick"] else "full", seed=opts["seed"], base_url=opts["base_url"],
                              cache_dir=Path(opts["cache_dir"]) if opts["cache_dir"] else None, progress=progress)
        except (DemoError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        report = _json_safe(report)
        if opts["report"]:
            path = Path(opts["report"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2, default=str))
            progress(f"report: {path}")
        self.stdout.write("")
        self.stdout.write(format_summary(report))
