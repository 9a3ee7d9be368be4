"""Pixel-computable oracle scores, one per criterion, in [0, 1] (higher = better).

Each oracle is a function of what the reward model is shown for that criterion, never of the
hidden ground truth (the world is *identifiable*): the output image, its edit region (the mask;
outside it the output is the source, pasted back), the scene's background model (pale gradient
plus low-amplitude texture, whose parameters the visible surround shows), and the prompt only for
text alignment. The ground-truth target and the requested object's exact size and position are
never read by a score (tests perturb them and require the same score). The target scores ≥ 0.9
on every criterion; each corruption in :func:`degrade` lowers mainly the criterion it is meant to
hit. Full rationale, with the table of what each criterion sees: ``docs/synthetic-world.md``.

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
    SHAPES,
    TASK_CRITERIA,
    dilate,
    draw_objects,
    erode,
    object_silhouette,
    render_scene,
    to_uint8,
    word_extent,
)

# Euclidean RGB distance (0..1 per channel) above which a pixel counts as "not background".
SILHOUETTE_THRESHOLD = 0.3
# Luminance below which a pixel counts as ink for words (text is ~0.1, backgrounds ≥ ~0.6).
INK_LUMINANCE = 0.4
SEAM_DEPTH = 3  # px either side of the mask border compared by the consistency oracle
SURROUND_BAND = 8  # px outside the border whose texture sets what change a seam may show
# Softness scales: the excess error at which a factor drops to exp(-1) ≈ 0.37.
SEAM_SCALE = 0.05
GRAD_SCALE = 0.02
HF_SCALE = 0.05
REMOVAL_SCALE = 0.06
# Area / bounding-box area of the canonical shapes (text alignment's presence floor).
SHAPE_FILL_RATIO = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
# The smallest object radius the world draws at 112 px (extend's narrowest object band).
MIN_OBJECT_RADIUS = 8.0

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
    """The background model: the scene without the requested/removed object (context objects,
    which sit outside the edit region, included). Its parameters are what the visible surround
    shows; inside the mask only its low-amplitude texture phase is not visible."""
    meta = condition.meta
    return render_scene(meta, include=("context",))


def requested_object(condition: Any) -> dict | None:
    """The object (shape or word) the condition's prompt asks for, if any."""
    return condition.meta.get("object")


# ---------------------------------------------------------------------------------------------
# criteria
# ---------------------------------------------------------------------------------------------


