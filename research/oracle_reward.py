"""A reward that is right by construction: differentiable (torch) ports of the oracles, for RL.

Diagnostic only, like ``research.probes rm … --oracle-labels``: ``research.probes rl …
--reward=oracle`` drives RL with these in place of the reward model, to measure what the RL
machinery does with a reward that ranks images as the oracle does (an upper bound for a reward
model), never to train a demo policy. The ports, checked against ``synthetic.oracles`` in
``research/tests/test_oracle_reward.py``:

- ``consistency``: exact (the seam differences are sums of absolute differences over fixed pixels;
  the surround's allowance is read from the source, which RL's images equal outside the mask);
- ``aesthetics``: exact except the colour-clipping factor, which has no useful gradient (the clean
  rendering it compares with comes from the detached image);
- ``removal_quality``: the low-pass distance factor; the residue share (a threshold) is left out;
- ``structure``: soft silhouettes (a sigmoid around the threshold) with a 3×3-tolerant F1 against
  the canonical shape that best fits the detached image's object (words: the hard integrity), times
  the soft share of the hole's border ring left clear, plus the exact gradient-agreement term;
- ``text_alignment``: for shapes, soft colour-matched pixels: presence × F1 against the named shape
  fitted to the hard match × its fill-ratio factor (a bounding box has no useful gradient, so the
  fit scales the reward but does not pull); for words, the soft-ink tolerant F1 against the glyphs
  centred in the hole.

``oracle_reward_fn(..., text_alignment=False)`` leaves text alignment out: its reward is then a
constant above the hinge ceiling, so it neither pulls nor adds gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synthetic import oracles
from synthetic.scenes import PALETTE, SHAPES, Condition, dilate

DIFFERENTIABLE_CRITERIA = ("text_alignment", "consistency", "structure", "aesthetics", "removal_quality")
#: 1: the ports as first written. 2 (ADR 0021): removal keeps the oracle's residue share as a soft
#: share, and structure pulls a blob smaller than an object towards nothing (the oracle's "no object
#: is intact") instead of growing it into a shape, which RL on extend exploited under version 1.
PORT_VERSIONS = (1, 2)
#: Softness of the silhouette, colour and ink thresholds (RGB distance or luminance) in the ports.
SILHOUETTE_SOFTNESS = 0.03
LUMA = (0.299, 0.587, 0.114)


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """``oracles.box_blur`` for a [3, H, W] tensor (mean filter, edge padding)."""
    r = k // 2
    return F.avg_pool2d(F.pad(x[None], (r, r, r, r), mode="replicate"), k, stride=1)[0]


def seam_differences(img: torch.Tensor, m: torch.Tensor, depth: int = oracles.SEAM_DEPTH) -> torch.Tensor:
    """The seam half of ``oracles._seam_differences`` for a [3, H, W] tensor and a bool [H, W]
    mask (the allowance is read outside the mask, where RL's images are the source: a constant)."""
    h, w = m.shape
    out = []
    for j in range(1, depth + 1):
        total, count = img.new_zeros(()), 0
        for dy, dx in ((0, j), (0, -j), (j, 0), (-j, 0)):
            ys0, ys1 = max(0, -dy), min(h, h - dy)
            xs0, xs1 = max(0, -dx), min(w, w - dx)
            sel = m[ys0:ys1, xs0:xs1] & ~m[ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx]
            if sel.any():
                a = img[:, ys0:ys1, xs0:xs1][:, sel]
                b = img[:, ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx][:, sel]
                total = total + (a - b).abs().mean(0).sum()
                count += int(sel.sum())
        out.append(total / count if count else img.new_zeros(()))
    return torch.stack(out)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().permute(1, 2, 0).cpu().numpy().astype(np.float32)


class DifferentiableOracle:
    """The oracles of one condition as functions of a [3, H, W] image in [0, 1] (H = W = its size).

    Like the oracles, they read only what the reward model is shown: the image, the mask, the
    background model and (text alignment) the prompt. Parts of a score that depend on the image
    through a hard decision (which shape fits, the clean rendering, the ring of the hole) are
    taken from the detached image: they set the reference, the soft parts pull towards it.
    """

    def __init__(self, condition: Condition, version: int = 1):
        if version not in PORT_VERSIONS:
            raise ValueError(f"port version must be one of {PORT_VERSIONS}, got {version!r}")
        self.version = version
        size = int(condition.meta["size"])
        mask = oracles.mask_array(condition)
        background = oracles.background(condition)
        self.size = size
        self.mask_np = mask
        self.background_np = np.asarray(background, dtype=np.float32)
        self.mask = torch.from_numpy(mask)
        self.background = torch.from_numpy(self.background_np).permute(2, 0, 1)
        self.ring = torch.from_numpy(oracles.border_ring(mask, int(round(2 * size / 112)) or 1)).float()
        core = oracles.erode(mask, int(round(3 * size / 112)))
        self._core = torch.from_numpy(core if core.any() else mask)
        # Outside the mask RL's images are the source, so the surround's allowance is a constant.
        self._allowance = torch.from_numpy(
            oracles._seam_differences(oracles.as_array(condition.source, size), mask, oracles.SEAM_DEPTH)[1]
        ).float()
        self.requested = oracles.requested_object(condition)
        if self.requested is not None:
            if self.requested["kind"] == "word":
                self.glyphs = [torch.from_numpy(g).float() for g in oracles._centred_glyph(self.requested["word"], mask)]
            else:
                rgb = np.asarray(PALETTE[self.requested["colour"]], dtype=np.float32) / 255.0
                self.requested_rgb = torch.from_numpy(rgb)[:, None, None]
                self.colour_threshold = oracles.colour_threshold(rgb)

    def __call__(self, criterion: str, image: torch.Tensor) -> torch.Tensor:
        if criterion not in DIFFERENTIABLE_CRITERIA:
            raise ValueError(f"no differentiable oracle for {criterion!r}")
        return getattr(self, criterion)(image)

    def _hf_energy(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return (x - box_blur(x, k)).abs().mean(0)[self.mask].mean()

    def consistency(self, x: torch.Tensor) -> torch.Tensor:
        excess = (seam_differences(x, self.mask) - self._allowance).clamp(min=0)
        return torch.exp(-excess.mean() / oracles.SEAM_SCALE)

    def aesthetics(self, x: torch.Tensor) -> torch.Tensor:
        reference = oracles.clean_rendering(_numpy(x), self.background_np, self.mask_np)
        ref = torch.from_numpy(np.ascontiguousarray(reference)).permute(2, 0, 1).to(x.dtype)
        dev = x.new_zeros(())
        for k in (3, 9):
            d = self._hf_energy(x, k) - self._hf_energy(ref, k)
            dev = dev + torch.where(d > 0, d, -0.5 * d)  # extra energy costs fully, missing energy half
        return torch.exp(-dev / oracles.HF_SCALE)

    def removal_quality(self, x: torch.Tensor) -> torch.Tensor:
        dist = ((box_blur(x, 5) - box_blur(self.background, 5)).norm(dim=0) / math.sqrt(3))[self.mask].mean()
        score = torch.exp(-dist / oracles.REMOVAL_SCALE)
        if self.version == 1:
            return score
        # v2: the oracle's residue share (object-like pixels left in the hole's core) as a soft share.
        soft = torch.sigmoid(((x - self.background).norm(dim=0) - oracles.SILHOUETTE_THRESHOLD) / SILHOUETTE_SOFTNESS)
        return score * (1 - soft[self._core].mean())

    def _soft_positive(self, margin: torch.Tensor) -> torch.Tensor:
        """A soft ``margin > 0`` per pixel, inside the mask (0 outside)."""
        return torch.sigmoid(margin / SILHOUETTE_SOFTNESS) * self.mask.float()

    def text_alignment(self, x: torch.Tensor) -> torch.Tensor:
        if self.requested is None:
            raise ValueError("text alignment does not apply: the condition requests no object")
        if self.requested["kind"] == "word":
            luminance = (x * x.new_tensor(LUMA)[:, None, None]).sum(0)
            soft = self._soft_positive(oracles.INK_LUMINANCE - luminance)
            return torch.stack([soft_f1(soft, g) for g in self.glyphs]).max() if self.glyphs else x.new_zeros(())
        distance = (x - self.requested_rgb).norm(dim=0)
        hard = ((distance < self.colour_threshold) & self.mask).detach().cpu().numpy()
        shape = self.requested["shape"]
        soft = self._soft_positive(self.colour_threshold - distance)
        smallest = oracles.SHAPE_FILL_RATIO[shape] * (2 * oracles.MIN_OBJECT_RADIUS * self.size / 112) ** 2
        presence = (soft.sum() / smallest).clamp(max=1.0)
        if not hard.any():
            # The oracle says 0 here; the soft presence alone (a shape not yet judged: ½) still
            # pulls towards the named colour, so RL is not stranded on a flat reward.
            return 0.5 * presence
        fitted = torch.from_numpy(oracles.fitted_shape(shape, hard)).float()
        ratio = max(0.0, 1.0 - abs(oracles._fill_ratio(hard) - oracles.SHAPE_FILL_RATIO[shape]) / 0.5)
        return presence * soft_f1(soft, fitted) * (0.5 + 0.5 * ratio)

    def structure(self, x: torch.Tensor) -> torch.Tensor:
        soft = self._soft_positive((x - self.background).norm(dim=0) - oracles.SILHOUETTE_THRESHOLD)
        out = _numpy(x)
        hard = oracles.object_pixels(out, self.background_np, self.mask_np)
        bleed = (soft * self.ring).sum() / self.ring.sum().clamp(min=1)
        if not hard.any():
            geometry = 1 - bleed
        elif float(oracles.ink(out)[hard].mean()) >= 0.5:
            geometry = oracles.ink_integrity(hard) * (1 - bleed)
        else:
            fits = [(oracles.tolerant_f1(hard, oracles.fitted_shape(s, hard)), s) for s in SHAPES]
            best = torch.from_numpy(oracles.fitted_shape(max(fits)[1], hard)).float()
            geometry = soft_f1(soft, best) * (1 - bleed)
            if self.version >= 2:
                # v2: the oracle scores "no object" as intact (1), so a blob too small to be an
                # object is pulled towards nothing rather than grown into a shape: the shape term
                # counts in proportion to the blob's presence (its soft area over the smallest object's).
                smallest = (2 * oracles.MIN_OBJECT_RADIUS * self.size / 112) ** 2 * min(oracles.SHAPE_FILL_RATIO.values())
                presence = (soft.sum() / smallest).clamp(max=1.0)
                geometry = 1 - presence * (1 - geometry)
        flat = torch.from_numpy(self.mask_np & ~dilate(hard, 3))
        if not flat.any():
            return 0.7 * geometry + 0.3
        low_out, low_bg = box_blur(x, 5), box_blur(self.background, 5)
        err = x.new_zeros(())
        for axis in (1, 2):
            d = (torch.diff(low_out, dim=axis) - torch.diff(low_bg, dim=axis)).abs().mean(0)
            region = flat[:-1, :] & flat[1:, :] if axis == 1 else flat[:, :-1] & flat[:, 1:]
            if region.any():
                err = err + d[region].mean()
        return 0.7 * geometry + 0.3 * torch.exp(-(err / 2) / oracles.GRAD_SCALE)


def soft_f1(soft: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``oracles.tolerant_f1`` for a soft silhouette against a hard one (3×3 tolerance)."""
    if reference.sum() == 0:
        return soft.new_zeros(())
    near_reference = F.max_pool2d(reference[None, None], 3, 1, 1)[0, 0]
    near_soft = F.max_pool2d(soft[None, None], 3, 1, 1)[0, 0]
    precision = (soft * near_reference).sum() / soft.sum().clamp(min=1e-6)
    recall = (reference * near_soft).sum() / reference.sum()
    return 2 * precision * recall / (precision + recall).clamp(min=1e-6)


RewardFn = Callable[[torch.Tensor, torch.Tensor, str, str, Sequence[str]], torch.Tensor]


def wrong_way(condition_index: int, criterion: str, share: float, seed: int = 0) -> bool:
    """Whether ``oracle_reward_fn(wrong_share=share)`` reverses this (condition, criterion): a fixed
    draw per pair, so about ``share`` of them are reversed for the whole run."""
    if share <= 0:
        return False
    key = [seed, condition_index, DIFFERENTIABLE_CRITERIA.index(criterion)]
    return bool(np.random.default_rng(key).random() < share)


def oracle_reward_fn(conditions: Sequence[Condition], sources: torch.Tensor, masks: torch.Tensor,
                     temperature: float = 0.02, text_alignment: bool = True,
                     constant_reward: float = 3.0, wrong_share: float = 0.0, seed: int = 0,
                     version: int = 1) -> RewardFn:
    """An RL ``reward_fn`` (``policytrain.engine.rl.train``) returning log-odds
    (oracle(first) − oracle(second)) / ``temperature`` per image pair.

    ``sources`` [N, 3, H, W] and ``masks`` [N, 1, H, W] are the RL conditions as the RL loop loads
    them, in the order of ``conditions``. RL pastes the source back outside the mask, so an image's
    condition is the one whose source it equals there. With ``text_alignment`` False that criterion
    returns ``constant_reward`` (above the default hinge ceiling logit(0.9) ≈ 2.2: no pull).

    ``wrong_share`` models a reward model with systematic errors: for that share of the
    (condition, criterion) pairs (``wrong_way``) the reward is reversed for the whole run, so it
    ranks pairs with accuracy about 1 − ``wrong_share`` and pulls the wrong way there.
    """
    if not 0.0 <= wrong_share <= 1.0:
        raise ValueError(f"wrong_share must be in [0, 1], got {wrong_share}")
    keep = 1 - masks
    cache: dict[int, DifferentiableOracle] = {}

    def condition_of(image: torch.Tensor) -> int:
        gap = (((image.detach()[None] - sources) ** 2) * keep).flatten(1).sum(1)
        return int(torch.argmin(gap))

    def reward(first: torch.Tensor, second: torch.Tensor, task: str, criterion: str,
               prompts: Sequence[str]) -> torch.Tensor:
        if criterion == "text_alignment" and not text_alignment:
            return torch.full((first.shape[0],), constant_reward)
        out = []
        for a, b in zip(first, second, strict=True):
            i = condition_of(a)
            oracle = cache.setdefault(i, DifferentiableOracle(conditions[i], version))
            sign = -1.0 if wrong_way(i, criterion, wrong_share, seed) else 1.0
            out.append(sign * (oracle(criterion, a.float()) - oracle(criterion, b.float().detach())) / temperature)
        return torch.stack(out)

    return reward

