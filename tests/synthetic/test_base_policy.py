"""The pre-trained base fill policy of the synthetic world (synthetic/base_policy.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from synthetic.conditions import write_conditions_folder  # noqa: E402
from synthetic.scenes import make_conditions  # noqa: E402


def test_pretrain_reduces_the_loss_writes_a_loadable_pipeline_and_caches(tmp_path):
    from policytrain.engine.pipeline import FillPolicy
    from synthetic.base_policy import PretrainConfig, pretrain

    torch.set_num_threads(1)
    conds = make_conditions(24, seed=2, size=64)
    write_conditions_folder(conds, tmp_path / "conds")
    config = PretrainConfig(
        conditions_dir=str(tmp_path / "conds"), output_dir=str(tmp_path / "pre"), resolution=64,
        vae_steps=6, vae_batch_size=4, steps=40, batch_size=8, lr=3e-3, log_every=10,
    )
    events = []
    result = pretrain(config, progress=events.append)
    assert not result["cached"]
    losses = [e["loss"] for e in events if e.get("phase") == "transformer"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    policy = FillPolicy.from_pretrained(result["final_dir"])
    # The posterior variance is pinned, so encoding the masked image is deterministic.
    assert policy.vae.encoder.conv_out.bias[16:].max().item() <= -19
    src = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    out = policy.generate(src, mask, ["a red circle"], seed=0, steps=2, max_sequence_length=32)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    again = pretrain(config)
    assert again["cached"] and again["config_hash"] == result["config_hash"]
    changed = pretrain(config.replace(steps=10, vae_steps=0, output_dir=str(tmp_path / "pre2")))
    assert not changed["cached"] and changed["config_hash"] != result["config_hash"]


def test_pretrain_with_a_4x_vae_and_crops_builds_a_matching_fill_model(tmp_path):
    """3 VAE levels (4× down-sampling, the demo's base) give a Fill transformer with 8·16 + 4·4² = 192
    input channels that the pipeline loads, checks and samples at full resolution; VAE crops work."""
    from policytrain.engine.pipeline import FillPolicy
    from synthetic.base_policy import PretrainConfig, config_hash, pretrain

    torch.set_num_threads(1)
    conds = make_conditions(12, seed=3, size=64)
    write_conditions_folder(conds, tmp_path / "conds")
    config = PretrainConfig(
        conditions_dir=str(tmp_path / "conds"), output_dir=str(tmp_path / "pre"), resolution=64,
        vae_block_out_channels=(16, 32, 32), vae_crop=32, vae_steps=4, vae_batch_size=4, steps=6, batch_size=4,
        log_every=2,
    )
    result = pretrain(config)
    policy = FillPolicy.from_pretrained(result["final_dir"])
    assert policy.vae_scale_factor == 4
    assert policy.transformer.config.in_channels == 192 and policy.transformer.config.out_channels == 64
    src = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 8:40, 8:40] = 1
    out = policy.generate(src, mask, ["a red circle"], seed=0, steps=2, max_sequence_length=32)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    # An unset crop leaves the hash of older configs (and their caches) unchanged.
    assert config_hash(config) != config_hash(config.replace(vae_crop=None))
    with pytest.raises(ValueError, match="vae_crop"):
        PretrainConfig(conditions_dir="c", output_dir="o", vae_block_out_channels=(16, 32, 32), vae_crop=30)
    with pytest.raises(ValueError, match="levels"):
        PretrainConfig(conditions_dir="c", output_dir="o", vae_block_out_channels=(16, 32))


def test_pretrain_cache_key_follows_the_tiny_build(tmp_path, monkeypatch):
    from policytrain.engine import tiny
    from synthetic.base_policy import PretrainConfig, config_hash

    config = PretrainConfig(conditions_dir=str(tmp_path), output_dir=str(tmp_path / "o"))
    # A given base policy is not built here: its hash does not depend on the tiny build.
    given = config.replace(base_policy="/models/flux-fill")
    before, given_before = config_hash(config), config_hash(given)
    monkeypatch.setattr(tiny, "TINY_BUILD_VERSION", tiny.TINY_BUILD_VERSION + 1)
    assert config_hash(config) != before
    assert config_hash(given) == given_before
