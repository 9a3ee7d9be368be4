"""GPU benchmark: one OneReward RL step at FLUX.1-Fill-dev scale with a Qwen2.5-VL-7B-size reward model.

Random-init weights (nothing is downloaded): FLUX.1-Fill transformer (19 double + 38 single blocks,
24 heads x 128, in 384 / out 64, joint 4096, pooled 768, guidance embeds) + real-size FLUX VAE + a
Qwen2.5-VL-7B-size reward model, all bf16; prompt embeddings are precomputed random tensors (no
T5/CLIP). LoRA r=64 on the transformer attention, gradient checkpointing on transformer, VAE and
reward model. Reports the step time (reference rollout / policy rollout + grad step / reward +
backward) and the peak memory at 512². ``--dry-run`` runs the same code with tiny sizes on the CPU.

    python bench/gpu/policy_flux.py            # H200, < 10 min
    python bench/gpu/policy_flux.py --dry-run  # CPU smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from policytrain.engine.onestep import one_step_images  # noqa: E402
from policytrain.engine.pipeline import FillPolicy, PromptEmbeds  # noqa: E402
from policytrain.engine.rl import ema_update  # noqa: E402


def build_policy(dry: bool, device: torch.device, dtype: torch.dtype) -> tuple[FillPolicy, int, int]:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxFillPipeline,
        FluxTransformer2DModel,
    )

    if dry:
        tr = dict(num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                  joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
        vae = dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8)
    else:
        tr = dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                  joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56))
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in bf16: a fp32 12B init would need 48 GB
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(patch_size=1, in_channels=384, out_channels=64, guidance_embeds=True, **tr)
            autoencoder = AutoencoderKL(
                in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, use_quant_conv=False,
                use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159, **vae,
            )
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxFillPipeline(scheduler=scheduler, vae=autoencoder, text_encoder=None, tokenizer=None,
                            text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    for m in (transformer, autoencoder):
        m.requires_grad_(False).eval()
    return FillPolicy(pipe, device=device, dtype=dtype), tr["joint_attention_dim"], tr["pooled_projection_dim"]


def reward_config(dry: bool, tokenizer):
    """The tiny test tokenizer's Qwen2.5-VL config, at Qwen2.5-VL-7B sizes unless ``dry``."""
    from rewardtrain.engine.tiny import tiny_model_config

    config = tiny_model_config(tokenizer)
    if not dry:  # Qwen2.5-VL-7B sizes; token ids of the tiny tokenizer fit in the real vocabulary
        text = config.text_config
        text.vocab_size, text.hidden_size, text.intermediate_size = 152064, 3584, 18944
        text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads = 28, 28, 4
        text.rope_parameters = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
        text.layer_types = ["full_attention"] * text.num_hidden_layers  # one entry per layer
        vision = config.vision_config
        vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads = 32, 1280, 3420, 16
        vision.out_hidden_size, vision.fullatt_block_indexes = 3584, [7, 15, 23, 31]
    return config


def build_reward(dry: bool, device: torch.device, dtype: torch.dtype):
    """RewardScorer around a random Qwen2.5-VL (7B sizes unless dry) with the tiny test tokenizer."""
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rewardtrain.engine.model import resolve_answer_token_ids
    from rewardtrain.engine.processor import ImageOnlyQwen2_5_VLProcessor
    from rewardtrain.engine.scorer import RewardScorer
    from rewardtrain.engine.tiny import CHAT_TEMPLATE, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(0)
    config = reward_config(dry, tokenizer)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False).eval()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()  # HF models only checkpoint in train mode; there is no dropout in Qwen2.5-VL
    pixels = 112 * 112 if dry else 512 * 512
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=pixels),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    yes, no = resolve_answer_token_ids(processor)
    return RewardScorer(model, processor, yes, no), sum(p.numel() for p in model.parameters())


