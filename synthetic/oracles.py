"""Pixel-computable oracle scores, one per criterion, in [0, 1] (higher = better).

Each oracle compares an output image with what the condition asked for, using the exact
re-rendered scene pieces from ``condition.meta`` (background without objects, the requested
object's silhouette and colour). The ground-truth target scores 1.0 (≥ 0.9 is tested) on every
criterion; each corruption in :func:`degrade` lowers mainly the criterion it is meant to hit.
Full rationale: ``docs/synthetic-world.md``.

Images may be PIL images or float HxWx3 arrays in [0, 1]; outputs of another size are resized
(bilinear) to the condition's size first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from synthetic.scenes import (
    MID_GREY,
    PALETTE,
    TASK_CRITERIA,
    dilate,
    draw_objects,
    object_rgb,
    object_silhouette,
    render_scene,
    to_uint8,
)

# Euclidean RGB distance (0..1 per channel) above which a pixel counts as "not background".
SILHOUETTE_THRESHOLD = 0.3
# Luminance below which a pixel counts as ink for words (text is ~0.1, backgrounds ≥ ~0.6).
INK_LUMINANCE = 0.4
SEAM_DEPTH = 3  # px either side of the mask border compared by the consistency oracle
# Softness scales: the excess error at which a factor drops to exp(-1) ≈ 0.37.
SEAM_SCALE = 0.05
GRAD_SCALE = 0.02
HF_SCALE = 0.05
REMOVAL_SCALE = 0.06

_PALETTE_F = {k: np.asarray(v, dtype=np.float32) / 255.0 for k, v in PALETTE.items()}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def as_array(image: Any, size: int | None = None) -> np.ndarray:
    """PIL image or float array → float32 HxWx3 in [0, 1], resized to ``size`` if given."""
    if isinstance(image, Image.Image):
        img = image.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.float32) / 255.0
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))  # CHW → HWC
    if arr.max(initial=0.0) > 1.5:  # uint8-valued arrays
        arr = arr / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    if size is not None and arr.shape[:2] != (size, size):
        return as_array(Image.fromarray(to_uint8(arr), "RGB"), size)
    return arr


def mask_array(condition: Any) -> np.ndarray:
    """Bool HxW edit region (white = edit)."""
    return np.asarray(condition.mask.convert("L")) > 127


def box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """Mean filter with an odd window ``k`` and edge padding (via cumulative sums)."""
    r = k // 2
    pad = [(r, r), (r, r)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img.astype(np.float64), pad, mode="edge")
    c = np.cumsum(np.cumsum(p, axis=0), axis=1)
    c = np.pad(c, [(1, 0), (1, 0)] + [(0, 0)] * (img.ndim - 2))
    h, w = img.shape[:2]
    s = c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]
    return (s / (k * k)).astype(np.float32)


def colour_match(img: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Pixels close to a named colour: within 45% of the distance to its nearest palette rival.

    The margin keeps neighbouring palette colours apart, so a blue object never counts as
    purple; it is capped at 0.2 so pale backgrounds never match.
    """
    return np.linalg.norm(img - rgb, axis=-1) < colour_threshold(rgb)


def colour_threshold(rgb: np.ndarray) -> float:
    """The RGB distance under which ``colour_match`` counts a pixel as the colour ``rgb``."""
    rivals = [np.linalg.norm(rgb - c) for c in _PALETTE_F.values() if np.linalg.norm(rgb - c) > 1e-3]
    return float(min(0.2, 0.45 * min(rivals))) if rivals else 0.2


def ink(img: np.ndarray) -> np.ndarray:
    """Dark (text) pixels by luminance."""
    lum = img @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return lum < INK_LUMINANCE


def tolerant_f1(pred: np.ndarray, ref: np.ndarray, tol: int = 1) -> float:
    """IoU-like agreement of two silhouettes, forgiving ``tol``-pixel edge shifts.

    precision = share of predicted pixels within ``tol`` of the reference, recall = share of
    reference pixels within ``tol`` of the prediction; the result is their harmonic mean.
    """
    if not pred.any() and not ref.any():
        return 1.0
    if not pred.any() or not ref.any():
        return 0.0
    precision = float((pred & dilate(ref, tol)).sum() / pred.sum())
    recall = float((ref & dilate(pred, tol)).sum() / ref.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _fill_ratio(sil: np.ndarray) -> float:
    """Area / bounding-box area: 1.0 square, ~0.79 circle, ~0.5 triangle."""
    ys, xs = np.nonzero(sil)
    if ys.size == 0:
        return 0.0
    return float(sil.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))


def background(condition: Any) -> np.ndarray:
    """Target without the requested/removed object (context objects included)."""
    meta = condition.meta
    return render_scene(meta, include=("context",))


