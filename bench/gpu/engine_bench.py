"""Shared pieces of the engine GPU benchmarks (`reward_engine.py`, `rl_engine.py`).

Both benchmarks run the product's own entry points (`rewardtrain.engine.train.train`,
`policytrain.engine.rl.train`) on model folders written with `save_pretrained` and read back by
the engines' own loaders, so the numbers describe what a real run does. This module only builds
those folders (random init from configs in code, nothing downloaded), times the engine through its
`progress` callback and prints the table. Nothing here reimplements a training step.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

#: Dense bf16 peak FLOP/s per GPU used for the MFU estimate (vendor figures, no sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "B200": 2250.0}
#: Peak assumed where the device name matches nothing above (and on the CPU dry run).
DEFAULT_PEAK_TFLOPS = 989.0

#: Qwen2.5-VL-7B sizes (its published config.json), applied over the tiny test config's structure.
QWEN25VL_7B_TEXT = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4}
QWEN25VL_7B_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31]}
#: FLUX.1-Fill-dev transformer and VAE sizes (diffusers config classes' arguments).
FLUX_FILL_TRANSFORMER = {"num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
                         "num_attention_heads": 24, "text_dim": 4096, "pooled_dim": 768, "axes_dims_rope": (16, 56, 56)}
FLUX_VAE_CHANNELS = (128, 256, 512, 512)


def peak_tflops(override: float | None = None) -> tuple[float, str]:
    """(peak bf16 TFLOP/s per device, device name) for the MFU column."""
    if override:
        return override, "given"
    if not torch.cuda.is_available():
        return DEFAULT_PEAK_TFLOPS, "cpu (dry run; peak of an H100/H200 assumed)"
    name = torch.cuda.get_device_name(0)
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value, name
    return DEFAULT_PEAK_TFLOPS, name


@contextmanager
def work_folder(path: str | None, prefix: str) -> Iterator[Path]:
    """The benchmark's work folder: ``path`` (kept) or a temporary one (removed by rank 0 at the end)."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    temp = tempfile.TemporaryDirectory(prefix=prefix)
    try:
        yield Path(temp.name)
    finally:
        if is_main():
            temp.cleanup()


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wait_for(marker: Path, timeout_s: float = 1800.0) -> None:
    """Ranks other than 0 wait until rank 0 has written the model folders (torchrun)."""
    deadline = time.time() + timeout_s
    while not marker.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{marker} did not appear")
        time.sleep(1.0)


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    """`torch.cuda.max_memory_allocated` in GiB since `reset_peak` (nan on CPU)."""
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def free_device() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class StepTimer:
    """`progress` callback for the engines: the time of every ``kind == "train"`` event."""

    def __init__(self) -> None:
        self.stamps: list[float] = [time.perf_counter()]

    def __call__(self, event: dict) -> None:
        if event.get("kind") == "train":
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())

    def step_s(self, warmup: int = 1) -> float:
        """Median seconds per step after ``warmup`` steps (all steps when there are too few)."""
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        timed = gaps[warmup:] or gaps
        return sorted(timed)[len(timed) // 2] if timed else float("nan")


def reward_config(real: bool):
    """(tokenizer, Qwen2_5_VLConfig): the engine's tiny test config, at Qwen2.5-VL-7B sizes when ``real``."""
    from rewardtrain.engine.tiny import build_tiny_tokenizer, tiny_model_config

    tokenizer = build_tiny_tokenizer(0)
    config = tiny_model_config(tokenizer)
    if real:
        text, vision = config.text_config, config.vision_config
        for key, value in QWEN25VL_7B_TEXT.items():
            setattr(text, key, value)
        text.rope_parameters = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
        text.layer_types = ["full_attention"] * text.num_hidden_layers
        text.max_position_embeddings = 128000
        for key, value in QWEN25VL_7B_VISION.items():
            setattr(vision, key, value)
    return tokenizer, config


def save_reward_base(out: Path, real: bool, device: torch.device, dtype: torch.dtype,
                     min_pixels: int, max_pixels: int) -> int:
    """Write a random-init Qwen2.5-VL folder (7B sizes unless tiny) the way a real checkpoint is laid
    out: `save_pretrained` weights + config, and the engine's processor (`save_processor`).

    The tokenizer is the engine's locally trained test tokenizer (`rewardtrain.engine.tiny`); its
    ids fit inside the real vocabulary, so the 7B embedding and lm_head have their real shapes.
    Returns the parameter count.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rewardtrain.engine.processor import ImageOnlyQwen2_5_VLProcessor, save_processor
    from rewardtrain.engine.tiny import CHAT_TEMPLATE

    tokenizer, config = reward_config(real)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in bf16 on the device: no 33 GB fp32 host copy
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    params = sum(p.numel() for p in model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    del model
    free_device()
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    save_processor(processor, out)
    return params


def reward_flop_counts(model_dir: Path) -> tuple[int, int]:
    """(language-model matmul params without embeddings, vision-tower params), counted on the meta device."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    lm = vision = 0
    for name, p in model.named_parameters():
        if "visual" in name:
            vision += p.numel()
        elif "embed_tokens" not in name and "lm_head" not in name:
            lm += p.numel()
    return lm, vision


def print_table(title: str, rows: list[dict], peak: float, peak_name: str) -> None:
    """The benchmark table: case, status, step time, throughput, MFU, peak memory."""
    print(title)
    print(f"MFU = model FLOPs per step (no recompute) / (step time x {world_size()} device(s) x {peak:g} TFLOP/s, "
          f"{peak_name})")
    print(f"{'case':<30}{'status':<16}{'s/step':>9}{'throughput':>22}{'MFU %':>8}{'peak GiB':>10}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['case']:<30}{r['status']:<16}  {r.get('note', '')}")
            continue
        mfu = 100 * r["flops"] / (r["step_s"] * world_size() * peak * 1e12)
        r["mfu_pct"] = mfu
        print(f"{r['case']:<30}{'ok':<16}{r['step_s']:>9.3f}{r['throughput']:>22}{mfu:>8.1f}{r['peak_gib']:>10.2f}")


def result_line(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if r["status"] == "ok":
            parts.append(f"{r['case']}: {r['step_s']:.2f} s/step, {r['throughput']}, MFU {r.get('mfu_pct', 0):.1f} %, "
                         f"{r['peak_gib']:.1f} GiB")
        else:
            parts.append(f"{r['case']}: {r['status']}")
    return "result: " + " | ".join(parts)
