"""FillPolicy: a FLUX.1-Fill-architecture policy built from diffusers' FluxFillPipeline helpers.

``FluxFillPipeline.__call__`` runs under ``torch.no_grad``, so training needs the pieces: prompt
encoding, mask/masked-image latents, the shifted sigma schedule, one transformer velocity call, Euler
steps, and decoding. This module exposes those pieces (reusing the pipeline's own helpers) plus
``generate`` for inference, which uses the official pipeline whenever it can (no true CFG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contracts.cards import write_policy_card
from contracts.conditions import read_conditions

from .config import EXTEND_DEFAULT_PROMPT, REMOVAL_PROMPT, TASKS, read_policy_meta

WEIGHTS_FILE = "weights.safetensors"


# ----------------------------------------------------------------------------------------------
# Conditions folder
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One row of ``conditions.jsonl``: the task, the user prompt and absolute image paths."""

    id: str
    task: str
    prompt: str
    source: Path
    mask: Path
    split: str | None = None

    @property
    def policy_prompt(self) -> str:
        return policy_prompt(self.task, self.prompt)


def policy_prompt(task: str, prompt: str) -> str:
    """The text the policy is conditioned on: removal and prompt-less extend use fixed prompts."""
    if task == "removal":
        return REMOVAL_PROMPT
    if task == "extend" and not prompt.strip():
        return EXTEND_DEFAULT_PROMPT
    return prompt


def load_conditions(conditions_dir: str | Path, split: str | None = None) -> list[Condition]:
    """Read ``<conditions_dir>/conditions.jsonl`` (docs/engine-contracts.md), optionally one split."""
    root = Path(conditions_dir)
    return [Condition(id=row.id, task=row.task, prompt=row.prompt, source=root / row.source, mask=root / row.mask,
                      split=row.split)
            for row in read_conditions(root, split, tasks=TASKS)]