def requested_object(condition: Any) -> dict | None:
    """The object (shape or word) the condition's prompt asks for, if any."""
    return condition.meta.get("object")


# ---------------------------------------------------------------------------------------------
# criteria
# ---------------------------------------------------------------------------------------------


def text_alignment(condition: Any, image: Any) -> float | None:
    """Is the object/word the prompt names present in the edit region?

    * shapes: colour presence × shape match. Colour presence = min/max ratio between the area
      of named-colour pixels inside the mask and the expected object area (missing or
      oversized objects both lose). Shape match compares the bounding-box fill ratio of those
      pixels with the requested shape's (square 1.0, circle 0.79, triangle 0.5);
      TA = presence × (0.5 + 0.5 × shape match), so a right-colour wrong-shape object gets
      partial credit and a wrong colour gets ~0.
    * words: tolerant F1 between the ink pixels in the mask and the word's glyph mask.
    * prompt-free extend (no requested object): ``None`` — the criterion does not apply.
    """
    obj = requested_object(condition)
    if obj is None:
        return None
    size = int(condition.meta["size"])
    out = as_array(image, size)
    m = mask_array(condition)
    sil = object_silhouette(obj, size) & m
    if obj["kind"] == "word":
        return tolerant_f1(ink(out) & m, sil)
    found = colour_match(out, object_rgb(obj)) & m
    a_found, a_exp = float(found.sum()), float(sil.sum())
    if a_found == 0 or a_exp == 0:
        return 0.0
    presence = min(a_found, a_exp) / max(a_found, a_exp)
    return float(presence * (0.5 + 0.5 * shape_match(found, sil)))


def shape_match(found: np.ndarray, expected: np.ndarray) -> float:
    """1 − |fill-ratio difference| / 0.5, floored at 0: how alike two silhouettes' shapes are."""
    return max(0.0, 1.0 - abs(_fill_ratio(found) - _fill_ratio(expected)) / 0.5)


def _seam_differences(img: np.ndarray, m: np.ndarray, depth: int) -> np.ndarray:
    """Mean |inside − outside| colour difference for pixel pairs straddling the mask border.

    For each axis direction and distance j = 1..depth, pair each mask pixel p with p + j·d
    when that pixel is outside the mask. Returns one value per j.
    """
    h, w = m.shape
    res = []
    for j in range(1, depth + 1):
        diffs, count = 0.0, 0
        for dy, dx in ((0, j), (0, -j), (j, 0), (-j, 0)):
            ys0, ys1 = max(0, -dy), min(h, h - dy)
            xs0, xs1 = max(0, -dx), min(w, w - dx)
            p_in = m[ys0:ys1, xs0:xs1]
            q_out = ~m[ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx]
            sel = p_in & q_out
            if sel.any():
                a = img[ys0:ys1, xs0:xs1][sel]
                b = img[ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx][sel]
                diffs += float(np.abs(a - b).mean(axis=1).sum())
                count += int(sel.sum())
        res.append(diffs / count if count else 0.0)
    return np.asarray(res)


def consistency(condition: Any, image: Any) -> float:
    """Colour/texture continuity across the mask border.

    Compares pixel pairs straddling the border at distances 1..3 (inside vs outside). Natural
    change across the border (gradients, stripes) is measured on the target and subtracted, so
    only *excess* discontinuity is penalised: score = exp(−mean excess / 0.05). Seams, colour
    casts and offset content inside the hole lower it; a smooth continuation does not.
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    tgt = as_array(condition.target, size)
    m = mask_array(condition)
    excess = np.maximum(_seam_differences(out, m, SEAM_DEPTH) - _seam_differences(tgt, m, SEAM_DEPTH), 0)
    return float(np.exp(-excess.mean() / SEAM_SCALE))


def _grad_agreement(out: np.ndarray, tgt: np.ndarray, region: np.ndarray) -> float:
    """exp(−mean |∇ low-pass(out) − ∇ low-pass(target)| / scale) over ``region``."""
    if not region.any():
        return 1.0
    lo, lt = box_blur(out, 5), box_blur(tgt, 5)
    err = 0.0
    for axis in (0, 1):
        d = np.abs(np.diff(lo, axis=axis) - np.diff(lt, axis=axis)).mean(axis=-1)
        r = region[:-1, :] & region[1:, :] if axis == 0 else region[:, :-1] & region[:, 1:]
        err += float(d[r].mean()) if r.any() else 0.0
    return float(np.exp(-(err / 2) / GRAD_SCALE))


def structure(condition: Any, image: Any) -> float:
    """Clean, undistorted geometry in the edit region.

    Silhouettes are colour-agnostic: pixels farther than 0.3 (RGB distance) from the scene's
    background. 70 %: tolerant F1 of the output's silhouette vs the target's inside the mask
    (for an empty region: 1 − share of spurious silhouette pixels). 30 %: agreement of the
    low-pass gradient field with the target's away from the object (stripes keep direction and
    period, gradients keep slope).
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    tgt = as_array(condition.target, size)
    bg = background(condition)
    m = mask_array(condition)
    sil_out = (np.linalg.norm(out - bg, axis=-1) > SILHOUETTE_THRESHOLD) & m
    sil_tgt = (np.linalg.norm(tgt - bg, axis=-1) > SILHOUETTE_THRESHOLD) & m
    if sil_tgt.any():
        geo = tolerant_f1(sil_out, sil_tgt)
    else:
        geo = 1.0 - float(sil_out.sum() / max(m.sum(), 1))
    region = m & ~dilate(sil_tgt, 3)
    return float(0.7 * geo + 0.3 * _grad_agreement(out, tgt, region))


