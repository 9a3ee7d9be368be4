"""Supervised pre-training of a FLUX.1-Fill-architecture policy: the paper's "pre-trained base".

OneReward's RL starts from a real, imperfect fill model. A randomly initialised tiny pipeline is
not one (its VAE does not even reconstruct images), so this module makes one from
``(source, mask, prompt) → target`` conditions, in two phases:

1. **VAE** (only when ``vae_steps > 0``): the autoencoder is trained to reconstruct targets and
   masked sources (MSE on the posterior mean + a small latent L2; the posterior variance is then
   pinned near zero so the pipeline's posterior sampling is deterministic), then ``shift_factor`` /
   ``scaling_factor`` are re-estimated so packed latents have zero mean and unit variance, as
   FLUX's VAE constants do for real images.
2. **Transformer**: standard rectified flow. ``x_t = (1−σ)·x0 + σ·ε`` and the target velocity is
   ``v = ε − x0`` (so ``x0 = x_t − σ·v``, the identity ``onestep`` uses); the loss is the MSE of the
   transformer output on packed latents, conditioned exactly like ``FillPolicy`` (packed
   masked-image latents ⊕ packed mask from ``FillPolicy.prepare_inputs``, prompt embeddings from
   ``FillPolicy.encode_prompts``, guidance embedding). σ is drawn logit-normally (SD3/FLUX).
   Tokens that touch the hole can be up-weighted (``mask_loss_weight``).

The result is a full pipeline folder (``<output_dir>/final``, written with the pipeline's own
``save_pretrained``) that ``FillPolicy.from_pretrained`` loads like any FLUX.1-Fill folder, plus
``config.json``, ``metrics.jsonl`` and ``result.json`` (docs/engine-contracts.md run folders).
``result.json`` records a hash of the config and of the conditions index: a later call with the
same hash returns it immediately, so demos reuse the base they already trained.

The conditions folder must carry the optional ``target`` column (the synthetic world writes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from contracts.conditions import CONDITIONS_FILE, read_conditions
from policytrain.engine.pipeline import FillInputs, FillPolicy, policy_prompt

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


class PretrainCancelled(Exception):
    """``should_stop()`` returned True; nothing deployable was written."""


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training of a fill policy; frozen, JSON round-trippable, stored as ``config.json``.

    Attributes:
        conditions_dir: conditions folder whose rows have a ``target`` image.
        output_dir: run folder; the pipeline lands in ``<output_dir>/final``.
        base_policy: start from this FLUX Fill folder instead of building a tiny one.
        split: use only rows of this split (None = all rows).
        resolution: square training size (multiple of 16).
        num_layers / num_single_layers / attention_head_dim / num_attention_heads: transformer
            size when building from scratch (see ``build_fill_pipeline``).
        vae_block_out_channels: VAE widths when building (4 levels keep the 8x scale of FLUX; 3 levels
            give a 4x VAE, whose tiny version learns colours in a few hundred steps where the 8x one
            stays washed-out grey; the transformer's Fill channels follow, 8·16 + 4·s²).
        vae_steps / vae_lr / vae_kl_weight / vae_batch_size: phase 1 (0 steps = keep the VAE);
            vae_kl_weight weighs an L2 penalty on the latents (a deterministic stand-in for KL).
        vae_crop: train the VAE on random square crops of this size (a multiple of the VAE scale,
            ≤ resolution) instead of whole images: the VAE is convolutional, so crops teach the
            same reconstruction at a fraction of the cost per step (None = whole images).
        steps / lr / batch_size / weight_decay / grad_clip: phase 2 (AdamW, warm-up + cosine).
        guidance: guidance-embedding value used in training (use the same at inference).
        max_sequence_length: T5 length (short prompts; 32 keeps the tiny model fast).
        mask_loss_weight: loss weight of latent tokens touching the hole (others weigh 1).
        seed: seeds weights (when building), data order and noise.
        checkpoint_steps: transformer steps after which the whole pipeline is also saved to
            ``<output_dir>/checkpoints/step-<n>`` (earlier, weaker versions of the base: candidate
            generators of varied quality, like the several model versions of the paper's data).
    """

    conditions_dir: str
    output_dir: str
    base_policy: str | None = None
    split: str | None = None
    resolution: int = 64
    num_layers: int = 1
    num_single_layers: int = 2
    attention_head_dim: int = 16
    num_attention_heads: int = 2
    vae_block_out_channels: tuple[int, ...] = (16, 16, 32, 32)
    vae_steps: int = 300
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-4
    vae_batch_size: int = 16
    vae_crop: int | None = None
    steps: int = 1000
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    guidance: float = 30.0
    max_sequence_length: int = 32
    mask_loss_weight: float = 2.0
    seed: int = 0
    log_every: int = 50
    checkpoint_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not self.conditions_dir or not self.output_dir:
            problems.append("conditions_dir and output_dir are required")
        if self.resolution < 16 or self.resolution % 16:
            problems.append(f"resolution must be a positive multiple of 16, got {self.resolution}")
        if self.attention_head_dim % 16:
            problems.append(f"attention_head_dim must be a multiple of 16, got {self.attention_head_dim}")
        if len(self.vae_block_out_channels) not in (3, 4):
            problems.append("vae_block_out_channels needs 3 (4x VAE) or 4 levels (FLUX's 8x VAE scale)")
        scale = 2 ** (len(self.vae_block_out_channels) - 1)
        if self.vae_crop is not None and (self.vae_crop < 2 * scale or self.vae_crop % scale
                                          or self.vae_crop > self.resolution):
            problems.append(f"vae_crop must be a multiple of {scale} in [{2 * scale}, resolution], got {self.vae_crop}")
        for name in ("vae_steps", "steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("batch_size", "vae_batch_size", "num_attention_heads", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.lr <= 0 or self.vae_lr <= 0:
            problems.append("learning rates must be > 0")
        if problems:
            raise ValueError("invalid PretrainConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s): {', '.join(unknown)}")
        values = dict(data)
        for name in ("vae_block_out_channels", "checkpoint_steps"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["vae_block_out_channels"] = list(self.vae_block_out_channels)
        data["checkpoint_steps"] = list(self.checkpoint_steps)
        return data

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)


def config_hash(config: PretrainConfig) -> str:
    """Hash of everything that determines the result: the config (minus where it is written and
    how often it logs) and the content of the conditions index."""
    data = config.to_dict()
    for name in ("output_dir", "conditions_dir", "log_every"):
        data.pop(name)
    if data.get("vae_crop") is None:  # added later: keep the hashes (caches) of older configs valid
        data.pop("vae_crop", None)
    if not config.base_policy:  # built from scratch: a changed tiny build must not reuse old caches
        from policytrain.engine.tiny import TINY_BUILD_VERSION

        data["tiny_build"] = TINY_BUILD_VERSION
    index = Path(config.conditions_dir) / CONDITIONS_FILE
    data["conditions_sha256"] = hashlib.sha256(index.read_bytes()).hexdigest() if index.is_file() else None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Building a (wider) tiny pipeline
# ----------------------------------------------------------------------------------------------
def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX's (index, h, w) RoPE split scaled to ``head_dim`` (16 → (4, 6, 6), 128 → (16, 56, 56)-like)."""
    a = head_dim // 4
    rest = head_dim - a
    return a, rest // 2, rest - rest // 2


def build_fill_pipeline(
    out_dir: str | Path,
    seed: int = 0,
    *,
    num_layers: int = 1,
    num_single_layers: int = 2,
    attention_head_dim: int = 16,
    num_attention_heads: int = 2,
    vae_block_out_channels: tuple[int, ...] = (16, 16, 32, 32),
) -> Path:
    """A tiny FluxFillPipeline like ``tiny.build_tiny_fill_pipeline`` with a configurable transformer
    and VAE size (same tokenizers, text encoders and scheduler). The Fill channels follow the VAE:
    384→64 for 4 levels (8×, as FLUX), 192→64 for 3 levels (4×)."""
    from diffusers import FluxFillPipeline

    from policytrain.engine.tiny import build_tiny_fill_pipeline, tiny_transformer, tiny_vae

    out = Path(out_dir)
    scratch = out.with_name(out.name + ".tiny-tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    build_tiny_fill_pipeline(scratch, seed=seed)
    pipe = FluxFillPipeline.from_pretrained(scratch)
    text_dim = pipe.text_encoder_2.config.d_model
    pooled_dim = pipe.text_encoder.config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = tiny_vae(tuple(vae_block_out_channels))
        transformer = tiny_transformer(
            num_layers=num_layers, num_single_layers=num_single_layers, attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads, text_dim=text_dim, pooled_dim=pooled_dim,
            axes_dims_rope=rope_axes(attention_head_dim),
            vae_scale_factor=2 ** (len(vae_block_out_channels) - 1),
        )
    pipe.register_modules(vae=vae, transformer=transformer)
    pipe.save_pretrained(out)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class _Data:
    sources: torch.Tensor  # [N,3,H,W] in [0,1]
    masks: torch.Tensor  # [N,1,H,W] in {0,1}
    targets: torch.Tensor  # [N,3,H,W] in [0,1]
    prompts: list[str]  # policy prompts (task-resolved)


def _image(path: Path, mode: str, res: int, resample) -> torch.Tensor:
    img = Image.open(path).convert(mode)
    if img.size != (res, res):
        img = img.resize((res, res), resample)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if mode == "L":
        return torch.from_numpy((arr > 0.5).astype(np.float32))[None]
    return torch.from_numpy(arr).permute(2, 0, 1)


def load_training_data(conditions_dir: str | Path, resolution: int, split: str | None = None) -> _Data:
    """Read source, mask, target and prompt of every row (that has a ``target``) into memory."""
    root = Path(conditions_dir)
    index = root / CONDITIONS_FILE
    src, msk, tgt, prompts = [], [], [], []
    for row in read_conditions(root, split):
        if not row.target:
            continue
        src.append(_image(root / row.source, "RGB", resolution, Image.BICUBIC))
        msk.append(_image(root / row.mask, "L", resolution, Image.NEAREST))
        tgt.append(_image(root / row.target, "RGB", resolution, Image.BICUBIC))
        prompts.append(policy_prompt(row.task, row.prompt))
    if not src:
        raise ValueError(f"{index}: no rows with a 'target' image{f' in split {split!r}' if split else ''}")
    return _Data(torch.stack(src), torch.stack(msk), torch.stack(tgt), prompts)


def _lr_factor(step: int, total: int, warmup: int = 20, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------
def pin_posterior_variance(vae, logvar: float = -20.0) -> None:
    """Make the encoder's log-variance a constant (σ ≈ 5e-5), so the pipeline's posterior *sample*
    of the masked image equals its mean: the tiny VAE is trained as a deterministic autoencoder."""
    conv = vae.encoder.conv_out
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[half:].zero_()
        if conv.bias is not None:
            conv.bias[half:].fill_(logvar)


def train_vae(policy: FillPolicy, data: _Data, config: PretrainConfig, log, should_stop) -> dict:
    """Phase 1: reconstruct targets and masked sources, then re-estimate shift/scale."""
    vae = policy.vae
    gen = torch.Generator().manual_seed(config.seed + 1)
    masked_sources = data.sources * (1 - data.masks) + 0.5 * data.masks  # what prepare_inputs encodes
    pool = torch.cat([data.targets, masked_sources])
    last = {}
    if config.vae_steps:
        vae.requires_grad_(True)
        vae.train()
        params = [p for p in vae.parameters()]
        opt = torch.optim.AdamW(params, lr=config.vae_lr, weight_decay=0.0)
        window = []
        for step in range(config.vae_steps):
            if should_stop is not None and should_stop():
                raise PretrainCancelled(f"cancelled in the VAE phase at step {step}")
            for group in opt.param_groups:
                group["lr"] = config.vae_lr * _lr_factor(step, config.vae_steps)
            idx = torch.randint(len(pool), (config.vae_batch_size,), generator=gen)
            x = pool[idx] * 2 - 1
            if config.vae_crop is not None and config.vae_crop < x.shape[-1]:
                # One random crop per batch (same offset for the batch: cheap, and the conv VAE
                # has no notion of absolute position apart from the borders).
                c = config.vae_crop
                oy, ox = torch.randint(0, x.shape[-1] - c + 1, (2,), generator=gen).tolist()
                x = x[:, :, oy : oy + c, ox : ox + c]
            z = vae.encode(x).latent_dist.mean
            rec = vae.decode(z).sample
            recon = torch.mean((rec - x) ** 2)
            # A deterministic autoencoder (the posterior variance is pinned below); the small L2
            # on the latents stands in for the KL term and keeps their scale bounded.
            loss = recon + config.vae_kl_weight * torch.mean(z**2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            window.append(recon.item())
            if (step + 1) % config.log_every == 0 or step + 1 == config.vae_steps:
                last = {"step": step + 1, "total_steps": config.vae_steps, "kind": "train", "phase": "vae",
                        "recon_mse": sum(window) / len(window)}
                log(last)
                window = []
        vae.requires_grad_(False)
        vae.eval()
        pin_posterior_variance(vae)
    # Latent statistics of the training images → FLUX-style shift/scale constants.
    with torch.no_grad():
        means = []
        for start in range(0, len(pool), 64):
            means.append(vae.encode(pool[start : start + 64] * 2 - 1).latent_dist.mean)
        lat = torch.cat(means)
        shift = float(lat.mean())
        scale = float(1.0 / lat.std().clamp(min=1e-6))
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    return {"vae_recon_mse": last.get("recon_mse"), "shift_factor": shift, "scaling_factor": scale}


@torch.no_grad()
def _encode_dataset(policy: FillPolicy, data: _Data, config: PretrainConfig):
    """Packed x0 latents of the targets (posterior means) and the Fill conditioning of every row."""
    gen = torch.Generator().manual_seed(config.seed + 2)
    res = config.resolution
    x0s, conds = [], []
    img_ids = None
    for start in range(0, len(data.prompts), 64):
        sl = slice(start, start + 64)
        inputs = policy.prepare_inputs(data.sources[sl], data.masks[sl], gen)
        conds.append(inputs.cond)
        img_ids = inputs.img_ids
        tgt = policy.pipe.image_processor.preprocess(data.targets[sl], height=res, width=res)
        lat = policy.vae.encode(tgt).latent_dist.mean
        lat = (lat - policy.vae.config.shift_factor) * policy.vae.config.scaling_factor
        b, c, h, w = lat.shape
        x0s.append(policy.pipe._pack_latents(lat, b, c, h, w))
    return torch.cat(x0s), torch.cat(conds), img_ids


def _save_pipeline(policy: FillPolicy, folder: Path) -> Path:
    tmp = folder.with_name(".tmp-" + folder.name)
    shutil.rmtree(tmp, ignore_errors=True)
    policy.pipe.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def train_transformer(
    policy: FillPolicy, data: _Data, config: PretrainConfig, log, should_stop, checkpoint_dir: Path | None = None
) -> dict:
    """Phase 2: rectified-flow matching on packed latents with Fill conditioning."""
    x0_all, cond_all, img_ids = _encode_dataset(policy, data, config)
    res = config.resolution
    for prompt in sorted(set(data.prompts)):
        policy.encode_prompts([prompt], config.max_sequence_length)
    # Tokens touching the hole: the packed mask channels are the last 4·s² of cond.
    mask_ch = 4 * policy.vae_scale_factor**2
    hole = (cond_all[..., -mask_ch:].amax(dim=-1) > 0).float()  # [N, seq]
    weights = 1.0 + (config.mask_loss_weight - 1.0) * hole

    tr = policy.transformer
    tr.requires_grad_(True)
    tr.train()
    params = [p for p in tr.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed + 3)
    n = len(data.prompts)
    window: list[float] = []
    first_loss = last_loss = None
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            raise PretrainCancelled(f"cancelled in the transformer phase at step {step}")
        for group in opt.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.steps)
        idx = torch.randint(n, (config.batch_size,), generator=gen)
        x0 = x0_all[idx]
        eps = torch.randn(x0.shape, generator=gen)
        # σ: half logit-normal (SD3/FLUX), half uniform so the σ≈1 start of few-step sampling is covered.
        logit_normal = torch.sigmoid(torch.randn(config.batch_size, generator=gen))
        uniform = torch.rand(config.batch_size, generator=gen)
        sigma = torch.where(torch.rand(config.batch_size, generator=gen) < 0.5, logit_normal, uniform)
        x_t = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * eps
        embeds = policy.encode_prompts([data.prompts[i] for i in idx.tolist()], config.max_sequence_length)
        inputs = FillInputs(cond_all[idx], img_ids, res, res)
        v = policy.velocity(x_t, inputs, sigma * 1000.0, embeds, config.guidance)
        per_token = ((v.float() - (eps - x0)) ** 2).mean(dim=-1)
        w = weights[idx]
        loss = (per_token * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        window.append(loss.item())
        if checkpoint_dir is not None and step + 1 in config.checkpoint_steps and step + 1 < config.steps:
            tr.eval()
            _save_pipeline(policy, checkpoint_dir / f"step-{step + 1}")
            tr.train()
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            mean = sum(window) / len(window)
            first_loss = mean if first_loss is None else first_loss
            last_loss = mean
            log({"step": step + 1, "total_steps": config.steps, "kind": "train", "phase": "transformer",
                 "loss": mean})
            window = []
    tr.requires_grad_(False)
    tr.eval()
    return {"first_loss": first_loss, "final_loss": last_loss}


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def pretrain(config: PretrainConfig, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict:
    """Pre-train (or reuse) a fill policy; returns the ``result.json`` content.

    ``result["final_dir"]`` is the pipeline folder (absolute path) for ``FillPolicy.from_pretrained``.
    """
    out = Path(config.output_dir)
    digest = config_hash(config)
    result_path = out / "result.json"
    if result_path.is_file():
        try:
            previous = json.loads(result_path.read_text())
        except json.JSONDecodeError:
            previous = {}
        if previous.get("config_hash") == digest and (out / "final" / "model_index.json").is_file():
            return {**previous, "cached": True}
    started = time.time()
    torch.manual_seed(config.seed)
    data = load_training_data(config.conditions_dir, config.resolution, config.split)
    out.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    metrics = out / "metrics.jsonl"
    metrics.write_text("")

    def log(event: dict) -> None:
        with metrics.open("a") as fh:
            fh.write(json.dumps(event) + "\n")
        if progress is not None:
            progress(event)

    init = out / "init"
    if config.base_policy:
        base = config.base_policy
    else:
        base = str(build_fill_pipeline(
            init, config.seed, num_layers=config.num_layers, num_single_layers=config.num_single_layers,
            attention_head_dim=config.attention_head_dim, num_attention_heads=config.num_attention_heads,
            vae_block_out_channels=config.vae_block_out_channels,
        ))
    policy = FillPolicy.from_pretrained(base)
    t0 = time.time()
    vae_info = train_vae(policy, data, config, log, should_stop)
    t1 = time.time()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    tr_info = train_transformer(policy, data, config, log, should_stop, out / "checkpoints")
    t2 = time.time()

    final = _save_pipeline(policy, out / "final")
    shutil.rmtree(init, ignore_errors=True)
    result = {
        "status": "completed",
        "config_hash": digest,
        "final_dir": str(final.resolve()),
        "checkpoints": {str(n): str((out / "checkpoints" / f"step-{n}").resolve())
                        for n in config.checkpoint_steps if n < config.steps},
        "conditions": len(data.prompts),
        "transformer_parameters": sum(p.numel() for p in policy.transformer.parameters()),
        "vae_parameters": sum(p.numel() for p in policy.vae.parameters()),
        **vae_info,
        **tr_info,
        "vae_seconds": t1 - t0,
        "transformer_seconds": t2 - t1,
        "elapsed_s": time.time() - started,
    }
    result_path.write_text(json.dumps(result, indent=2))
    return {**result, "cached": False}
