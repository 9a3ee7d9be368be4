"""Mixed precision: a bf16 full fine-tune keeps fp32 master weights and fp32 AdamW moments.

Why this matters: at the paper's lr (1e-6) an AdamW step is far below the spacing of a bf16 weight
(~1e-4 at magnitude 0.02), so AdamW run directly on bf16 weights rounds almost every update away.
With fp32 masters and bf16 compute, the update must match an all-fp32 run up to the noise that
bf16 arithmetic adds to the gradients.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardtrain.engine.train import SHARDED_WEIGHTS, train

from .test_train import _torchrun

pytestmark = pytest.mark.slow  # full fine-tunes, one under torchrun: the full suite runs it, `make check` does not


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


def _deltas(base: dict[str, torch.Tensor], final: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The starting point in the run's own storage dtype, so a bf16-stored run is not credited with
    # the rounding of its start.
    assert base.keys() == final.keys()
    return {k: final[k].double() - base[k].to(final[k].dtype).double() for k in base}


def _norm(deltas: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((d * d).sum() for d in deltas.values())))


def test_bf16_full_finetune_moves_weights_like_fp32(base_config, tmp_path):
    cfg = base_config.replace(lora=False, full_finetune=True, lr=1e-6, max_steps=10, lr_scheduler="constant",
                              weight_decay=0.0, save_every=5, keep_checkpoints=1)
    base = _weights(Path(cfg.base_model))
    train(cfg.replace(dtype="float32", output_dir=str(tmp_path / "fp32")))
    train(cfg.replace(dtype="bfloat16", output_dir=str(tmp_path / "bf16")))
    d32 = _deltas(base, _weights(tmp_path / "fp32" / "final"))
    final16 = _weights(tmp_path / "bf16" / "final")
    d16 = _deltas(base, final16)

    total32, total16 = _norm(d32), _norm(d16)
    ratios = {k: float(d16[k].norm() / d32[k].norm()) for k in d32 if d32[k].norm() > 0}
    moved16 = sum(int((d != 0).sum()) for d in d16.values()) / sum(d.numel() for d in d16.values())
    moved32 = sum(int((d != 0).sum()) for d in d32.values()) / sum(d.numel() for d in d32.values())
    worst = min(ratios, key=lambda k: min(ratios[k], 1 / max(ratios[k], 1e-12)))
    print(f"\nupdate norm fp32 {total32:.4e}  bf16 {total16:.4e}  ratio {total16 / total32:.3f}; "
          f"share of weights moved fp32 {moved32:.3f} bf16 {moved16:.3f}; "
          f"per-tensor ratio min {min(ratios.values()):.3f} max {max(ratios.values()):.3f} (worst {worst})")

    assert total32 > 0
    assert abs(total16 / total32 - 1) < 0.5
    off = {k: round(r, 3) for k, r in ratios.items() if abs(r - 1) >= 0.5}
    assert not off, f"per-tensor update norms off by >= 50 % in bf16: {off}"
    # Same direction, not just the same size: bf16 only perturbs the gradients.
    dot = sum((d16[k] * d32[k]).sum() for k in d32)
    assert float(dot) / (total16 * total32) > 0.9

    # What is stored keeps the fp32 masters: final/, the checkpoint's weights and AdamW's moments.
    assert {t.dtype for t in final16.values()} == {torch.float32}
    ckpt = tmp_path / "bf16" / "checkpoints" / "step-5"
    assert {t.dtype for t in _weights(ckpt).values()} == {torch.float32}
    moments = torch.load(ckpt / "optimizer.pt", weights_only=True)["state"]
    assert moments and {s["exp_avg"].dtype for s in moments.values()} == {torch.float32}


def test_fsdp_bf16_full_finetune_keeps_fp32_sharded_masters(base_config, tmp_path):
    """Under FSDP2 the bf16 run shards fp32 weights (MixedPrecisionPolicy: bf16 all-gather and
    compute, fp32 gradient reduction): its update matches a one-process fp32 run, and its
    checkpoint holds fp32 weights and AdamW moments."""
    cfg = base_config.replace(lora=False, full_finetune=True, lr=1e-6, max_steps=4, lr_scheduler="constant",
                              weight_decay=0.0, save_every=2, keep_checkpoints=1)
    base = _weights(Path(cfg.base_model))
    train(cfg.replace(dtype="float32", output_dir=str(tmp_path / "fp32")))
    sharded = _torchrun(cfg.replace(dtype="bfloat16", parallelism="fsdp", output_dir=str(tmp_path / "fsdp")),
                        tmp_path, "fsdp")
    d32 = _deltas(base, _weights(tmp_path / "fp32" / "final"))
    d16 = _deltas(base, _weights(sharded / "final"))
    total32, total16 = _norm(d32), _norm(d16)
    cosine = float(sum((d16[k] * d32[k]).sum() for k in d32)) / (total16 * total32)
    print(f"\nFSDP bf16 vs 1-process fp32: update norm ratio {total16 / total32:.3f}, cosine {cosine:.3f}")
    assert abs(total16 / total32 - 1) < 0.5 and cosine > 0.9
    ckpt = sharded / "checkpoints" / "step-2"
    assert {t.dtype for t in load_file(ckpt / SHARDED_WEIGHTS).values()} == {torch.float32}
    moments = torch.load(ckpt / "optimizer.pt", weights_only=True)["state"]
    assert moments and {s["exp_avg"].dtype for s in moments.values()} == {torch.float32}


def test_final_dtype_exports_a_bf16_copy_while_checkpoints_keep_fp32(base_config, tmp_path):
    cfg = base_config.replace(lora=False, full_finetune=True, lr=1e-6, max_steps=2, save_every=1,
                              dtype="bfloat16", final_dtype="bfloat16")
    train(cfg)
    out = Path(cfg.output_dir)
    assert {t.dtype for t in _weights(out / "final").values()} == {torch.bfloat16}
    assert {t.dtype for t in _weights(out / "checkpoints" / "step-1").values()} == {torch.float32}


def test_config_refuses_fp16_full_finetune_and_unknown_final_dtype(base_config):
    with pytest.raises(ValueError, match="float16 with full_finetune needs loss scaling"):
        base_config.replace(lora=False, full_finetune=True, dtype="float16")
    with pytest.raises(ValueError, match="final_dtype must be null or one of"):
        base_config.replace(final_dtype="int8")
    assert base_config.replace(lora=False, full_finetune=True, dtype="bfloat16").weight_dtype() == torch.float32
    assert base_config.replace(dtype="bfloat16").weight_dtype() == torch.bfloat16  # LoRA: the frozen base
