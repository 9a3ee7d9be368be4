"""Command line: `python -m rewardtrain.engine {build-tiny,train,evaluate,score}`.

Examples:
    python -m rewardtrain.engine build-tiny var/models/tiny-reward
    python -m rewardtrain.engine train --config configs/reward/tiny.json --set max_steps=20
    torchrun --nproc-per-node 2 -m rewardtrain.engine train --config cfg.json
    python -m rewardtrain.engine evaluate --model RUN/final --snapshot SNAP [--split test]
    python -m rewardtrain.engine score --model RUN/final --pairs pairs.jsonl [--out scores.jsonl]

Bad input (missing files, invalid config, wrong model) exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class _Exit(Exception):  # noqa: N818
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_build_tiny(args: argparse.Namespace) -> None:
    from .tiny import build_tiny_reward_model

    print(build_tiny_reward_model(args.out, seed=args.seed))


def _cmd_train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .config import RewardTrainConfig, parse_override
    from .train import RunCancelled, train

    data = json.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set or []:
        key, value = parse_override(item)
        data[key] = value
    config = RewardTrainConfig.from_dict(data)
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=None, desc="train", unit="step", disable=not is_main or args.quiet)

    def progress(event: dict) -> None:
        if bar.total is None:
            bar.total = event.get("total_steps")
        if event.get("kind") == "train":
            bar.n = event["step"]
            bar.set_postfix(loss=f"{event['loss']:.4f}")
            bar.refresh()

    stop_file = Path(args.stop_file) if args.stop_file else None
    try:
        result = train(config, progress=progress, should_stop=(lambda: stop_file.exists()) if stop_file else None)
    except RunCancelled as exc:
        bar.close()
        print(str(exc), file=sys.stderr)
        raise SystemExit(3) from exc
    bar.close()
    if is_main:
        print(json.dumps(result, indent=2))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate, format_table

    report = evaluate(args.model, args.snapshot, split=args.split, batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))


def _cmd_score(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .scorer import RewardScorer, ScoreRequest

    pairs_path = Path(args.pairs)
    if not pairs_path.exists():
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    requests = []
    for lineno, line in enumerate(pairs_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            first, second = (pairs_path.parent / item["first"], pairs_path.parent / item["second"])
            requests.append(ScoreRequest(first, second, item["task"], item["criterion"], item.get("prompt", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{pairs_path}:{lineno}: expected JSON with first, second, task, criterion") from exc
        for path in (first, second):
            if not path.exists():
                raise FileNotFoundError(f"{pairs_path}:{lineno}: image not found: {path}")
    scorer = RewardScorer.from_pretrained(args.model, device=args.device)
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115 - closed below
    try:
        for start in tqdm(range(0, len(requests), args.batch_size), desc="score", unit="batch", file=sys.stderr):
            chunk = requests[start : start + args.batch_size]
            for req, score in zip(chunk, scorer.score(chunk, batch_size=args.batch_size), strict=True):
                out.write(json.dumps({"first": str(req.first), "second": str(req.second), "task": req.task,
                                      "criterion": req.criterion, "p_yes": score.p_yes,
                                      "log_odds": score.log_odds}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rewardtrain.engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build-tiny", help="build a tiny random Qwen2.5-VL reward model folder")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_build_tiny)
    p = sub.add_parser("train", help="train a reward model")
    p.add_argument("--config", help="JSON file with RewardTrainConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (JSON value)")
    p.add_argument("--stop-file", help="cancel (with a resumable checkpoint) when this file appears")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a trained model on a snapshot split")
    p.add_argument("--model", required=True)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("score", help="score pairs listed in a JSONL file")
    p.add_argument("--model", required=True)
    p.add_argument("--pairs", required=True, help="JSONL: first, second (paths relative to the file), task, criterion, prompt")
    p.add_argument("--out", help="output JSONL (default stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError, json.JSONDecodeError) as exc:
        # Bad input: one line, no traceback (exit status 2, like argparse usage errors).
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from enginekit.cli import exit_process

    exit_process(main())
