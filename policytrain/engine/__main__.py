"""CLI: ``python -m policytrain.engine build-tiny OUT | train --config JSON [--set k=v] | generate ...``.

Bad input (missing file, invalid config value, non-Fill model) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from enginekit.cli import parse_override


def _bar(total: int | None = None):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def progress(event: dict) -> None:
        bar.total = event.get("total_steps", bar.total)
        bar.n = event["step"]
        shown = {k: round(v, 4) for k, v in event.items() if k in ("loss", "grad_norm") and isinstance(v, float)}
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    return bar, progress


def _cmd_build_tiny(args) -> int:
    from .tiny import build_tiny_fill_pipeline

    print(build_tiny_fill_pipeline(args.out, seed=args.seed))
    return 0


def _cmd_train(args) -> int:
    import os

    from .config import RLConfig
    from .rl import RunCancelled, train

    path = Path(args.config)
    if not path.is_file():
        raise ValueError(f"config file {path} not found")
    data = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}  # "_comment": notes
    for item in args.set or []:
        key, value = parse_override(item)
        data[key] = value
    config = RLConfig.from_dict(data)
    quiet = args.quiet or int(os.environ.get("RANK", "0")) != 0
    bar, progress = (None, None) if quiet else _bar(config.max_steps)
    stop_file = Path(args.stop_file) if args.stop_file else None
    try:
        result = train(config, progress=progress, should_stop=(lambda: stop_file.exists()) if stop_file else None)
    except RunCancelled as exc:
        print(str(exc), file=sys.stderr)
        return 3  # stopped on request, with a resumable checkpoint
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps({k: result[k] for k in ("status", "steps", "final_dir")}))
    return 0


def _cmd_generate(args) -> int:
    from .config import GenerateConfig
    from .generate import generate_candidates

    config = GenerateConfig(
        conditions_dir=args.conditions,
        out_dir=args.out,
        base_policy=args.base,
        weights=args.weights,
        seeds=tuple(args.seeds),
        num_inference_steps=args.steps,
        guidance=args.guidance,
        true_cfg=args.true_cfg,
        negative_prompt=args.negative_prompt,
        max_sequence_length=args.max_sequence_length,
        split=args.split,
    )
    bar, progress = _bar()
    try:
        summary = generate_candidates(config, progress=progress)
    finally:
        bar.close()
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m policytrain.engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build-tiny", help="build a tiny random FLUX.1-Fill-architecture pipeline folder")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_build_tiny)
    p = sub.add_parser("train", help="run OneReward RL")
    p.add_argument("--config", required=True, help="RLConfig as JSON")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--stop-file", help="stop (with a resumable checkpoint, exit 3) when this file appears")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("generate", help="fill a conditions folder with a policy")
    p.add_argument("--conditions", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=None, help="base FLUX.1-Fill folder or hub id (default: from policy.json)")
    p.add_argument("--weights", default=None, help="a run's final/ or checkpoints/step-N/ folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--guidance", type=float, default=30.0)
    p.add_argument("--true-cfg", type=float, default=1.0)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--max-sequence-length", type=int, default=512)
    p.add_argument("--split", default=None)
    p.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from enginekit.cli import exit_process

    exit_process(main())