def run(dry: bool, size: int, steps: int, policy_steps: int, ref_steps: int, rank: int,
        dtype: torch.dtype | None = None) -> dict:
    device = torch.device("cpu" if dry else "cuda")
    dtype = dtype or (torch.float32 if dry else torch.bfloat16)
    t0 = time.time()
    policy, joint_dim, pooled_dim = build_policy(dry, device, dtype)
    torch.manual_seed(0)
    policy.add_lora(rank, rank, ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj",
                                 "to_add_out"])
    params = {n: p for n, p in policy.transformer.named_parameters() if p.requires_grad}
    for p in params.values():
        p.data = p.data.float()
    policy.transformer.enable_gradient_checkpointing()
    policy.vae.enable_gradient_checkpointing()
    scorer, rm_params = build_reward(dry, device, dtype)
    build_s = time.time() - t0
    seq = 32 if dry else 512
    embeds = PromptEmbeds(torch.randn(1, seq, joint_dim, device=device, dtype=dtype),
                          torch.randn(1, pooled_dim, device=device, dtype=dtype), torch.zeros(seq, 3, device=device))
    optimizer = torch.optim.AdamW(list(params.values()), lr=1e-5)
    ema = {n: p.detach().clone() for n, p in params.items()}
    images = torch.rand(1, 3, size, size, device=device)
    masks = torch.zeros(1, 1, size, size, device=device)
    masks[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    gen = torch.Generator("cpu").manual_seed(0)
    ref_schedule, pol_schedule = policy.schedule(ref_steps, size, size), policy.schedule(policy_steps, size, size)
    timings = []
    if not dry:
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps):
        sync = torch.cuda.synchronize if not dry else (lambda: None)
        sync()
        t_start = time.time()
        inputs = policy.prepare_inputs(images, masks, gen)
        noise_ref, noise_pol = (policy.initial_noise(1, size, size, gen) for _ in range(2))
        with torch.no_grad():
            policy.transformer.disable_adapters()
            ref = policy.decode(policy.denoise(noise_ref, inputs, embeds, ref_schedule, None, 30.0), size, size)
            policy.transformer.enable_adapters()
        sync()
        t_ref = time.time()
        k = int(policy_steps * 0.7)
        pol = one_step_images(policy, inputs, embeds, noise_pol, pol_schedule, k, 30.0)
        sync()
        t_pol = time.time()
        reward = scorer.differentiable(pol.images, ref, "fill", "structure", ["a red cat"])
        loss = torch.relu(0.9 - reward.float()).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_update(ema, params, 0.99)
        sync()
        t_end = time.time()
        timings.append({"step": step, "reference_s": t_ref - t_start, "policy_s": t_pol - t_ref,
                        "reward_backward_s": t_end - t_pol, "total_s": t_end - t_start, "loss": loss.item()})
    peak = torch.cuda.max_memory_allocated() / 2**30 if not dry else float("nan")
    return {"build_s": build_s, "timings": timings, "peak_gib": peak, "lora_params": sum(p.numel() for p in params.values()),
            "policy_params": sum(p.numel() for p in policy.transformer.parameters()), "rm_params": rm_params}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (smoke test)")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=3, help="RL steps to time (the first is warm-up)")
    parser.add_argument("--policy-steps", type=int, default=28)
    parser.add_argument("--reference-steps", type=int, default=28)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                        help="weights dtype (default: bfloat16 on the GPU, float32 for --dry-run)")
    parser.add_argument("--sdp", choices=["default", "no-cudnn", "math"], default="no-cudnn",
                        help="attention kernels: 'no-cudnn' (default) turns off cuDNN attention, whose backward "
                             "failed on an H200 with torch 2.11 (mha_graph.execute); 'math' turns off all fused ones")
    args = parser.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        parser.error("no CUDA device; use --dry-run on a CPU machine")
    size = args.size or (64 if dry else 512)
    ps, rs = (3, 2) if dry else (args.policy_steps, args.reference_steps)
    if args.sdp != "default":
        torch.backends.cuda.enable_cudnn_sdp(False)
    if args.sdp == "math":
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    out = run(dry, size, args.steps if not dry else 2, ps, rs, 4 if dry else args.lora_rank, dtype)
    print(f"policy {out['policy_params'] / 1e9:.3f} B params, LoRA {out['lora_params'] / 1e6:.2f} M, "
          f"reward model {out['rm_params'] / 1e9:.3f} B, build {out['build_s']:.1f} s")
    print(f"{'step':>4} {'reference_s':>12} {'policy_s':>9} {'reward+bwd_s':>13} {'total_s':>8} {'loss':>8}")
    for t in out["timings"]:
        print(f"{t['step']:>4} {t['reference_s']:>12.3f} {t['policy_s']:>9.3f} {t['reward_backward_s']:>13.3f} "
              f"{t['total_s']:>8.3f} {t['loss']:>8.4f}")
    timed = out["timings"][1:] or out["timings"]
    mean = sum(t["total_s"] for t in timed) / len(timed)
    print(f"result: size {size} rl_step_s {mean:.3f} peak_gib {out['peak_gib']:.2f} "
          f"(reference {rs} steps, policy {ps} steps, LoRA r={4 if dry else args.lora_rank}, grad checkpointing)")
    return out


if __name__ == "__main__":
    main()