def _hf_energy(img: np.ndarray, region: np.ndarray, k: int) -> float:
    return float(np.abs(img - box_blur(img, k)).mean(axis=-1)[region].mean())


def aesthetics(condition: Any, image: Any) -> float:
    """Absence of noise, blur, blotches and clipping in the edit region.

    High-frequency energy |x − box_k(x)| at two scales (k = 3 catches grain and blur, k = 9
    catches blotches) is compared with the target's: extra energy (grain, blotches) costs fully,
    missing energy (blur, flat patches) half: exp(−Σ penalty / 0.05). Colour clipping (channels
    at 0 or 255 beyond the target's share) is a multiplicative penalty.
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    tgt = as_array(condition.target, size)
    m = mask_array(condition)
    if not m.any():
        return 1.0
    dev = 0.0
    for k in (3, 9):
        d = _hf_energy(out, m, k) - _hf_energy(tgt, m, k)
        # Extra energy (grain, blotches) costs fully; missing energy (blur, flat fills) half.
        dev += d if d > 0 else -0.5 * d
    clipped_o = float(((out <= 0.01) | (out >= 0.99)).any(axis=-1)[m].mean())
    clipped_t = float(((tgt <= 0.01) | (tgt >= 0.99)).any(axis=-1)[m].mean())
    clip_pen = max(0.0, 1.0 - 3.0 * max(0.0, clipped_o - clipped_t))
    return float(np.exp(-dev / HF_SCALE) * clip_pen)


def removal_quality(condition: Any, image: Any) -> float:
    """No trace of the removed object; the hole matches the background.

    distance = mean RGB distance (/√3) between low-pass output and low-pass target inside the
    mask (low-pass forgives texture phase, not colour); residue = share of the object's
    silhouette still in the object's colour (ink for words). score = exp(−distance / 0.06) ×
    (1 − residue).
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    tgt = as_array(condition.target, size)
    m = mask_array(condition)
    removed = condition.meta.get("removed")
    dist = float((np.linalg.norm(box_blur(out, 5) - box_blur(tgt, 5), axis=-1) / np.sqrt(3))[m].mean())
    residue = 0.0
    if removed is not None:
        sil = object_silhouette(removed, size)
        like = ink(out) if removed["kind"] == "word" else colour_match(out, object_rgb(removed))
        # Only count pixels the target doesn't already have in that colour (context objects).
        like &= ~(ink(tgt) if removed["kind"] == "word" else colour_match(tgt, object_rgb(removed)))
        residue = float((like & sil).sum() / max(sil.sum(), 1))
    return float(np.exp(-dist / REMOVAL_SCALE) * (1.0 - residue))


ORACLES = {
    "text_alignment": text_alignment,
    "consistency": consistency,
    "structure": structure,
    "aesthetics": aesthetics,
    "removal_quality": removal_quality,
}


def score(condition: Any, image: Any, criterion: str) -> float | None:
    """Oracle score of ``image`` for one criterion; None if it does not apply."""
    if criterion not in TASK_CRITERIA[condition.task]:
        raise ValueError(f"criterion {criterion!r} does not apply to task {condition.task!r}")
    return ORACLES[criterion](condition, image)


def score_all(condition: Any, image: Any) -> dict[str, float]:
    """Scores for every criterion that applies to the condition's task (None ones dropped)."""
    out = {}
    for crit in TASK_CRITERIA[condition.task]:
        val = ORACLES[crit](condition, image)
        if val is not None:
            out[crit] = val
    return out


def mean_score(condition: Any, image: Any) -> float:
    """Unweighted mean over the applicable criteria (the demo's 'oracle win' quantity)."""
    scores = score_all(condition, image)
    return float(np.mean(list(scores.values())))


# ---------------------------------------------------------------------------------------------
# degradations: candidate-like imperfect outputs
# ---------------------------------------------------------------------------------------------

