"""The baseline learner's settings (``rewardtrain.engine.baseline``), kept free of torch so the web
process can validate a request without importing it (rewardtrain.services starts baseline jobs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class BaselineConfig:
    """How the baseline learner trains. Defaults give CPU minutes on the demo snapshot.

    - ``image_size`` 64: the synthetic world's differences (blends, broken shapes, leftovers of a
      removed object) survive a 64 px thumbnail, and four 3x3 stride-2 convolutions reduce it to
      4x4; larger costs time quadratically for a reference learner.
    - ``channels`` 16: width of the first convolution (then 32, 32, 64): about 38k parameters,
      the scale of the reference learner (62k) that read consistency at 0.80–0.87 (issue #22).
    - ``max_steps`` 600 x ``batch_size`` 32 pairs: about ten epochs of a 2,000-pair train split,
      measured at 100 s on one loaded CPU thread (64 px, 2,600 pairs); early stopping may end sooner.
    - ``lr`` 2e-3 with AdamW and ``weight_decay`` 1e-2: a small network trains fast at this rate;
      decay and ``patience`` fight the overfitting seen in the VLM runs (train 0.29 vs 0.67 held out).
    - ``eval_every`` 50 and ``patience`` 5: validation every 50 steps; stop after 5 evaluations
      without a better validation loss and keep the best weights.
    - ``seed`` 0: the same snapshot and config give the same model.
    """

    image_size: int = 64
    channels: int = 16
    embed_dim: int = 16
    max_steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    eval_every: int = 50
    patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "embed_dim", "max_steps", "batch_size", "eval_every", "patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.image_size < 16:
            raise ValueError("image_size must be at least 16 (four stride-2 convolutions)")
        if not self.lr > 0:
            raise ValueError("lr must be positive")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineConfig:
        """Build from a dict, naming unknown keys (a typo must not silently use a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown baseline setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
