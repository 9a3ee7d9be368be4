"""GPU benchmark: reward-model training step time and peak memory at real Qwen2.5-VL-7B size.

Builds a RANDOM-INIT model with the Qwen2.5-VL-7B configuration (its published sizes, written out
here; nothing is downloaded) in bf16 on one CUDA device, then times optimizer steps of the
OneReward loss for:
- LoRA (peft, our default targets incl. vision qkv/proj and lm_head, r=16) with AdamW, and
- full fine-tune with a memory-light optimizer: by default torch AdamW directly on the bf16
  weights (bf16 moments, no fp32 master copy: 2 + 2 + 4 bytes/param ~ 66 GiB for 8.3 B params);
  `--full-optimizer adafactor` uses transformers' Adafactor (factored second moments, no first
  moment) instead.
Both use gradient checkpointing and a global batch of 16 pairs = 32 sequences (both orders), each
with two images. Out-of-memory is caught and reported as OOM. Target: < 10 min on one H200.

    python bench/gpu/reward_7b.py                 # on a GPU machine
    python bench/gpu/reward_7b.py --dry-run       # tiny sizes on CPU (checks the script itself)
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Token ids of the real Qwen2.5-VL tokenizer (config.json of Qwen/Qwen2.5-VL-7B-Instruct).
REAL_IDS = {"image": 151655, "video": 151656, "vision_start": 151652, "vision_end": 151653, "yes": 9454, "no": 2753}


def qwen25vl_config(dry_run: bool):
    """The Qwen2.5-VL-7B config (or a tiny one with the same structure for --dry-run)."""
    from transformers import Qwen2_5_VLConfig

    if dry_run:
        text = {"vocab_size": 160000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 2, 2]}}
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                  "fullatt_block_indexes": [1]}
    else:
        text = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
                "rms_norm_eps": 1e-6,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}}
        vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                  "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31]}
    vision.update({"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112})
    text["tie_word_embeddings"] = False
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False,
        image_token_id=REAL_IDS["image"], video_token_id=REAL_IDS["video"],
        vision_start_token_id=REAL_IDS["vision_start"], vision_end_token_id=REAL_IDS["vision_end"],
    )


def synthetic_batch(sequences: int, image_size: int, text_tokens: int, device, dtype) -> dict:
    """Inputs shaped like the processor's output: [text, <vs> image1 <ve>, <vs> image2 <ve>, text]."""
    grid = image_size // 14
    per_image = (grid // 2) ** 2
    gen = torch.Generator().manual_seed(0)
    rows, types = [], []
    for _ in range(sequences):
        ids, tt = [], []
        for _img in range(2):
            ids += [REAL_IDS["vision_start"]] + [REAL_IDS["image"]] * per_image + [REAL_IDS["vision_end"]]
            tt += [0] + [1] * per_image + [0]
        ids += torch.randint(1000, 100000, (text_tokens,), generator=gen).tolist()
        tt += [0] * text_tokens
        rows.append(ids)
        types.append(tt)
    input_ids = torch.tensor(rows)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "mm_token_type_ids": torch.tensor(types).to(device),
        "pixel_values": torch.randn(sequences * 2 * grid * grid, 3 * 2 * 14 * 14, generator=gen).to(device, dtype),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * (sequences * 2)).to(device),
    }


def time_steps(model, optimizer, batch, labels, steps: int, device) -> tuple[float, float]:
    """Median seconds per optimizer step (after one warm-up step) and peak GiB allocated."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        logits = model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1].float()
        loss = F.binary_cross_entropy_with_logits(logits[:, REAL_IDS["yes"]] - logits[:, REAL_IDS["no"]], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


def run_mode(name: str, build, batch, labels, steps, device) -> dict:
    try:
        model, optimizer, trainable = build()
        step_s, peak = time_steps(model, optimizer, batch, labels, steps, device)
        return {"mode": name, "status": "ok", "step_s": step_s, "peak_gib": peak, "trainable": trainable}
    except torch.OutOfMemoryError as exc:
        return {"mode": name, "status": "OOM", "error": str(exc).splitlines()[0]}
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU, 1 timed step")
    parser.add_argument("--pairs", type=int, default=16, help="global batch in pairs (x2 orders)")
    parser.add_argument("--image-size", type=int, default=448, help="square image side (multiple of 28)")
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--full-optimizer", choices=["adamw_bf16", "adafactor"], default="adamw_bf16")
    parser.add_argument("--modes", default="lora,full")
    args = parser.parse_args(argv)
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rewardtrain.engine.config import DEFAULT_LORA_TARGETS

    if args.dry_run:
        device, dtype = torch.device("cpu"), torch.float32
        args.pairs, args.image_size, args.steps, args.text_tokens = 1, 56, 1, 8
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device; use --dry-run on CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
    config = qwen25vl_config(args.dry_run)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with device:  # initialise directly on the device: no 16 GiB host copy
        model = Qwen2_5_VLForConditionalGeneration(config)
    torch.set_default_dtype(previous)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    sequences = 2 * args.pairs
    batch = synthetic_batch(sequences, args.image_size, args.text_tokens, device, dtype)
    labels = torch.tensor([1.0] * args.pairs + [0.0] * args.pairs, device=device)
    results = []
    holder: dict = {}

    def build_lora():
        model.requires_grad_(False)
        peft_model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r,
                                                      target_modules=DEFAULT_LORA_TARGETS))
        holder["peft"] = peft_model
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        return peft_model, torch.optim.AdamW(trainable, lr=1e-4), sum(p.numel() for p in trainable)

    def build_full():
        model.requires_grad_(True)
        if args.full_optimizer == "adafactor":
            from transformers.optimization import Adafactor

            opt = Adafactor(model.parameters(), lr=1e-6, relative_step=False, scale_parameter=False)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-6)  # states follow the bf16 weights
        return model, opt, params

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "lora" in modes:
        results.append(run_mode("lora", build_lora, batch, labels, args.steps, device))
        if "peft" in holder:
            model = holder.pop("peft").unload()  # drop adapters, back to the plain model
    if "full" in modes:
        results.append(run_mode(f"full ({args.full_optimizer})", build_full, batch, labels, args.steps, device))

    tokens = batch["input_ids"].shape[1]
    print(f"Qwen2.5-VL {'tiny (dry run)' if args.dry_run else '7B-size'} random init: {params / 1e9:.3f} B params, "
          f"{dtype}, built in {build_s:.1f} s; batch {args.pairs} pairs = {sequences} sequences x {tokens} tokens "
          f"({args.image_size}px images), gradient checkpointing")
    print(f"{'mode':<22}{'status':>8}{'trainable':>16}{'step s':>10}{'peak GiB':>10}")
    for r in results:
        if r["status"] == "ok":
            print(f"{r['mode']:<22}{'ok':>8}{r['trainable']:>16,}{r['step_s']:>10.2f}{r['peak_gib']:>10.1f}")
        else:
            print(f"{r['mode']:<22}{r['status']:>8}  {r['error'][:80]}")
    summary = " | ".join(
        f"{r['mode']}: {r['step_s']:.2f} s/step, {r['peak_gib']:.1f} GiB" if r["status"] == "ok" else f"{r['mode']}: OOM"
        for r in results
    )
    print(f"result: {summary}")
    return {"params": params, "results": results}


if __name__ == "__main__":
    main()