def object_pixels(out: np.ndarray, bg: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Colour-agnostic silhouette: pixels of ``region`` farther than 0.3 (RGB distance) from the
    background model. The background's texture amplitude is ≤ 0.05, so which texture phase the
    model assumes under the mask cannot move a pixel across the threshold."""
    return (np.linalg.norm(out - bg, axis=-1) > SILHOUETTE_THRESHOLD) & region


def fitted_shape(shape: str, found: np.ndarray) -> np.ndarray:
    """The canonical ``shape`` (circle, square, apex-up triangle: all with a square bounding box)
    centred on ``found``'s bounding box, its side the box's longer side: the intact object that
    the found pixels are a part, or a distortion, of."""
    ys, xs = np.nonzero(found)
    size = found.shape[0]
    if ys.size == 0:
        return np.zeros_like(found)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    centre = [(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2]
    return object_silhouette({"kind": "shape", "shape": shape, "center": centre, "radius": side / 2}, size)


def _box(region: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _centred_glyph(word: str, region: np.ndarray) -> np.ndarray:
    """The best-fitting placement of ``word``'s glyphs centred in ``region``'s bounding box, one
    per scale that fits; the fill task centres the word in its hole (the same margin on every
    side), so the prompt and the mask say where it belongs."""
    size = region.shape[0]
    y0, x0, y1, x1 = _box(region)
    out = []
    for scale in range(1, 5):
        w, h = word_extent(word, scale)
        if w > x1 - x0 or h > y1 - y0:
            break
        x, y = x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2
        out.append(object_silhouette({"kind": "word", "word": word, "scale": scale, "xy": [x, y]}, size))
    return out


def text_alignment(condition: Any, image: Any) -> float | None:
    """Is the object/word the prompt names present in the edit region?

    Reads the prompt (what it names), the output and the mask, nothing else: the object's size
    and position are not in the prompt, so they are not scored.

    * shapes: the pixels of the named colour inside the mask (``found``) against the named shape
      fitted to them (``fitted_shape``): tolerant F1 × (0.5 + 0.5 × shape match), the shape match
      comparing the found pixels' bounding-box fill ratio with the named shape's (square 1,
      circle 0.79, triangle 0.5), times a presence factor that reaches 1 at the smallest object
      the world draws (radius 8 px at 112). A wrong shape in the right colour gets partial
      credit (a square for a circle ~0.7), a wrong colour ~0, half an object ~0.67.
    * words: tolerant F1 between the ink in the mask and the word's glyphs centred in the hole
      (best scale).
    * prompt-free extend (no requested object): ``None`` — the criterion does not apply.
    """
    obj = requested_object(condition)
    if obj is None:
        return None
    size = int(condition.meta["size"])
    out = as_array(image, size)
    m = mask_array(condition)
    if not m.any():
        return 0.0
    if obj["kind"] == "word":
        found_ink = ink(out) & m
        return max((tolerant_f1(found_ink, g) for g in _centred_glyph(obj["word"], m)), default=0.0)
    found = colour_match(out, np.asarray(PALETTE[obj["colour"]], dtype=np.float32) / 255.0) & m
    if not found.any():
        return 0.0
    smallest = SHAPE_FILL_RATIO[obj["shape"]] * (2 * MIN_OBJECT_RADIUS * size / 112) ** 2
    presence = min(1.0, float(found.sum()) / smallest)
    ratio_match = max(0.0, 1.0 - abs(_fill_ratio(found) - SHAPE_FILL_RATIO[obj["shape"]]) / 0.5)
    return float(presence * tolerant_f1(found, fitted_shape(obj["shape"], found)) * (0.5 + 0.5 * ratio_match))


def shape_match(found: np.ndarray, expected: np.ndarray) -> float:
    """1 − |fill-ratio difference| / 0.5, floored at 0: how alike two silhouettes' shapes are."""
    return max(0.0, 1.0 - abs(_fill_ratio(found) - _fill_ratio(expected)) / 0.5)


def _shifted(img: np.ndarray, dy: int, dx: int, fill: Any) -> np.ndarray:
    """``img`` moved so that out[y, x] = img[y + dy, x + dx]; pixels from outside become ``fill``."""
    h, w = img.shape[:2]
    out = np.full_like(img, fill)
    out[max(0, -dy) : min(h, h - dy), max(0, -dx) : min(w, w - dx)] = img[
        max(0, dy) : min(h, h + dy), max(0, dx) : min(w, w + dx)
    ]
    return out


def _seam_differences(img: np.ndarray, m: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour change across the mask border, and how much change the visible surround allows.

    For each axis direction d and distance j = 1..depth, pair each mask pixel p with q = p + j·d
    when q is outside the mask: the seam is the mean |img(p) − img(q)|. The allowance for that
    direction and distance is read outside the mask only: the larger of the continuation
    |img(q) − img(q + j·d)| (a gradient's slope) and the 90th percentile of |Δ| over pixel pairs
    j apart in that direction within 8 px outside the border (a stripe or checker edge that may
    fall on the border). Returns per j the pair-weighted seam and allowance.
    """
    band = dilate(m, SURROUND_BAND) & ~m
    seam, allow = [], []
    for j in range(1, depth + 1):
        s_sum, a_sum, count = 0.0, 0.0, 0
        for dy, dx in ((0, j), (0, -j), (j, 0), (-j, 0)):
            q = _shifted(img, dy, dx, 0.0)
            q_out = _shifted(~m, dy, dx, False)
            r = _shifted(img, 2 * dy, 2 * dx, 0.0)
            r_out = _shifted(~m, 2 * dy, 2 * dx, False)
            sel = m & q_out
            if not sel.any():
                continue
            step = np.abs(img - q).mean(axis=-1)  # |img(x) − img(x + j·d)|
            pairs = band & q_out
            texture = float(np.quantile(step[pairs], 0.9)) if pairs.any() else 0.0
            cont = sel & r_out
            slope = float(np.abs(q - r).mean(axis=-1)[cont].mean()) if cont.any() else 0.0
            s_sum += float(step[sel].sum())
            a_sum += max(slope, texture) * int(sel.sum())
            count += int(sel.sum())
        seam.append(s_sum / count if count else 0.0)
        allow.append(a_sum / count if count else 0.0)
    return np.asarray(seam), np.asarray(allow)


def consistency(condition: Any, image: Any) -> float:
    """Colour/texture continuity across the mask border, judged against the visible surround.

    Compares pixel pairs straddling the border at distances 1..3 (inside vs outside) with the
    change the visible surround allows over the same distance and direction (its slope, and
    the edges of its stripes or checks), so gradients and stripes are not punished: score = exp(−mean excess / 0.05). Seams,
    colour casts and offset content inside the hole lower it; a smooth continuation does not.
    Reads only the output and the mask (outside the mask the output is the source).
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    seam, ref = _seam_differences(out, mask_array(condition), SEAM_DEPTH)
    return float(np.exp(-np.maximum(seam - ref, 0).mean() / SEAM_SCALE))


def _grad_agreement(out: np.ndarray, tgt: np.ndarray, region: np.ndarray) -> float:
    """exp(−mean |∇ low-pass(out) − ∇ low-pass(reference)| / scale) over ``region``."""
    if not region.any():
        return 1.0
    lo, lt = box_blur(out, 5), box_blur(tgt, 5)
    err = 0.0
    for axis in (0, 1):
        d = np.abs(np.diff(lo, axis=axis) - np.diff(lt, axis=axis)).mean(axis=-1)
        r = region[:-1, :] & region[1:, :] if axis == 0 else region[:, :-1] & region[:, 1:]
        err += float(d[r].mean()) if r.any() else 0.0
    return float(np.exp(-(err / 2) / GRAD_SCALE))


def border_ring(m: np.ndarray, width: int) -> np.ndarray:
    """Mask pixels within ``width`` px of a kept (unmasked) pixel; the image edge is no border."""
    return m & dilate(~m, width)


def ink_integrity(found: np.ndarray) -> float:
    """Share of ``found`` pixels with at least 3 of their 8 neighbours found (clean strokes)."""
    nb = sum(np.roll(np.roll(found, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - found
    return float((nb[found] >= 3).mean())


def object_integrity(found: np.ndarray, out: np.ndarray, m: np.ndarray) -> float:
    """How intact the object in the edit region is, whatever the prompt asked for.

    * ink (words: most found pixels dark): share of found pixels with at least 3 of their 8
      neighbours found — glyph strokes are ≥ 2 px wide blocks, grain and speckle are not;
    * a shape: tolerant F1 against the best-fitting canonical shape (``fitted_shape``), so a cut,
      sheared, doubled or ragged shape loses and any whole shape keeps 1.

    Times (1 − the share of the hole's 2-px border ring that is object-like): objects in this
    world keep ≥ 4 px from the border of their hole, so content that runs into the border is an
    object cut by (or smeared over) the edit region. Nothing found: 1 (no geometry to distort).
    """
    ring = border_ring(m, int(round(2 * m.shape[0] / 112)) or 1)
    bleed = float((found & ring).sum() / max(ring.sum(), 1))
    if not found.any():
        return 1.0
    if float(ink(out)[found].mean()) >= 0.5:
        geo = ink_integrity(found)
    else:
        geo = max(tolerant_f1(found, fitted_shape(shape, found)) for shape in SHAPES)
    return geo * (1.0 - bleed)


def structure(condition: Any, image: Any) -> float:
    """Clean, undistorted geometry in the edit region, judged on the object that is there.

    Silhouettes are colour-agnostic (``object_pixels``). 70 %: ``object_integrity`` of the
    output's silhouette in the mask (the prompt, which this criterion does not see, names no
    shape here). 30 %: agreement of the output's low-pass gradient field with the background
    model's away from the object (stripes keep direction and period, gradients keep slope).
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    bg = background(condition)
    m = mask_array(condition)
    found = object_pixels(out, bg, m)
    region = m & ~dilate(found, 3)
    return float(0.7 * object_integrity(found, out, m) + 0.3 * _grad_agreement(out, bg, region))


def _hf_energy(img: np.ndarray, region: np.ndarray, k: int) -> float:
    return float(np.abs(img - box_blur(img, k)).mean(axis=-1)[region].mean())


def clean_rendering(out: np.ndarray, bg: np.ndarray, m: np.ndarray) -> np.ndarray:
    """What the output's own content would look like drawn cleanly: the background model with
    the object-like pixels in the mask set to their median colour, sharp-edged. Aesthetics
    compares the output with it, so it judges how the content is drawn, not what it is."""
    found = object_pixels(out, bg, m)
    ref = np.where(m[..., None], bg, out)
    if found.any():
        ref[found] = np.median(out[found], axis=0)
    return ref


def aesthetics(condition: Any, image: Any) -> float:
    """Absence of noise, blur, blotches and clipping in the edit region.

    High-frequency energy |x − box_k(x)| at two scales (k = 3 catches grain and blur, k = 9
    catches blotches) is compared with that of a clean rendering of the output's own content
    (``clean_rendering``): extra energy (grain, blotches) costs fully, missing energy (blur,
    soft edges) half: exp(−Σ penalty / 0.05). Colour clipping (channels at 0 or 255 beyond the
    clean rendering's share) is a multiplicative penalty.
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    m = mask_array(condition)
    if not m.any():
        return 1.0
    ref = clean_rendering(out, background(condition), m)
    dev = 0.0
    for k in (3, 9):
        d = _hf_energy(out, m, k) - _hf_energy(ref, m, k)
        # Extra energy (grain, blotches) costs fully; missing energy (blur, flat fills) half.
        dev += d if d > 0 else -0.5 * d
    clipped_o = float(((out <= 0.01) | (out >= 0.99)).any(axis=-1)[m].mean())
    clipped_t = float(((ref <= 0.01) | (ref >= 0.99)).any(axis=-1)[m].mean())
    clip_pen = max(0.0, 1.0 - 3.0 * max(0.0, clipped_o - clipped_t))
    return float(np.exp(-dev / HF_SCALE) * clip_pen)


def removal_quality(condition: Any, image: Any) -> float:
    """No trace of the removed object; the hole matches the background.

    distance = mean RGB distance (/√3) between the low-passed output and the low-passed
    background model inside the mask (low-pass forgives texture phase, not colour); residue =
    share of the hole's core (the mask eroded by 3 px, about the object's footprint: the mask is
    its silhouette grown by 3–5 px) that is still object-like (``object_pixels``). score =
    exp(−distance / 0.06) × (1 − residue). Reads only the output, the mask and the background
    model: which object was removed is not scored, only that nothing is left.
    """
    size = int(condition.meta["size"])
    out = as_array(image, size)
    bg = background(condition)
    m = mask_array(condition)
    if not m.any():
        return 1.0
    dist = float((np.linalg.norm(box_blur(out, 5) - box_blur(bg, 5), axis=-1) / np.sqrt(3))[m].mean())
    core = erode(m, int(round(3 * size / 112)))
    core = core if core.any() else m
    residue = float(object_pixels(out, bg, core).sum() / core.sum())
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
