"""Benchmark: our reward-model training loop vs a plain hand-written loop, and scorer throughput.

Both loops train the same tiny Qwen2.5-VL (LoRA on the same modules) on the same synthetic pairs
with the same global batch, in this one process, alternating runs to even out machine noise.
Our loop adds what a product needs (sharding, logging, checkpoint bookkeeping, cancellation
polling); the target is ours/plain >= 0.9 in pairs per second.

    OMP_NUM_THREADS=1 python bench/reward_train.py [--steps 40] [--batch 8] [--size 56]

The last line is exactly `ratio: <ours/plain pairs per second>`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from contracts.snapshot import write_manifest, write_pairs  # noqa: E402


class PeakRSS:
    """Samples this process's resident memory in a thread; `.peak_mib` after the block."""

    def __enter__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def make_snapshot(root: Path, n_pairs: int, size: int, seed: int = 0) -> Path:
    """Synthetic snapshot: the winner is brighter inside the central mask."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_pairs):
        bg = rng.randint(40, 215)
        imgs = []
        for value in (rng.randint(180, 255), rng.randint(0, 100)):
            img = Image.new("L", (size, size), bg)
            img.paste(value, (size // 4, size // 4, size - size // 4, size - size // 4))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            name = hashlib.sha256(buf.getvalue()).hexdigest() + ".png"
            (root / "images" / name).write_bytes(buf.getvalue())
            imgs.append(f"images/{name}")
        rows.append({"pair_id": f"p{i}", "split": "train", "task": "fill", "criterion": "structure", "prompt": "",
                     "winner": imgs[0], "loser": imgs[1], "sample_id": str(i), "votes": 1, "agreement": 1.0})
    write_pairs(root, rows)
    write_manifest(root, {"content_hash": "bench", "human_ceiling": {}})
    return root


def plain_loop(config, steps: int) -> tuple[float, float]:
    """The reference: load, LoRA, then processor -> forward -> BCE on Yes/No -> AdamW, nothing else."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from rewardtrain.engine.data import load_training_pairs
    from rewardtrain.engine.processor import load_processor
    from rewardtrain.engine.template import build_messages

    torch.manual_seed(config.seed)
    processor = load_processor(config.base_model, config.min_pixels, config.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(config.base_model)
    model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                             target_modules=config.lora_target_modules))
    model.train()
    yes = processor.tokenizer.convert_tokens_to_ids("Yes")
    no = processor.tokenizer.convert_tokens_to_ids("No")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    rows = load_training_pairs(config.snapshot_dir)
    text = processor.apply_chat_template(build_messages("fill", "structure"), add_generation_prompt=True, tokenize=False)
    b = config.batch_size
    with PeakRSS() as mem:
        start = time.perf_counter()
        for step in range(steps):
            chunk = [rows[(step * b + i) % len(rows)] for i in range(b)]
            images = []
            for first, second in [(r.winner, r.loser) for r in chunk] + [(r.loser, r.winner) for r in chunk]:
                images += [Image.open(first).convert("RGB"), Image.open(second).convert("RGB")]
            batch = processor(text=[text] * (2 * b), images=images, padding=True, return_tensors="pt")
            labels = torch.tensor([1.0] * b + [0.0] * b)
            logits = model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, yes] - logits[:, no], labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
        seconds = time.perf_counter() - start
    return steps * b / seconds, mem.peak_mib


def ours(config, steps: int, out: Path) -> tuple[float, float, dict]:
    from rewardtrain.engine.train import train

    cfg = config.replace(output_dir=str(out), max_steps=steps, log_every=10, save_every=0)
    with PeakRSS() as mem:
        result = train(cfg)
    return result["pairs_per_s"], mem.peak_mib, result


def scoring(model_dir: Path, snapshot: Path, n: int) -> tuple[float, float]:
    from rewardtrain.engine.data import read_pairs
    from rewardtrain.engine.scorer import RewardScorer, ScoreRequest

    scorer = RewardScorer.from_pretrained(model_dir)
    rows = read_pairs(snapshot)[:n]
    reqs = [ScoreRequest(r.winner, r.loser, r.task, r.criterion, r.prompt) for r in rows]
    scorer.score(reqs[:4], batch_size=4)  # warm-up
    t0 = time.perf_counter()
    scorer.score(reqs, batch_size=16)
    batched = len(reqs) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for r in reqs:
        scorer.score([r], batch_size=1)
    single = len(reqs) / (time.perf_counter() - t0)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from rewardtrain.engine.config import RewardTrainConfig
    from rewardtrain.engine.tiny import build_tiny_reward_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_reward_model(tmp / "model")
        snapshot = make_snapshot(tmp / "snap", n_pairs=64, size=args.size)
        config = RewardTrainConfig(
            base_model=str(model_dir), snapshot_dir=str(snapshot), output_dir=str(tmp / "run"),
            lora_r=8, lora_alpha=16, lora_dropout=0.0, lr=3e-3, batch_size=args.batch,
            min_pixels=28 * 28, max_pixels=args.size * args.size, gradient_checkpointing=False, device="cpu",
        )
        plain_runs, our_runs = [], []
        result = None
        for r in range(args.rounds):  # alternate to spread machine noise over both loops
            plain_runs.append(plain_loop(config, args.steps))
            *run, result = ours(config, args.steps, tmp / f"ours{r}")
            our_runs.append(tuple(run))
        plain_pps, plain_mem = max(p[0] for p in plain_runs), max(p[1] for p in plain_runs)
        ours_pps, ours_mem = max(o[0] for o in our_runs), max(o[1] for o in our_runs)
        batched, single = scoring(Path(result["final_dir"]), snapshot, n=48)

    ratio = ours_pps / plain_pps
    print(f"tiny Qwen2.5-VL reward model, {args.size}px, global batch {args.batch} pairs (x2 orders), "
          f"{args.steps} steps x {args.rounds} rounds, {args.threads} thread(s)")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'plain loop pairs/s (best)':<34}{plain_pps:>12.1f}")
    print(f"{'our train() pairs/s (best)':<34}{ours_pps:>12.1f}")
    print(f"{'plain loop peak RSS MiB':<34}{plain_mem:>12.0f}")
    print(f"{'our train() peak RSS MiB':<34}{ours_mem:>12.0f}")
    print(f"{'score pairs/s batched (16)':<34}{batched:>12.1f}")
    print(f"{'score pairs/s one at a time':<34}{single:>12.1f}")
    print(f"{'batched / single':<34}{batched / single:>12.2f}")
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