DEGRADATIONS: tuple[str, ...] = (
    "noise",
    "blur",
    "colour_shift",
    "partial_object",
    "residue",
    "seam_offset",
    "wrong_colour",
    "blank",
)


def _gaussian_blur(img: np.ndarray, radius: float) -> np.ndarray:
    from PIL import ImageFilter  # local: only degrade() needs it

    if radius <= 0:
        return img
    pil = Image.fromarray(to_uint8(img), "RGB").filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(pil, dtype=np.float32) / 255.0


def _half_plane(size: int, strength: float, rng: np.random.Generator, sil: np.ndarray) -> np.ndarray:
    """A random half-plane cutting off ≈ ``strength`` of ``sil``'s pixels."""
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    proj = xx * np.cos(ang) + yy * np.sin(ang)
    vals = proj[sil]
    if vals.size == 0 or strength <= 0:
        return np.zeros((size, size), dtype=bool)
    thr = np.quantile(vals, 1.0 - min(strength, 1.0))
    return proj >= thr if strength < 1 else np.ones((size, size), dtype=bool)


def degrade(
    condition: Any, strength: float, kind: str | None = None, rng: np.random.Generator | None = None
) -> Image.Image:
    """An imperfect, candidate-like output made from the target.

    ``strength`` in [0, 1] (0 → the target itself). Kinds (``kind=None`` picks one at random):

    * ``noise``: Gaussian noise σ = 0.15·s in the mask;
    * ``blur``: Gaussian blur radius 3·s in the mask;
    * ``colour_shift``: a random colour cast of magnitude 0.3·s in the mask;
    * ``partial_object``: a share s of the requested object replaced by background (for removal
      the removed object is partly left instead, like ``residue``; with no object: colour shift);
    * ``residue``: removal → the removed object blended back with alpha s; fill/extend → the
      masked (mid-grey) source blended in with alpha s;
    * ``seam_offset``: the hole content shifted by round(6·s) px (a misregistered fill);
    * ``wrong_colour``: the object recoloured towards another palette colour by s;
    * ``blank``: the hole blended towards mid-grey (the untouched source) by s.

    Pixels outside the mask stay as in the target, mirroring a pipeline that pastes the
    unmasked region back.
    """
    rng = np.random.default_rng() if rng is None else rng
    kind = str(rng.choice(DEGRADATIONS)) if kind is None else kind
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}")
    s = float(np.clip(strength, 0.0, 1.0))
    meta = condition.meta
    size = int(meta["size"])
    tgt = as_array(condition.target, size)
    m = mask_array(condition)
    obj: dict | None = meta.get("removed") if condition.task == "removal" else meta.get("object")
    out = tgt.copy()

    if kind == "partial_object" and condition.task == "removal":
        kind = "residue"
    if kind in ("partial_object", "wrong_colour") and obj is None:
        kind = "colour_shift"

    if kind == "noise":
        out = tgt + rng.normal(0.0, 0.15 * s, size=tgt.shape).astype(np.float32)
    elif kind == "blur":
        out = _gaussian_blur(tgt, 3.0 * s)
    elif kind == "colour_shift":
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        out = tgt + (0.3 * s * direction).astype(np.float32)
    elif kind == "partial_object":
        assert obj is not None
        sil = object_silhouette(obj, size)
        cut = _half_plane(size, s, rng, sil) & sil
        out[cut] = background(condition)[cut]
    elif kind == "residue":
        if condition.task == "removal" and obj is not None:
            with_obj = draw_objects(tgt, [obj])
            out = (1 - s) * tgt + s * with_obj
        else:
            out = (1 - s) * tgt + s * (MID_GREY / 255.0)
    elif kind == "seam_offset":
        shift = int(round(6 * s))
        dy, dx = (shift, 0) if rng.uniform() < 0.5 else (0, shift)
        if rng.uniform() < 0.5:
            dy, dx = -dy, -dx
        out = np.roll(tgt, (dy, dx), axis=(0, 1))
    elif kind == "wrong_colour":
        assert obj is not None
        sil = object_silhouette(obj, size)
        others = [c for c in _PALETTE_F if c != obj.get("colour")]
        other = _PALETTE_F[str(rng.choice(others))]
        out[sil] = (1 - s) * tgt[sil] + s * other
    elif kind == "blank":
        out = (1 - s) * tgt + s * (MID_GREY / 255.0)

    result = np.where(m[..., None], np.clip(out, 0.0, 1.0), tgt)
    return Image.fromarray(to_uint8(result), "RGB")


__all__ = [
    "DEGRADATIONS",
    "ORACLES",
    "aesthetics",
    "consistency",
    "degrade",
    "mean_score",
    "removal_quality",
    "score",
    "score_all",
    "structure",
    "text_alignment",
]
