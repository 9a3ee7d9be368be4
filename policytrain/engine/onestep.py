"""The ReFL-style one-step policy image of OneReward (arXiv 2508.21066, Sec. 4.4, Algorithm 1).

The policy denoises without gradient from pure noise down to step k, then makes ONE grad-enabled
transformer call; the rectified-flow identity x0 = x_k − σ_k·v turns that velocity into a clean
latent, which is decoded by the VAE with gradient so the reward can backpropagate to the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .pipeline import FillInputs, FillPolicy, PromptEmbeds, Schedule, predict_x0


@dataclass
class OneStepOutput:
    images: torch.Tensor  # [B,3,H,W] in [0,1], differentiable w.r.t. the trainable weights
    x0: torch.Tensor  # packed latent prediction
    x_k: torch.Tensor  # the no-grad latent the grad-enabled call started from
    velocity: torch.Tensor  # that call's output (what a velocity anchor compares)
    k: int
    sigma: float


def sample_grad_step(generator: torch.Generator, num_steps: int, t_range: tuple[float, float]) -> int:
    """Draw k ~ U{ceil(t1·N) .. floor(t2·N)} (clipped to 0..N-1): how many no-grad steps come first."""
    lo = min(num_steps - 1, math.ceil(t_range[0] * num_steps))
    hi = min(num_steps - 1, max(lo, math.floor(t_range[1] * num_steps)))
    return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())


def one_step_images(
    policy: FillPolicy,
    inputs: FillInputs,
    embeds: PromptEmbeds,
    noise: torch.Tensor,
    schedule: Schedule,
    k: int,
    guidance: float,
) -> OneStepOutput:
    """No-grad rollout to step k, one grad-enabled velocity, x0 = x_k − σ_k·v, differentiable decode."""
    with torch.no_grad():
        x_k = policy.denoise(noise, inputs, embeds, schedule, stop=k, guidance=guidance)
    velocity = policy.velocity(x_k, inputs, schedule.timesteps[k], embeds, guidance)
    sigma = schedule.sigmas[k]
    # fp32 for the extrapolation: in bf16, σ·v loses precision exactly where the reward looks (details).
    x0 = predict_x0(x_k.float(), velocity.float(), sigma)
    images = policy.decode(x0, inputs.height, inputs.width)
    return OneStepOutput(images=images, x0=x0, x_k=x_k, velocity=velocity, k=k, sigma=float(sigma))
