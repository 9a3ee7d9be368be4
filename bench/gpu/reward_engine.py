"""GPU benchmark: the product's reward trainer (`rewardtrain.engine.train.train`) at Qwen2.5-VL-7B size.

A random-init Qwen2.5-VL with the 7B sizes is written with `save_pretrained` (plus the engine's
processor) and a synthetic snapshot through `contracts.snapshot`; then `train(RewardTrainConfig)`
runs, in bf16 (fp32 master weights, as the engine does), for:
- `lora`: LoRA r=16 on the default targets, one process (DDP when started under torchrun);
- `full`: full fine-tune, `parallelism="fsdp"` (FSDP2 over the processes torchrun starts; on one
  GPU the engine runs it unsharded, and an out-of-memory is reported as OOM, not hidden).
Step time is the median gap between the engine's per-step progress events after one warm-up step;
`final/` is written as a real run writes it (bf16 copy, `final_dtype`), outside the timed steps.

    python bench/gpu/reward_engine.py --case lora                      # one GPU
    torchrun --nproc_per_node=8 bench/gpu/reward_engine.py --case full  # FSDP2 over 8 GPUs
    python bench/gpu/reward_engine.py --dry-run                        # tiny sizes on CPU, both cases
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_bench as eb  # noqa: E402
import torch  # noqa: E402


def make_snapshot(root: Path, n_pairs: int, size: int) -> Path:
    """Synthetic snapshot (fill / structure pairs of `size`² images) through contracts.snapshot."""
    from PIL import Image

    from contracts.snapshot import write_manifest, write_pairs

    rng = random.Random(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_pairs):
        names = []
        for bright in (True, False):
            value = rng.randint(180, 255) if bright else rng.randint(0, 100)
            img = Image.new("RGB", (size, size), (rng.randint(40, 215),) * 3)
            img.paste((value,) * 3, (size // 4, size // 4, size - size // 4, size - size // 4))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            name = f"images/{hashlib.sha256(buf.getvalue()).hexdigest()}.png"
            (root / name).write_bytes(buf.getvalue())
            names.append(name)
        rows.append({"pair_id": f"p{i}", "split": "train", "task": "fill", "criterion": "structure", "prompt": "",
                     "winner": names[0], "loser": names[1], "sample_id": str(i), "votes": 1, "agreement": 1.0})
    write_pairs(root, rows)
    write_manifest(root, {"content_hash": "gpu-bench", "human_ceiling": {}})
    return root


def prepare(work: Path, real: bool, image_size: int, pairs: int) -> dict:
    """Model folder + snapshot under `work` (rank 0 writes, other ranks wait for `ready.json`)."""
    marker = work / "ready.json"
    if eb.is_main() and not marker.exists():
        device = torch.device("cuda" if real else "cpu")
        dtype = torch.bfloat16 if real else torch.float32
        max_pixels = 512 * 28 * 28 if real else 112 * 112
        params = eb.save_reward_base(work / "model", real, device, dtype, 28 * 28, max_pixels)
        make_snapshot(work / "snapshot", pairs, image_size)
        marker.write_text(json.dumps({"params": params, "max_pixels": max_pixels}))
    eb.wait_for(marker)
    return json.loads(marker.read_text())


def tokens_per_sequence(model_dir: Path, image_size: int, max_pixels: int) -> tuple[int, int]:
    """(LM tokens, vision patches) of one training sequence: two images + the fill/structure query."""
    from transformers import AutoTokenizer

    from rewardtrain.engine.template import build_query

    side = image_size
    while side * side > max_pixels:  # the processor shrinks to the pixel budget in 28 px steps
        side -= 28
    merged = (side // 28) ** 2
    text = len(AutoTokenizer.from_pretrained(model_dir)(build_query("fill", "structure", ""))["input_ids"])
    return 2 * (merged + 2) + text + 16, 2 * merged * 4  # +16: chat wrapper and answer tokens


def run_case(case: str, work: Path, meta: dict, args) -> dict:
    from rewardtrain.engine.config import RewardTrainConfig
    from rewardtrain.engine.train import train

    out = work / f"run-{case}"
    shutil.rmtree(out, ignore_errors=True)
    full = case == "full"
    cfg = RewardTrainConfig(
        base_model=str(work / "model"), snapshot_dir=str(work / "snapshot"), output_dir=str(out),
        lora=not full, full_finetune=full, lr=1e-6 if full else 1e-4, batch_size=args.pairs,
        max_steps=args.steps + 1, save_every=0, eval_every=0, log_every=1, dtype="bfloat16" if not args.dry_run
        else "float32", device="cpu" if args.dry_run else "cuda", parallelism="fsdp" if full else "ddp",
        max_pixels=meta["max_pixels"], final_dtype=None if args.dry_run else "bfloat16", select_best=False,
    )
    timer = eb.StepTimer()
    eb.reset_peak()
    try:
        result = train(cfg, progress=timer)
    except torch.OutOfMemoryError as exc:
        return {"case": f"reward {case}", "status": "OOM", "note": str(exc).splitlines()[0][:100]}
    finally:
        eb.free_device()
    step_s = timer.step_s()
    lm_params, vision_params = eb.reward_flop_counts(work / "model")
    lm_tokens, patches = tokens_per_sequence(work / "model", args.image_size, meta["max_pixels"])
    sequences = 2 * args.pairs  # every pair in both orders
    forward = 2 * sequences * (lm_params * lm_tokens + vision_params * patches)
    # Backward: activation gradients (~1x forward) always; weight gradients (~1x) only when every weight trains.
    flops = forward * (3 if full else 2)
    return {"case": f"reward {case}", "status": "ok", "step_s": step_s, "flops": flops, "peak_gib": eb.peak_gib(),
            "throughput": f"{sequences * lm_tokens / step_s:,.0f} tokens/s", "trainable": result.get("trainable_params"),
            "sequence_tokens": lm_tokens}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU, a few seconds")
    parser.add_argument("--case", choices=["lora", "full", "all"], default="all")
    parser.add_argument("--pairs", type=int, default=16, help="global batch in pairs (paper: 16)")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (one more runs first as warm-up)")
    parser.add_argument("--work", default=None, help="folder for the model, snapshot and runs (default: a temp dir)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.pairs, args.image_size, args.steps = 2, 56, 1
    elif not torch.cuda.is_available():
        parser.error("no CUDA device; use --dry-run on a CPU machine")
    with eb.work_folder(args.work, "reward-engine-bench-") as work:
        meta = prepare(work, not args.dry_run, args.image_size, max(4 * args.pairs, 8))
        cases = ["lora", "full"] if args.case == "all" else [args.case]
        rows = [run_case(c, work, meta, args) for c in cases]
        for c in cases:  # a 7B run folder is 16+ GB: keep the disk for the next case
            shutil.rmtree(work / f"run-{c}", ignore_errors=True)
    peak, name = eb.peak_tflops(args.peak_tflops)
    if eb.is_main():
        size = "tiny (dry run)" if args.dry_run else "Qwen2.5-VL-7B size"
        eb.print_table(f"rewardtrain.engine.train.train, {size}, {meta['params'] / 1e9:.3f} B params, "
                       f"{args.pairs} pairs/step ({2 * args.pairs} sequences, {args.image_size} px images), "
                       f"{'float32' if args.dry_run else 'bf16 compute, fp32 masters'}, gradient checkpointing, "
                       f"{eb.world_size()} process(es)", rows, peak, name)
        print(eb.result_line(rows))
    return {"params": meta["params"], "rows": rows}


if __name__ == "__main__":
    main()
