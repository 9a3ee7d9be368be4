"""A stand-in engine for launcher tests: writes its result, then never exits (a rank stuck in teardown)."""
import argparse
import json
import time
from pathlib import Path

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--config", required=True)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--stop-file")
    args = parser.parse_args()
    out = Path(json.loads(Path(args.config).read_text())["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "kind": "train", "loss": 0.5}) + "\n")
    (out / "result.json").write_text(json.dumps({"status": "completed", "steps": 1}))
    time.sleep(600)