def load_condition_tensors(
    cond: Condition, resolution: int | tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``(image [1,3,H,W] in [0,1], mask [1,1,H,W] in {0,1})`` for one condition.

    The mask must have the source's size. Without ``resolution`` the size must be a multiple of 16
    (FLUX packs 2x2 latents of an 8x VAE; the stock pipeline would silently resize instead). With a
    ``resolution`` both are resized to a square of that size, or with ``(height, width)`` (an
    aspect-ratio bucket, ``aspect_buckets``) to that size (mask by nearest neighbour).
    """
    source = Image.open(cond.source).convert("RGB")
    mask = Image.open(cond.mask).convert("L")
    if source.size != mask.size:
        raise ValueError(
            f"condition {cond.id}: mask size {mask.size[0]}x{mask.size[1]} differs from "
            f"image size {source.size[0]}x{source.size[1]}"
        )
    if resolution is not None:
        height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
        source = source.resize((width, height), Image.BICUBIC)
        mask = mask.resize((width, height), Image.NEAREST)
    w, h = source.size
    if w % 16 or h % 16:
        raise ValueError(f"condition {cond.id}: image size {w}x{h} is not a multiple of 16")
    image = torch.from_numpy(np.asarray(source, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mask_t = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None, None]
    return image, mask_t


def aspect_bucket_sizes(spec: int | Sequence[float], resolution: int, factor: int = 16) -> list[tuple[int, int]]:
    """The (height, width) of each aspect-ratio bucket: about ``resolution²`` pixels, sides multiples of ``factor``.

    ``spec`` is a number of buckets (ratios width/height spread evenly in log-ratio between 1:2 and
    2:1; 1 = the square ``resolution``) or a list of width/height ratios.
    """
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"aspect_buckets must be >= 1, got {spec}")
        ratios = [1.0] if spec == 1 else [2.0 ** (-1 + 2 * i / (spec - 1)) for i in range(spec)]
    else:
        ratios = [float(r) for r in spec]
    sizes = []
    for ratio in ratios:
        width = max(factor, round(resolution * ratio**0.5 / factor) * factor)
        height = max(factor, round(resolution / ratio**0.5 / factor) * factor)
        if (height, width) not in sizes:
            sizes.append((height, width))
    return sizes


def nearest_bucket(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``width/height`` in log-ratio (the smallest distortion)."""
    ratio = np.log(width / height)
    return min(sizes, key=lambda hw: abs(np.log(hw[1] / hw[0]) - ratio))


def condition_size(cond: Condition) -> tuple[int, int]:
    """(width, height) of a condition's source image, read from its header only."""
    with Image.open(cond.source) as image:
        return image.size


def check_mask_matches(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Validate tensor inputs: same spatial size, multiples of 16."""
    if images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"mask size {tuple(masks.shape[-2:])} differs from image size {tuple(images.shape[-2:])}"
        )
    h, w = images.shape[-2:]
    if h % 16 or w % 16:
        raise ValueError(f"image size {w}x{h} is not a multiple of 16")


# ----------------------------------------------------------------------------------------------
# Tensors that travel together
# ----------------------------------------------------------------------------------------------
@dataclass
class PromptEmbeds:
    """T5 sequence embeddings, CLIP pooled embeddings and the (2-D) text position ids."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor

    @staticmethod
    def stack(items: Sequence[PromptEmbeds]) -> PromptEmbeds:
        return PromptEmbeds(
            torch.cat([e.prompt_embeds for e in items]),
            torch.cat([e.pooled for e in items]),
            items[0].text_ids,
        )


@dataclass
class FillInputs:
    """Per-batch conditioning: packed masked-image latents ⊕ packed mask, image ids, pixel size."""

    cond: torch.Tensor
    img_ids: torch.Tensor
    height: int
    width: int


@dataclass
class Schedule:
    """The shifted flow-matching schedule: N model timesteps and N+1 sigmas ending at 0."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


def fill_in_channels(latent_channels: int, vae_scale_factor: int) -> int:
    """Transformer input width of a Fill model: noisy + masked-image latents (4C each) + mask (4s²)."""
    return 8 * latent_channels + 4 * vae_scale_factor**2


def check_fill_architecture(transformer_config, vae_config, name: str = "base policy") -> None:
    """Raise a clear ``ValueError`` unless the transformer is a FLUX *Fill* transformer for this VAE."""
    c_lat = vae_config["latent_channels"]
    s = 2 ** (len(vae_config["block_out_channels"]) - 1)
    expected = fill_in_channels(c_lat, s)
    got = transformer_config["in_channels"]
    out = transformer_config.get("out_channels") or got
    if got != expected or out != 4 * c_lat:
        raise ValueError(
            f"{name} is not a FLUX Fill model: its transformer takes {got} input / {out} output channels, "
            f"but a Fill transformer for this VAE needs in = 8*{c_lat} + 4*{s}^2 = {expected} "
            f"(noisy latents + masked-image latents + mask) and out = {4 * c_lat}. "
            "Use a FLUX.1-Fill-dev checkpoint, not FLUX.1-dev."
        )


def paste_back_source(generated: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Keep the source outside the mask: ``mask · generated + (1 − mask) · source``.

    FLUX.1-Fill regenerates the whole image, and a weak model also changes what it was asked to
    keep (a small fill model washes the known region out). Fill products paste the source back
    over the unmasked region, so a judge (annotator, reward model, oracle) sees only the edit in
    its true context, and in RL the gradient only reaches the pixels the edit may change.
    ``generated``, ``images`` [B,3,H,W] in [0,1]; ``masks`` [B,1,H,W], 1 = edit. Differentiable.
    """
    if generated.shape != images.shape or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"paste-back needs matching shapes: generated {tuple(generated.shape)}, "
                         f"source {tuple(images.shape)}, mask {tuple(masks.shape)}")
    masks = masks.to(generated.device, generated.dtype)
    return masks * generated + (1 - masks) * images.to(generated.device, generated.dtype)


def predict_x0(latents: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """One-step data prediction of rectified flow: x_t = (1-σ)x0 + σε, v = ε - x0  ⇒  x0 = x_t - σ·v."""
    return latents - sigma * velocity


# ----------------------------------------------------------------------------------------------
# The policy
# ----------------------------------------------------------------------------------------------
class FillPolicy:
    """A FluxFillPipeline plus the differentiable building blocks RL needs."""

    def __init__(self, pipe, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.pipe = pipe
        self.device = torch.device(device)
        self.dtype = dtype
        # Held on the CPU and moved to the device per batch: at T5-XXL size one prompt is ~4 MiB,
        # ~40 GiB for 10k prompts if they stayed on the accelerator.
        self._prompt_cache: dict[tuple[str, int], PromptEmbeds] = {}
        check_fill_architecture(self.transformer.config, self.vae.config)

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        base: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        weights: str | Path | None = None,
        load_text_encoders: bool = True,
    ) -> FillPolicy:
        """Load a Fill pipeline component by component (local folder or hub id), then optional RL weights.

        Component-wise loading lets a caller replace pieces and fails on a non-Fill transformer
        *before* the multi-GB text encoders are read.
        """
        from diffusers import (
            AutoencoderKL,
            FlowMatchEulerDiscreteScheduler,
            FluxFillPipeline,
            FluxTransformer2DModel,
        )
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        root = str(base)
        try:
            tr_config = FluxTransformer2DModel.load_config(root, subfolder="transformer")
            vae_config = AutoencoderKL.load_config(root, subfolder="vae")
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read a FLUX pipeline at {root!r}: {exc}") from exc
        check_fill_architecture(tr_config, vae_config, name=f"base policy {root!r}")
        parts: dict = {
            "scheduler": FlowMatchEulerDiscreteScheduler.from_pretrained(root, subfolder="scheduler"),
            "vae": AutoencoderKL.from_pretrained(root, subfolder="vae", dtype=dtype),
            "transformer": FluxTransformer2DModel.from_pretrained(root, subfolder="transformer", dtype=dtype),
            "text_encoder": None,
            "tokenizer": None,
            "text_encoder_2": None,
            "tokenizer_2": None,
        }
        if load_text_encoders:
            parts["tokenizer"] = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
            parts["tokenizer_2"] = T5TokenizerFast.from_pretrained(root, subfolder="tokenizer_2")
            parts["text_encoder"] = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype)
            parts["text_encoder_2"] = T5EncoderModel.from_pretrained(root, subfolder="text_encoder_2", dtype=dtype)
        pipe = FluxFillPipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        for module in (pipe.vae, pipe.transformer, pipe.text_encoder, pipe.text_encoder_2):
            if module is not None:
                module.requires_grad_(False)
                module.eval()
        pipe.to(device)
        policy = cls(pipe, device=device, dtype=dtype)
        if weights is not None:
            policy.load_weights(weights)
        return policy

    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def vae_scale_factor(self) -> int:
        return self.pipe.vae_scale_factor

    # --- LoRA and saved weights ----------------------------------------------------------------
    def add_lora(self, rank: int, alpha: float, targets: Sequence[str]) -> None:
        """Attach a trainable LoRA adapter named ``default`` to the transformer (peft)."""
        from peft import LoraConfig

        self.transformer.add_adapter(
            LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))
        )

    @property
    def has_lora(self) -> bool:
        return bool(getattr(self.transformer, "_hf_peft_config_loaded", False))

    def load_weights(self, weights_dir: str | Path) -> dict:
        """Load RL weights written by ``save_policy_weights`` (a ``final/`` or ``checkpoints/step-N/``)."""
        from safetensors.torch import load_file

        folder = Path(weights_dir)
        meta = read_policy_meta(folder)
        if meta["kind"] == "lora" and not self.has_lora:
            self.add_lora(meta["lora"]["rank"], meta["lora"]["alpha"], meta["lora"]["targets"])
        state = load_file(str(folder / WEIGHTS_FILE), device=str(self.device))
        own = dict(self.transformer.named_parameters())
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise ValueError(f"{folder}: {len(unknown)} weights do not match this base model, e.g. {unknown[0]}")
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value.to(own[name].dtype))
        return meta

    # --- prompts -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str], max_sequence_length: int = 512) -> PromptEmbeds:
        """Encode prompts with the pipeline's ``encode_prompt``; each distinct prompt is encoded once.

        The cache is kept on the CPU; the returned batch is on the policy's device.
        """
        items = []
        for prompt in prompts:
            key = (prompt, max_sequence_length)
            if key not in self._prompt_cache:
                if self.pipe.text_encoder is None:
                    raise ValueError(f"prompt {prompt!r} is not cached and the text encoders were not loaded")
                embeds, pooled, text_ids = self.pipe.encode_prompt(
                    prompt=prompt, prompt_2=None, device=self.device, max_sequence_length=max_sequence_length
                )
                self._prompt_cache[key] = PromptEmbeds(
                    embeds.to("cpu", self.dtype), pooled.to("cpu", self.dtype), text_ids.to("cpu")
                )
            items.append(self._prompt_cache[key])
        stacked = PromptEmbeds.stack(items)
        return PromptEmbeds(*(t.to(self.device) for t in (stacked.prompt_embeds, stacked.pooled, stacked.text_ids)))

    def cache_prompt_embeds(self, prompt: str, max_sequence_length: int, embeds: PromptEmbeds) -> None:
        """Register precomputed embeddings (e.g. when the text encoders are not loaded); kept on the CPU."""
        self._prompt_cache[(prompt, max_sequence_length)] = PromptEmbeds(
            embeds.prompt_embeds.to("cpu", self.dtype), embeds.pooled.to("cpu", self.dtype), embeds.text_ids.cpu()
        )

    @property
    def has_text_encoders(self) -> bool:
        return self.pipe.text_encoder is not None or self.pipe.text_encoder_2 is not None

    def free_text_encoders(self) -> None:
        """Drop CLIP and T5 once every prompt is cached (T5-XXL alone is ~9.5 GB in bf16)."""
        self.pipe.text_encoder = None
        self.pipe.text_encoder_2 = None
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def prompt_embeds_from_disk(self, folder: str | Path, prompts: Sequence[str], max_sequence_length: int) -> list[str]:
        """Fill the cache from ``folder`` (written by ``prompt_embeds_to_disk``); returns the prompts not found."""
        from safetensors.torch import load_file

        missing = []
        for prompt in dict.fromkeys(prompts):
            path = Path(folder) / prompt_embeds_file(prompt, max_sequence_length)
            if (prompt, max_sequence_length) in self._prompt_cache:
                continue
            if not path.is_file():
                missing.append(prompt)
                continue
            t = load_file(str(path))
            self.cache_prompt_embeds(prompt, max_sequence_length, PromptEmbeds(t["prompt_embeds"], t["pooled"], t["text_ids"]))
        return missing

    def prompt_embeds_to_disk(self, folder: str | Path, prompts: Sequence[str], max_sequence_length: int) -> None:
        """Write the cached embeddings of ``prompts`` to ``folder``, one safetensors file per prompt hash
        (written beside and renamed, so a reader never sees half a file)."""
        from safetensors.torch import save_file

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for prompt in dict.fromkeys(prompts):
            path = root / prompt_embeds_file(prompt, max_sequence_length)
            if path.is_file():
                continue
            e = self._prompt_cache[(prompt, max_sequence_length)]
            tmp = path.with_name(path.name + ".tmp")
            save_file({"prompt_embeds": e.prompt_embeds.contiguous(), "pooled": e.pooled.contiguous(),
                       "text_ids": e.text_ids.contiguous()}, str(tmp))
            tmp.replace(path)

    # --- conditioning --------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_inputs(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator | None = None
    ) -> FillInputs:
        """Masked-image latents and packed mask exactly as FluxFillPipeline builds them.

        ``images`` are [B,3,H,W] in [0,1] and ``masks`` [B,1,H,W] (1 = region to edit). The masked
        image is VAE-encoded by sampling the posterior with ``generator`` like the pipeline does.
        """
        check_mask_matches(images, masks)
        height, width = images.shape[-2:]
        pipe = self.pipe
        init = pipe.image_processor.preprocess(images, height=height, width=width).to(torch.float32)
        mask = pipe.mask_processor.preprocess(masks, height=height, width=width)
        masked = (init * (1 - mask)).to(device=self.device, dtype=self.dtype)
        mask_packed, masked_latents = pipe.prepare_mask_latents(
            mask, masked, images.shape[0], self.latent_channels, 1, height, width, self.dtype, self.device, generator
        )
        img_ids = pipe._prepare_latent_image_ids(
            images.shape[0], height // self.vae_scale_factor // 2, width // self.vae_scale_factor // 2,
            self.device, self.dtype,
        )
        return FillInputs(torch.cat((masked_latents, mask_packed), dim=-1), img_ids, int(height), int(width))

    def initial_noise(self, batch: int, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        """Packed Gaussian noise [B, seq, 4C] (the σ=1 start of the flow)."""
        from diffusers.utils.torch_utils import randn_tensor

        h = 2 * (height // (self.vae_scale_factor * 2))
        w = 2 * (width // (self.vae_scale_factor * 2))
        noise = randn_tensor((batch, self.latent_channels, h, w), generator=generator, device=self.device, dtype=self.dtype)
        return self.pipe._pack_latents(noise, batch, self.latent_channels, h, w)

    def schedule(self, num_steps: int, height: int, width: int) -> Schedule:
        """The pipeline's schedule: linspace(1, 1/N) sigmas, resolution-dependent shift ``mu``."""
        from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift, retrieve_timesteps

        seq_len = (height // self.vae_scale_factor // 2) * (width // self.vae_scale_factor // 2)
        cfg = self.scheduler.config
        mu = calculate_shift(
            seq_len,
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
        timesteps, _ = retrieve_timesteps(self.scheduler, num_steps, self.device, sigmas=sigmas, mu=mu)
        return Schedule(timesteps.clone(), self.scheduler.sigmas.clone().to(self.device))

    # --- the model -----------------------------------------------------------------------------
    def velocity(
        self, latents: torch.Tensor, inputs: FillInputs, timestep: torch.Tensor, embeds: PromptEmbeds, guidance: float
    ) -> torch.Tensor:
        """One transformer call: v(x_t, t | masked image, mask, prompt). ``timestep`` is on the 0..1000 scale."""
        batch = latents.shape[0]
        guidance_t = None
        if self.transformer.config.guidance_embeds:
            guidance_t = torch.full([1], guidance, device=self.device, dtype=torch.float32).expand(batch)
        t = timestep.expand(batch).to(latents.dtype)
        return self.transformer(
            hidden_states=torch.cat((latents, inputs.cond), dim=2),
            timestep=t / 1000,
            guidance=guidance_t,
            pooled_projections=embeds.pooled,
            encoder_hidden_states=embeds.prompt_embeds,
            txt_ids=embeds.text_ids,
            img_ids=inputs.img_ids,
            return_dict=False,
        )[0]

    def guided_velocity(
        self,
        latents: torch.Tensor,
        inputs: FillInputs,
        timestep: torch.Tensor,
        embeds: PromptEmbeds,
        guidance: float,
        true_cfg: float = 1.0,
        negative: PromptEmbeds | None = None,
    ) -> torch.Tensor:
        """Velocity with optional true CFG: v_neg + s·(v_pos − v_neg), as FluxPipeline's ``true_cfg_scale``."""
        v = self.velocity(latents, inputs, timestep, embeds, guidance)
        if true_cfg > 1.0 and negative is not None:
            v_neg = self.velocity(latents, inputs, timestep, negative, guidance)
            v = v_neg + true_cfg * (v - v_neg)
        return v

    @staticmethod
    def euler_step(latents: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor):
        """``FlowMatchEulerDiscreteScheduler.step`` math (fp32 update, cast back), without its step counter."""
        return (latents.to(torch.float32) + (sigma_next - sigma) * velocity).to(velocity.dtype)

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        inputs: FillInputs,
        embeds: PromptEmbeds,
        schedule: Schedule,
        stop: int | None = None,
        guidance: float = 30.0,
        true_cfg: float = 1.0,
        negative: PromptEmbeds | None = None,
    ) -> torch.Tensor:
        """Run Euler steps 0..stop-1 (all by default) without gradient; returns x at sigma[stop]."""
        stop = schedule.num_steps if stop is None else stop
        for i in range(stop):
            v = self.guided_velocity(latents, inputs, schedule.timesteps[i], embeds, guidance, true_cfg, negative)
            latents = self.euler_step(latents, v, schedule.sigmas[i], schedule.sigmas[i + 1])
        return latents

    def decode(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Unpack, unscale and VAE-decode packed latents to images in [0,1] (keeps the autograd graph)."""
        unpacked = self.pipe._unpack_latents(latents, height, width, self.vae_scale_factor)
        unpacked = unpacked / self.vae.config.scaling_factor + self.vae.config.shift_factor
        image = self.vae.decode(unpacked.to(self.vae.dtype), return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)

    # --- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        prompts: Sequence[str],
        seed: int,
        steps: int = 28,
        guidance: float = 30.0,
        true_cfg: float = 1.0,
        negative_prompt: str = "",
        max_sequence_length: int = 512,
        use_pipeline: bool | None = None,
        paste_back: bool = False,
    ) -> torch.Tensor:
        """Fill ``masks`` of ``images`` conditioned on ``prompts`` (already task-resolved, see ``policy_prompt``).

        Without true CFG this calls the official ``FluxFillPipeline`` with our noise and cached prompt
        embeddings; with ``true_cfg > 1`` (not supported by FluxFillPipeline) it runs the same Euler
        loop itself, combining the positive and negative predictions. Returns [B,3,H,W] in [0,1];
        with ``paste_back`` the pixels outside the mask are the source's (``paste_back_source``).
        """
        out = self._generate(images, masks, prompts, seed, steps, guidance, true_cfg, negative_prompt,
                             max_sequence_length, use_pipeline)
        return paste_back_source(out, images, masks) if paste_back else out

    def _generate(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        prompts: Sequence[str],
        seed: int,
        steps: int,
        guidance: float,
        true_cfg: float,
        negative_prompt: str,
        max_sequence_length: int,
        use_pipeline: bool | None,
    ) -> torch.Tensor:
        check_mask_matches(images, masks)
        batch, height, width = images.shape[0], int(images.shape[-2]), int(images.shape[-1])
        if len(prompts) != batch:
            raise ValueError(f"got {len(prompts)} prompts for {batch} images")
        embeds = self.encode_prompts(prompts, max_sequence_length)
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = self.initial_noise(batch, height, width, generator)
        use_pipeline = true_cfg <= 1.0 if use_pipeline is None else use_pipeline
        if use_pipeline:
            if true_cfg > 1.0:
                raise ValueError("FluxFillPipeline has no true CFG; use use_pipeline=False")
            out = self.pipe(
                image=images.to(self.device),
                mask_image=masks.to(self.device),
                prompt_embeds=embeds.prompt_embeds,
                pooled_prompt_embeds=embeds.pooled,
                latents=noise,
                generator=generator,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                max_sequence_length=max_sequence_length,
                output_type="pt",
            )
            return out.images.float()
        # Same generator order as the pipeline: noise first, then the masked-image posterior sample.
        inputs = self.prepare_inputs(images.to(self.device), masks.to(self.device), generator)
        negative = self.encode_prompts([negative_prompt] * batch, max_sequence_length) if true_cfg > 1.0 else None
        schedule = self.schedule(steps, height, width)
        latents = self.denoise(noise, inputs, embeds, schedule, None, guidance, true_cfg, negative)
        return self.decode(latents, height, width)


def prompt_embeds_file(prompt: str, max_sequence_length: int) -> str:
    """The disk-cache file name of one prompt's embeddings: a hash of the text and the length."""
    import hashlib

    return hashlib.sha256(f"{max_sequence_length}\n{prompt}".encode()).hexdigest()[:32] + ".safetensors"


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """[3,H,W] in [0,1] → RGB PIL image."""
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def save_policy_weights(
    folder: str | Path,
    state: dict[str, torch.Tensor],
    *,
    base_policy: str,
    kind: str,
    lora: dict | None,
    which: str,
    step: int,
) -> Path:
    """Write ``policy.json`` + ``weights.safetensors`` (trainable tensors by parameter name)."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out / WEIGHTS_FILE))
    write_policy_card(out, base_policy=base_policy, kind=kind, lora=lora, weights=which, step=step)
    return out
