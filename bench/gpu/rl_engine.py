"""GPU benchmark: the product's RL step (`policytrain.engine.rl.train`) at FLUX.1-Fill 12B size.

Writes, with `save_pretrained`, a random-init FluxFillPipeline folder with the FLUX.1-Fill-dev
transformer (12 B) and VAE at real size, and a random-init Qwen2.5-VL-7B-size reward model folder
with a reward card (`contracts.cards.write_reward_card`), plus a conditions folder through
`contracts.conditions`. Then `train(RLConfig)` loads them the way a real run does (bf16 on CUDA,
reward model frozen, bf16 and checkpointed, prompt embeddings cached on disk and text encoders
freed) and runs Algorithm 1 on the fill task. The text encoders keep the real output widths (T5
4096, CLIP 768) with one layer each: they only encode prompts once before RL and are freed.

Cases: `lora-512`, `lora-1024` (LoRA, the default, one process), `full` (full fine-tune with
`parallelism: "fsdp"`, the FLUX blocks sharded over every rank torchrun starts; when the engine's
own per-rank memory plan does not fit the device, the case reports how many ranks it needs instead
of running out of memory; never faked). Step time is the median gap between the engine's per-step
progress events after one warm-up step.

    python bench/gpu/rl_engine.py --case lora-512                                  # one GPU
    torchrun --standalone --nproc-per-node 8 bench/gpu/rl_engine.py --case full   # 8 GPUs, FSDP2
    python bench/gpu/rl_engine.py --dry-run      # tiny sizes on CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parent), str(HERE.parents[1])]  # repo, bench/gpu, bench

import engine_bench as eb  # noqa: E402
import torch  # noqa: E402
from policy_rl import write_conditions  # noqa: E402  bench/policy_rl.py: fill conditions via contracts.conditions


def save_policy_base(out: Path, device: torch.device, dtype: torch.dtype) -> None:
    """Random-init FLUX.1-Fill-dev-size FluxFillPipeline folder in the hub layout."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from policytrain.engine.tiny import _clip_tokenizer, _t5_tokenizer, tiny_transformer

    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()
    vocab = tokenizer.get_vocab()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # bf16 on the device: a fp32 12B init would need 48 GB
    try:
        torch.manual_seed(0)
        with torch.device(device):
            transformer = tiny_transformer(**eb.FLUX_FILL_TRANSFORMER)
            vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=eb.FLUX_VAE_CHANNELS,
                                layers_per_block=2, latent_channels=16, norm_num_groups=32, use_quant_conv=False,
                                use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
            clip = CLIPTextModel(CLIPTextConfig(
                vocab_size=len(tokenizer), hidden_size=768, intermediate_size=1024, num_hidden_layers=1,
                num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"]))
            t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=4096, d_kv=64, d_ff=1024, num_layers=1,
                                         num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    FluxFillPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tokenizer, text_encoder_2=t5,
                     tokenizer_2=tokenizer_2, transformer=transformer).save_pretrained(out)
    del transformer, vae, clip, t5
    eb.free_device()


def prepare(work: Path, real: bool, sizes: tuple[int, ...]) -> None:
    """Policy and reward-model folders under `work` (built once, reused by every case)."""
    from contracts.cards import write_reward_card
    from policytrain.engine.tiny import build_tiny_fill_pipeline
    from rewardtrain.engine.template import TEMPLATE_VERSION
    from rewardtrain.engine.tiny import build_tiny_reward_model

    marker = work / "ready.json"
    if not eb.is_main() or marker.exists():  # under torchrun rank 0 writes, the others wait
        eb.wait_for(marker)
        return
    if real:
        save_policy_base(work / "policy", torch.device("cuda"), torch.bfloat16)
        eb.save_reward_base(work / "reward", True, torch.device("cuda"), torch.bfloat16, 28 * 28, 512 * 28 * 28)
    else:
        build_tiny_fill_pipeline(work / "policy")
        build_tiny_reward_model(work / "reward")
    # What the reward trainer writes beside a trained model: without it RL refuses the folder.
    write_reward_card(work / "reward", {"template_version": TEMPLATE_VERSION, "trained_on": {"fill": ["structure"]},
                                        "min_pixels": 28 * 28, "max_pixels": 512 * 28 * 28 if real else 112 * 112})
    for resolution in sizes:
        write_conditions(work / f"conditions-{resolution}", resolution)
    marker.write_text(json.dumps({"real": real}))


def rl_config(work: Path, resolution: int, args, full: bool = False):
    from policytrain.engine.config import RLConfig

    # Under "fsdp" the batch is the global one, split over the ranks: each device gets args.batch.
    batch = args.batch * eb.world_size() if full else args.batch
    return RLConfig(
        base_policy=str(work / "policy"), reward_model=str(work / "reward"),
        conditions_dir=str(work / f"conditions-{resolution}"), output_dir=str(work / f"run-{resolution}"),
        algorithm=1, task_probs={"fill": 1.0}, resolution=resolution, batch_size=batch, max_steps=args.steps + 1,
        reference_steps=args.sampler_steps, policy_steps=args.sampler_steps, lora_rank=args.lora_rank,
        lora_alpha=float(args.lora_rank), full_finetune=full, parallelism="fsdp" if full else "ddp", save_every=0, sample_grid_every=0, log_every=1,
        eval_every=0, eval_split=None, device="cpu" if args.dry_run else "cuda",
        max_sequence_length=32 if args.dry_run else 512,
    )


def step_flops(plan: dict, config, resolution: int) -> float:
    """Model FLOPs of one RL step (no recompute), from the engine's memory plan's parameter counts.

    Transformer: 2·N·tokens per denoising forward; reference_steps + k (mean of t_range) no-grad
    forwards and one grad-enabled step (forward + backward ≈ 3 forwards). Reward model: one
    forward and a backward to the pixels (≈ 2 forwards), two images per query. The VAE is left out.
    """
    by_name = {c["name"]: c["params"] for c in plan["components"]}
    tokens = (resolution // 16) ** 2 + config.max_sequence_length
    k = sum(config.t_range) / 2 * config.policy_steps
    transformer = 2 * by_name["policy transformer"] * tokens * (config.reference_steps + k + 3)
    pixels = min(resolution * resolution, 512 * 28 * 28)
    reward = 2 * by_name.get("reward model", 0) * (2 * pixels // 784 + 80) * 3
    return config.batch_size * (transformer + reward)


def ranks_needed(config, device_gib: float) -> int | None:
    """The fewest ranks whose per-rank memory plan fits ``device_gib`` (sharding divides the policy's state)."""
    from policytrain.engine.memory import memory_plan

    for ranks in (1, 2, 4, 8, 16, 32, 64):
        if memory_plan(config, use_bf16=True, criteria_per_task=1, world_size=ranks)["peak_gib"] <= device_gib:
            return ranks
    return None


def run_case(case: str, work: Path, args) -> dict:
    from policytrain.engine.memory import memory_plan
    from policytrain.engine.rl import train

    full = case == "full"
    resolution = args.sizes[0] if full else int(case.split("-")[1])
    config = rl_config(work, resolution, args, full)
    world = eb.world_size()
    name = f"rl {case} @{resolution}" + (f" x{world} ranks" if full else "")
    plan = memory_plan(config, use_bf16=not args.dry_run, criteria_per_task=1, world_size=world if full else 1)
    if not args.dry_run:
        device_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        if plan["peak_gib"] > device_gib:
            need = ranks_needed(config, device_gib)
            return {"case": name, "status": f"needs {need} ranks" if need else "does not fit 64 ranks",
                    "note": f"the engine's memory plan is {plan['peak_gib']:.0f} GiB per rank on {world} rank(s), the "
                            f"device has {device_gib:.0f} GiB"}
    if eb.is_main():
        shutil.rmtree(config.output_dir, ignore_errors=True)
    timer = eb.StepTimer()
    eb.reset_peak()
    try:
        train(config, progress=timer)
    except torch.OutOfMemoryError as exc:
        return {"case": name, "status": "OOM", "note": str(exc).splitlines()[0][:100]}
    finally:
        eb.free_device()
        if eb.is_main():
            shutil.rmtree(config.output_dir, ignore_errors=True)
    step_s = timer.step_s()
    return {"case": name, "status": "ok", "step_s": step_s, "flops": step_flops(plan, config, resolution),
            "peak_gib": eb.peak_gib(), "plan_gib": plan["peak_gib"],
            "throughput": f"{config.batch_size / step_s:.3f} images/s"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models on CPU, a few seconds")
    parser.add_argument("--case", choices=["lora-512", "lora-1024", "full", "all"], default="all")
    parser.add_argument("--batch", type=int, default=1, help="images per RL step per device")
    parser.add_argument("--steps", type=int, default=2, help="timed steps (one more runs first as warm-up)")
    parser.add_argument("--sampler-steps", type=int, default=28, help="reference and policy sampler steps")
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--work", default=None, help="folder for the models, conditions and runs (default: temp dir)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)
    args.sizes = (512, 1024)
    if args.dry_run:
        args.steps, args.sampler_steps, args.lora_rank, args.sizes = 1, 2, 4, (64, 128)
    elif not torch.cuda.is_available():
        parser.error("no CUDA device; use --dry-run on a CPU machine")
    if eb.world_size() > 1 and args.case != "full":
        parser.error("under torchrun only --case full runs (the LoRA cases are one-process benchmarks)")
    cases = ["lora-512", "lora-1024", "full"] if args.case == "all" else [args.case]
    if args.dry_run:  # same code, tiny resolutions
        cases = [c.replace("512", str(args.sizes[0])).replace("1024", str(args.sizes[1])) for c in cases]
    with eb.work_folder(args.work, "rl-engine-bench-") as work:
        prepare(work, not args.dry_run, args.sizes)
        rows = [run_case(c, work, args) for c in cases]
    if not eb.is_main():
        return {"rows": rows}
    peak, name = eb.peak_tflops(args.peak_tflops)
    size = "tiny (dry run)" if args.dry_run else "FLUX.1-Fill 12B size + Qwen2.5-VL-7B-size reward model"
    eb.print_table(f"policytrain.engine.rl.train, Algorithm 1, {size}, LoRA r={args.lora_rank}, batch {args.batch}, "
                   f"{args.sampler_steps} reference / policy steps, {'float32' if args.dry_run else 'bf16'}, "
                   f"gradient checkpointing", rows, peak, name)
    for r in rows:
        if "plan_gib" in r:
            print(f"{r['case']}: engine memory plan {r['plan_gib']:.1f} GiB, measured peak {r['peak_gib']:.1f} GiB")
    print(eb.result_line(rows))
    return {"rows": rows}


if __name__ == "__main__":
    main()
