import pytest
import torch

from policytrain.engine.onestep import one_step_images, sample_grad_step
from policytrain.engine.pipeline import FillPolicy, predict_x0

from .conftest import center_brightness


def _setup(policy, n=2, size=64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.zeros(n, 1, size, size)
    masks[..., 16:48, 16:48] = 1
    inputs = policy.prepare_inputs(images, masks, g)
    embeds = policy.encode_prompts(["a red cat"] * n, 16)
    noise = policy.initial_noise(n, size, size, g)
    return inputs, embeds, noise


def test_x0_identity_matches_scheduler(tiny_flux):
    policy = FillPolicy.from_pretrained(tiny_flux)
    inputs, embeds, noise = _setup(policy)
    schedule = policy.schedule(4, 64, 64)
    scheduler = policy.scheduler  # schedule() set its timesteps for the same N and shift
    latents = noise
    for i, t in enumerate(scheduler.timesteps):
        v = policy.velocity(latents, inputs, t, embeds, 30.0)
        stepped = scheduler.step(v, t, latents, return_dict=False)[0]
        assert torch.equal(stepped, policy.euler_step(latents, v, schedule.sigmas[i], schedule.sigmas[i + 1]))
        if i == len(scheduler.timesteps) - 1:
            # The final scheduler step goes to σ=0: exactly the one-step x0 prediction from x_k.
            assert torch.allclose(predict_x0(latents, v, schedule.sigmas[i]), stepped, atol=1e-6)
        latents = stepped
    # The identity inverts the flow's forward process x_t = (1-σ)x0 + σε (scheduler.scale_noise) for v = ε − x0.
    x0 = torch.randn(2, 16, 32)
    eps = torch.randn(2, 16, 32)
    t = scheduler.timesteps[1:2]
    x_t = scheduler.scale_noise(x0, t, eps)
    assert torch.allclose(predict_x0(x_t, eps - x0, schedule.sigmas[1]), x0, atol=1e-5)


def test_gradients_reach_only_lora_and_weights_change(tiny_flux):
    policy = FillPolicy.from_pretrained(tiny_flux)
    torch.manual_seed(0)
    policy.add_lora(4, 4, ["to_q", "to_k", "to_v", "to_out.0"])
    trainable = {n: p for n, p in policy.transformer.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    inputs, embeds, noise = _setup(policy)
    out = one_step_images(policy, inputs, embeds, noise, policy.schedule(4, 64, 64), 2, 30.0)
    assert out.images.shape == (2, 3, 64, 64)
    assert out.images.min() >= 0
    assert out.images.max() <= 1
    loss = -center_brightness(out.images, None, "fill", "x", []).mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    frozen = [n for n, p in policy.transformer.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen == []
    assert all(p.grad is None for p in policy.vae.parameters())
    torch.optim.SGD(trainable.values(), lr=1.0).step()
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())


@pytest.mark.parametrize(("steps", "t_range", "allowed"), [(10, (0.5, 0.9), range(5, 10)), (4, (0.0, 0.0), [0]),
                                                           (3, (0.9, 0.99), [2])])
def test_grad_step_range(steps, t_range, allowed):
    g = torch.Generator().manual_seed(0)
    draws = {sample_grad_step(g, steps, t_range) for _ in range(200)}
    assert draws <= set(allowed)
    assert len(draws) == len(allowed)
