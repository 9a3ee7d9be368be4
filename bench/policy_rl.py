"""CPU benchmark: OneReward RL steps/s and peak memory, engine ``train()`` vs a plain hand-written loop.

Both run in this process on the same tiny FLUX.1-Fill model with the same work per step (reference
rollout, policy rollout to k, one grad step, decode, toy differentiable reward, AdamW, EMA) for
Algorithms 1 and 2 at 64 and 112 px. The last line is ``ratio: <ours/plain steps per second>``.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.conditions import ConditionRow  # noqa: E402
from contracts.conditions import write_conditions as write_index  # noqa: E402
from policytrain.engine.config import RLConfig  # noqa: E402
from policytrain.engine.rl import train  # noqa: E402
from policytrain.engine.tiny import build_tiny_fill_pipeline  # noqa: E402

STEPS, WARMUP, BATCH, REF_STEPS, POL_STEPS, K = 12, 2, 4, 4, 4, 2
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def toy_reward(first, second, task, criterion, prompts):
    h, w = first.shape[-2:]
    return first[:, :, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(dim=(1, 2, 3))


def write_conditions(root: Path, size: int) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / f"images/s{i}.png")
        Image.fromarray(mask).save(root / f"images/m{i}.png")
        rows.append(ConditionRow(id=f"c{i}", task="fill", prompt="a red cat", split="train",
                                 source=f"images/s{i}.png", mask=f"images/m{i}.png"))
    write_index(root, rows)
    return root


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(base: Path, conds: Path, out: Path, size: int, algorithm: int) -> float:
    stamps = []
    cfg = RLConfig(base_policy=str(base), conditions_dir=str(conds), output_dir=str(out), algorithm=algorithm,
                   task_probs={"fill": 1.0}, resolution=size, batch_size=BATCH, max_steps=STEPS,
                   reference_steps=REF_STEPS, policy_steps=POL_STEPS, t_range=(K / POL_STEPS, K / POL_STEPS),
                   max_sequence_length=32, learning_rate=1e-3, save_every=0, sample_grid_every=0, log_every=0,
                   gradient_checkpointing=False)
    train(cfg, reward_fn=toy_reward, progress=lambda e: stamps.append(time.perf_counter()))
    return (STEPS - WARMUP) / (stamps[-1] - stamps[WARMUP - 1])


def plain(base: Path, conds: Path, size: int, algorithm: int) -> float:
    """The same computation written directly against diffusers + peft, no engine code."""
    from diffusers import FluxFillPipeline
    from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift, retrieve_timesteps
    from peft import LoraConfig
    from PIL import Image

    pipe = FluxFillPipeline.from_pretrained(base)
    tr, vae = pipe.transformer, pipe.vae
    tr.requires_grad_(False)
    vae.requires_grad_(False)
    torch.manual_seed(0)
    tr.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=TARGETS))
    params = [p for p in tr.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    ema = [p.detach().clone() for p in params]
    src = torch.from_numpy(np.asarray(Image.open(conds / "images/s0.png"), dtype=np.float32) / 255).permute(2, 0, 1)
    msk = torch.from_numpy(np.asarray(Image.open(conds / "images/m0.png")) > 127).float()[None]
    images, masks = src[None].repeat(BATCH, 1, 1, 1), msk[None].repeat(BATCH, 1, 1, 1)
    with torch.no_grad():
        pe, pooled, text_ids = pipe.encode_prompt("a red cat", None, max_sequence_length=32, num_images_per_prompt=BATCH)
    s, c, lh = pipe.vae_scale_factor, 16, size // pipe.vae_scale_factor
    seq = (lh // 2) ** 2
    mu = calculate_shift(seq, 256, 4096, 0.5, 1.15)

    def schedule(n):
        ts, _ = retrieve_timesteps(pipe.scheduler, n, "cpu", sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
        return ts.clone(), pipe.scheduler.sigmas.clone()

    ref_ts, ref_sig = schedule(REF_STEPS)
    pol_ts, pol_sig = schedule(POL_STEPS)
    img_ids = pipe._prepare_latent_image_ids(BATCH, lh // 2, lh // 2, "cpu", torch.float32)
    guidance = torch.full([BATCH], 30.0)

    def v(x, cond, t):
        return tr(hidden_states=torch.cat((x, cond), 2), timestep=t.expand(BATCH) / 1000, guidance=guidance,
                  pooled_projections=pooled, encoder_hidden_states=pe, txt_ids=text_ids, img_ids=img_ids,
                  return_dict=False)[0]

    def decode(x):
        x = pipe._unpack_latents(x, size, size, s) / vae.config.scaling_factor + vae.config.shift_factor
        return (vae.decode(x, return_dict=False)[0] / 2 + 0.5).clamp(0, 1)

    gen = torch.Generator().manual_seed(0)
    stamps = []
    for _ in range(STEPS):
        with torch.no_grad():
            init = pipe.image_processor.preprocess(images, height=size, width=size)
            mask = pipe.mask_processor.preprocess(masks, height=size, width=size)
            m, ml = pipe.prepare_mask_latents(mask, init * (1 - mask), BATCH, c, 1, size, size, torch.float32, "cpu", gen)
            cond = torch.cat((ml, m), -1)
            x_ref = torch.randn(BATCH, seq, 4 * c, generator=gen)
            x_pol = torch.randn(BATCH, seq, 4 * c, generator=gen)
            if algorithm == 1:
                tr.disable_adapters()
            else:
                backup = [p.detach().clone() for p in params]
                for p, e in zip(params, ema, strict=True):
                    p.copy_(e)
            for i in range(REF_STEPS):
                x_ref = x_ref + (ref_sig[i + 1] - ref_sig[i]) * v(x_ref, cond, ref_ts[i])
            ref = decode(x_ref)
            if algorithm == 1:
                tr.enable_adapters()
            else:
                for p, b in zip(params, backup, strict=True):
                    p.copy_(b)
            for p in params:
                p.requires_grad_(True)
            for i in range(K):
                x_pol = x_pol + (pol_sig[i + 1] - pol_sig[i]) * v(x_pol, cond, pol_ts[i])
        x0 = x_pol - pol_sig[K] * v(x_pol, cond, pol_ts[K])
        reward = toy_reward(decode(x0), ref, "fill", "x", [])
        loss = torch.relu(0.9 - reward).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for e, p in zip(ema, params, strict=True):
                e.mul_(0.99).add_(p, alpha=0.01)
        stamps.append(time.perf_counter())
    return (STEPS - WARMUP) / (stamps[-1] - stamps[WARMUP - 1])


def main() -> None:
    torch.set_num_threads(1)
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base = build_tiny_fill_pipeline(tmp_path / "flux")
        for size in (64, 112):
            conds = write_conditions(tmp_path / f"c{size}", size)
            for algorithm in (1, 2):
                p = plain(base, conds, size, algorithm)
                o = ours(base, conds, tmp_path / f"run{size}-{algorithm}", size, algorithm)
                rows.append((size, algorithm, o, p, o / p, peak_rss_mib()))
                ratios.append(o / p)
    print(f"{'size':>5} {'alg':>4} {'ours it/s':>10} {'plain it/s':>11} {'ratio':>6} {'peak RSS MiB':>13}")
    for size, alg, o, p, r, rss in rows:
        print(f"{size:>5} {alg:>4} {o:>10.2f} {p:>11.2f} {r:>6.2f} {rss:>13.0f}")
    print("(batch 4, reference 4 steps, policy 4 steps with the grad step at k=2, 1 thread; peak RSS is the")
    print(" process high-water mark so far, as the CPU has no per-run peak counter)")
    print(f"ratio: {float(np.exp(np.mean(np.log(ratios)))):.3f}")


if __name__ == "__main__":
    main()
