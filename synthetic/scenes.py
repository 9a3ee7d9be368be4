"""Seeded, deterministic scene generator for the synthetic world.

Every scene is described by a JSON-serialisable ``meta`` dict (background parameters and the
objects drawn), and every image is a pure function of that dict: :func:`render_background` and
:func:`object_silhouette` re-render the exact pixels, which is what lets the oracles compare an
output with the background *without* the object, the object's exact silhouette, and so on.

Same ``(task, seed, size, with_prompt)`` → byte-identical images (no global RNG, no fonts that
depend on the host: the text uses Pillow's built-in bitmap font).
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from contracts.vocabulary import BUILTIN, EXTEND, REMOVAL

# The synthetic world draws the built-in tasks and its oracles judge the built-in criteria.
TASKS: tuple[str, ...] = BUILTIN.task_slugs
TASK_CRITERIA: dict[str, tuple[str, ...]] = BUILTIN.task_criteria
REMOVAL_PROMPT = BUILTIN.task(REMOVAL).fixed_prompt
EXTEND_FIXED_PROMPT = BUILTIN.task(EXTEND).fixed_prompt
DEFAULT_TASK_PROBS: dict[str, float] = {"fill": 0.5, "extend": 0.25, "removal": 0.25}

# Saturated, well-separated named colours (0..255). Backgrounds are pale and unsaturated, so a
# pixel's distance to these colours tells object from background (oracles rely on it).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "yellow": (240, 210, 30),
    "green": (40, 160, 60),
    "blue": (35, 75, 210),
    "purple": (130, 50, 170),
    "pink": (235, 95, 175),
    "cyan": (25, 185, 200),
}
TEXT_RGB: tuple[int, int, int] = (25, 25, 35)  # words are always near-black ink
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
WORDS: tuple[str, ...] = (
    "HI",
    "OK",
    "GO",
    "CAT",
    "DOG",
    "SUN",
    "SKY",
    "RED",
    "BOX",
    "CUP",
    "MAP",
    "TREE",
    "BIRD",
    "FISH",
    "STAR",
    "MOON",
    "BOAT",
    "LAMP",
    "WAVE",
    "HELLO",
    "APPLE",
    "CLOUD",
)
BACKGROUND_KINDS: tuple[str, ...] = ("gradient", "stripes", "checker", "noise")
MID_GREY = 128  # fill value for masked-out source pixels (they carry no information)
# Minimum RGB distance (0..1 scale) between an object's colour and the background under it,
# so objects stay separable from the background by colour alone.
MIN_OBJECT_CONTRAST = 0.45


@dataclass(frozen=True, eq=False)
class Condition:
    """One editing condition plus its ground truth.

    ``mask`` is mode 'L' with 255 = edit, 0 = keep. ``target`` is the ideal result. ``meta``
    holds everything needed to re-render the scene (see module docstring): ``background``,
    ``object`` (what the prompt asks for, or None), ``removed`` (removal only), ``context``
    (other objects kept as they are), ``size``, ``seed``, ``with_prompt`` and task specifics.
    """

    id: str
    task: str
    prompt: str
    source: Image.Image
    mask: Image.Image
    target: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_prompt(self) -> str:
        """The prompt a model/reward query should use (fixed prompts substituted)."""
        if self.task == "removal":
            return REMOVAL_PROMPT
        if self.task == "extend" and not self.prompt:
            return EXTEND_FIXED_PROMPT
        return self.prompt

    @property
    def criteria(self) -> tuple[str, ...]:
        """Criteria that apply to this condition (no text alignment for prompt-free extend)."""
        crits = TASK_CRITERIA[self.task]
        if self.task == "extend" and not self.prompt:
            crits = tuple(c for c in crits if not BUILTIN.criterion(c).uses_prompt)
        return crits


# ---------------------------------------------------------------------------------------------
# Rendering primitives (pure functions of meta dicts)
# ---------------------------------------------------------------------------------------------


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float [0,1] → uint8 with explicit rounding (deterministic across platforms)."""
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def render_background(bg: Mapping[str, Any], size: int) -> np.ndarray:
    """Render a background as float32 HxWx3 in [0, 1] from its parameter dict."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    ang = float(bg["angle"])
    proj = xx * np.cos(ang) + yy * np.sin(ang)
    t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-9)
    c0 = np.asarray(bg["c0"], dtype=np.float64)
    c1 = np.asarray(bg["c1"], dtype=np.float64)
    img = c0[None, None, :] * (1.0 - t[..., None]) + c1[None, None, :] * t[..., None]
    kind, amp = bg["kind"], float(bg.get("amp", 0.0))
    if kind == "stripes":
        phi, period = float(bg["stripe_angle"]), float(bg["period"])
        wave = np.sign(np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period))
        img = img + amp * wave[..., None]
    elif kind == "checker":
        cell = int(bg["cell"])
        board = ((xx.astype(int) // cell + yy.astype(int) // cell) % 2) * 2.0 - 1.0
        img = img + amp * board[..., None]
    elif kind == "noise":
        # Smooth value noise: a coarse random grid upsampled bicubically (deterministic in PIL).
        rng = np.random.default_rng(int(bg["noise_seed"]))
        grid = rng.integers(0, 256, size=(max(size // 8, 2), max(size // 8, 2)), dtype=np.uint8)
        up = np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))
        img = img + amp * ((up.astype(np.float64) / 255.0) * 2.0 - 1.0)[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=256)
def _word_glyph(word: str, scale: int) -> np.ndarray:
    """Bool glyph mask of ``word`` in the bitmap font, cropped to ink and scaled (nearest)."""
    font = ImageFont.load_default_imagefont()  # bitmap font: identical on every host
    left, top, right, bottom = font.getbbox(word)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), word, fill=255, font=font)
    ink = canvas.getbbox()
    assert ink is not None, word
    canvas = canvas.crop(ink)
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
    return np.asarray(canvas) > 127


def word_extent(word: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of a rendered word."""
    g = _word_glyph(word, scale)
    return g.shape[1], g.shape[0]


def object_silhouette(obj: Mapping[str, Any], size: int) -> np.ndarray:
    """Bool HxW silhouette of an object described by its meta dict."""
    out = np.zeros((size, size), dtype=bool)
    if obj["kind"] == "word":
        glyph = _word_glyph(obj["word"], int(obj["scale"]))
        x, y = obj["xy"]
        h, w = glyph.shape
        out[y : y + h, x : x + w] = glyph
        return out
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    cx, cy, r = float(obj["center"][0]), float(obj["center"][1]), float(obj["radius"])
    shape = obj["shape"]
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    if shape == "triangle":  # apex up, base width 2r at y = cy + r
        frac = (yy - (cy - r)) / (2 * r)
        return (yy <= cy + r) & (frac >= 0) & (np.abs(xx - cx) <= r * frac)
    raise ValueError(f"unknown shape {shape!r}")


def object_rgb(obj: Mapping[str, Any]) -> np.ndarray:
    """The object's colour as float [0,1] RGB."""
    return np.asarray(obj["rgb"], dtype=np.float32) / 255.0


def object_bbox(obj: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) box, x1/y1 exclusive, before clipping to the image."""
    if obj["kind"] == "word":
        w, h = word_extent(obj["word"], int(obj["scale"]))
        x, y = obj["xy"]
        return x, y, x + w, y + h
    cx, cy, r = obj["center"][0], obj["center"][1], obj["radius"]
    return int(np.floor(cx - r)), int(np.floor(cy - r)), int(np.ceil(cx + r)), int(np.ceil(cy + r))


def draw_objects(base: np.ndarray, objects: list[Mapping[str, Any]]) -> np.ndarray:
    """Composite objects (in order) onto a float background; returns a new array."""
    img = base.copy()
    for obj in objects:
        img[object_silhouette(obj, img.shape[0])] = object_rgb(obj)
    return img


def describe(obj: Mapping[str, Any]) -> str:
    """Natural-language name used in prompts: 'a red circle' or 'the word "CAT"'."""
    if obj["kind"] == "word":
        return f'the word "{obj["word"]}"'
    return f"a {obj['colour']} {obj['shape']}"


def render_scene(meta: Mapping[str, Any], *, include: tuple[str, ...] = ("context", "object")) -> np.ndarray:
    """Re-render a scene from meta: background plus the listed object groups."""
    size = int(meta["size"])
    img = render_background(meta["background"], size)
    objs: list[Mapping[str, Any]] = []
    for key in include:
        val = meta.get(key)
        if val is None:
            continue
        objs.extend(val if isinstance(val, list) else [val])
    return draw_objects(img, objs)


# ---------------------------------------------------------------------------------------------
# Random parameter sampling
# ---------------------------------------------------------------------------------------------


def _pale_colour(rng: np.random.Generator, hue: float | None = None) -> list[float]:
    h = float(rng.uniform(0, 1)) if hue is None else hue % 1.0
    s = float(rng.uniform(0.06, 0.22))
    v = float(rng.uniform(0.76, 0.92))
    return [round(c, 4) for c in colorsys.hsv_to_rgb(h, s, v)]


def sample_background(rng: np.random.Generator) -> dict[str, Any]:
    """Random pale background parameters (gradient plus a low-amplitude texture)."""
    kind = str(rng.choice(BACKGROUND_KINDS))
    hue = float(rng.uniform(0, 1))
    bg: dict[str, Any] = {
        "kind": kind,
        "c0": _pale_colour(rng, hue),
        "c1": _pale_colour(rng, hue + float(rng.uniform(-0.25, 0.25))),
        "angle": round(float(rng.uniform(0, 2 * np.pi)), 4),
        "amp": 0.0,
    }
    if kind == "stripes":
        bg.update(
            amp=round(float(rng.uniform(0.025, 0.045)), 4),
            period=int(rng.integers(8, 17)),
            stripe_angle=round(float(rng.choice([0.0, np.pi / 2, np.pi / 4, 3 * np.pi / 4])), 4),
        )
    elif kind == "checker":
        bg.update(amp=round(float(rng.uniform(0.02, 0.04)), 4), cell=int(rng.integers(8, 15)))
    elif kind == "noise":
        bg.update(amp=round(float(rng.uniform(0.03, 0.05)), 4), noise_seed=int(rng.integers(0, 2**31)))
    return bg


def _pick_colour(rng: np.random.Generator, bg_img: np.ndarray, region: tuple[int, int, int, int]) -> str:
    """A palette colour that contrasts with the background under ``region``."""
    x0, y0, x1, y1 = (max(v, 0) for v in region)
    patch = bg_img[y0:y1, x0:x1].reshape(-1, 3)
    names = list(PALETTE)
    rng.shuffle(names)
    for name in names:
        rgb = np.asarray(PALETTE[name], dtype=np.float32) / 255.0
        if patch.size == 0 or np.linalg.norm(patch - rgb, axis=1).min() >= MIN_OBJECT_CONTRAST:
            return name
    return "blue"  # pale backgrounds always contrast with blue; unreachable in practice


def _shape_obj(
    rng: np.random.Generator,
    bg_img: np.ndarray,
    cx: float,
    cy: float,
    r: float,
    avoid_colour: str | None = None,
) -> dict[str, Any]:
    box = (int(cx - r), int(cy - r), int(np.ceil(cx + r)), int(np.ceil(cy + r)))
    colour = _pick_colour(rng, bg_img, box)
    if colour == avoid_colour:
        colour = _pick_colour(rng, bg_img, box)
    return {
        "kind": "shape",
        "shape": str(rng.choice(SHAPES)),
        "colour": colour,
        "rgb": list(PALETTE[colour]),
        "center": [round(cx, 2), round(cy, 2)],
        "radius": round(r, 2),
    }


def _word_obj(rng: np.random.Generator, size: int, margin: int) -> dict[str, Any]:
    word = str(rng.choice(WORDS))
    scale = max(1, round(3 * size / 112))
    while scale > 1 and word_extent(word, scale)[0] > size - 2 * margin:
        scale -= 1  # long words shrink so they always fit with their margin
    w, h = word_extent(word, scale)
    x = int(rng.integers(margin, size - margin - w + 1))
    y = int(rng.integers(margin, size - margin - h + 1))
    return {
        "kind": "word",
        "word": word,
        "scale": scale,
        "xy": [x, y],
        "colour": "black",
        "rgb": list(TEXT_RGB),
    }


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    return [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius
    ]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a disk (numpy only; radii here are a few pixels)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy, dx in _disk_offsets(radius):
        out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a disk (outside the image counts as inside, so borders don't erode)."""
    return ~dilate(~mask, radius)


# ---------------------------------------------------------------------------------------------
# Task builders
# ---------------------------------------------------------------------------------------------


def _finish(
    cid: str,
    task: str,
    prompt: str,
    target: np.ndarray,
    mask: np.ndarray,
    source: np.ndarray,
    meta: dict[str, Any],
) -> Condition:
    return Condition(
        id=cid,
        task=task,
        prompt=prompt,
        source=Image.fromarray(to_uint8(source), "RGB"),
        mask=Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L"),
        target=Image.fromarray(to_uint8(target), "RGB"),
        meta=meta,
    )


def _grey_out(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[mask] = MID_GREY / 255.0
    return out


def _build_fill(rng: np.random.Generator, size: int, meta: dict[str, Any]) -> tuple:
    k = size / 112
    bg = render_background(meta["background"], size)
    pad = int(round(rng.integers(4, 9) * k))
    edge = pad + int(round(4 * k))  # keep the hole off the image border (seams need an outside)
    if rng.uniform() < 0.65:
        r = float(rng.uniform(13, 24)) * k
        cx = float(rng.uniform(edge + r, size - edge - r))
        cy = float(rng.uniform(edge + r, size - edge - r))
        obj = _shape_obj(rng, bg, cx, cy, r)
    else:
        obj = _word_obj(rng, size, edge)
    x0, y0, x1, y1 = object_bbox(obj)
    mask = np.zeros((size, size), dtype=bool)
    mask[max(y0 - pad, 0) : min(y1 + pad, size), max(x0 - pad, 0) : min(x1 + pad, size)] = True
    meta.update(object=obj, context=[], hole=[x0 - pad, y0 - pad, x1 + pad, y1 + pad])
    target = draw_objects(bg, [obj])
    return describe(obj), target, mask, _grey_out(target, mask)


def _build_extend(rng: np.random.Generator, size: int, meta: dict[str, Any], with_prompt: bool) -> tuple:
    k = size / 112
    bg = render_background(meta["background"], size)
    sides_all = ["left", "right", "top", "bottom"]
    n_sides = int(rng.integers(1, 5))
    sides = [str(s) for s in rng.permutation(sides_all)[:n_sides]]
    widths = {s: int(round(rng.integers(16, 29) * k)) for s in sides}
    if with_prompt:
        # The band that must hold the named object is at least 24 px, so the object is ≥16 px.
        widths[sides[0]] = max(widths[sides[0]], int(round(24 * k)))
    mask = np.zeros((size, size), dtype=bool)
    for s, w in widths.items():
        if s == "left":
            mask[:, :w] = True
        elif s == "right":
            mask[:, size - w :] = True
        elif s == "top":
            mask[:w, :] = True
        else:
            mask[size - w :, :] = True
    objects: list[dict[str, Any]] = []
    obj = None
    if with_prompt:
        side = sides[0]
        w = widths[side]
        r = max((w - 8 * k) / 2, 4.0)
        depth = w / 2  # centred in the band → ≥4 px from both band edges
        along = float(rng.uniform(size * 0.3, size * 0.7))
        cx, cy = {
            "left": (depth, along),
            "right": (size - depth, along),
            "top": (along, depth),
            "bottom": (along, size - depth),
        }[side]
        obj = _shape_obj(rng, bg, cx, cy, r)
        objects.append(obj)
        prompt = f"extend the scene with {describe(obj)} on the {side}"
        meta["side"] = side
    else:
        prompt = ""
    # A context object inside the kept region shows what the scene looks like.
    context: list[dict[str, Any]] = []
    inner = [
        widths.get("left", 0),
        widths.get("top", 0),
        size - widths.get("right", 0),
        size - widths.get("bottom", 0),
    ]
    room = min(inner[2] - inner[0], inner[3] - inner[1]) - 2 * int(6 * k)
    if rng.uniform() < 0.6 and room >= 20 * k:
        r = float(rng.uniform(8 * k, min(18 * k, room / 2)))
        m = 6 * k + r
        cx = float(rng.uniform(inner[0] + m, inner[2] - m))
        cy = float(rng.uniform(inner[1] + m, inner[3] - m))
        context.append(_shape_obj(rng, bg, cx, cy, r, avoid_colour=obj["colour"] if obj else None))
    meta.update(object=obj, context=context, bands=widths)
    target = draw_objects(bg, context + objects)
    return prompt, target, mask, _grey_out(target, mask)


def _build_removal(rng: np.random.Generator, size: int, meta: dict[str, Any]) -> tuple:
    k = size / 112
    bg = render_background(meta["background"], size)
    grow = int(round(rng.integers(3, 6) * k))
    edge = grow + int(round(3 * k))
    if rng.uniform() < 0.8:
        r = float(rng.uniform(12, 24)) * k
        cx = float(rng.uniform(edge + r, size - edge - r))
        cy = float(rng.uniform(edge + r, size - edge - r))
        removed = _shape_obj(rng, bg, cx, cy, r)
    else:
        removed = _word_obj(rng, size, edge)
    sil = object_silhouette(removed, size)
    mask = dilate(sil, grow)
    context: list[dict[str, Any]] = []
    if rng.uniform() < 0.5:  # a distractor that must survive: try a few spots clear of the mask
        keep_out = dilate(mask, int(round(4 * k)))
        for _ in range(20):
            r = float(rng.uniform(8, 16)) * k
            cx = float(rng.uniform(r + 2, size - r - 2))
            cy = float(rng.uniform(r + 2, size - r - 2))
            cand = _shape_obj(rng, bg, cx, cy, r)
            if not (object_silhouette(cand, size) & keep_out).any():
                context.append(cand)
                break
    meta.update(object=None, removed=removed, context=context, grow=grow)
    target = draw_objects(bg, context)
    source = draw_objects(target, [removed])
    return REMOVAL_PROMPT, target, mask, source


def condition_id(task: str, seed: int, size: int, with_prompt: bool) -> str:
    """Stable, filename-safe id; the same arguments always give the same id."""
    suffix = "-np" if task == "extend" and not with_prompt else ""
    return f"syn-{task}{suffix}-{size}-{seed}"


def make_condition(task: str, seed: int, size: int = 112, with_prompt: bool = True) -> Condition:
    """Generate one condition. ``with_prompt`` only matters for ``extend`` (prompt-free variant).

    ``size`` must be a multiple of 16 (latent packing) and ≥ 64; 112 and its multiples avoid
    resampling in the reward model.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if size % 16 or size < 64:
        raise ValueError("size must be a multiple of 16 and at least 64")
    rng = np.random.default_rng([int(seed) & (2**63 - 1), TASKS.index(task), size])
    meta: dict[str, Any] = {
        "seed": int(seed),
        "size": size,
        "task": task,
        "with_prompt": bool(with_prompt or task != "extend"),
        "background": sample_background(rng),
    }
    if task == "fill":
        prompt, target, mask, source = _build_fill(rng, size, meta)
    elif task == "extend":
        prompt, target, mask, source = _build_extend(rng, size, meta, with_prompt)
    else:
        prompt, target, mask, source = _build_removal(rng, size, meta)
    return _finish(condition_id(task, seed, size, with_prompt), task, prompt, target, mask, source, meta)


def _child_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")  # 48 bits: ids stay unique in practice


def make_conditions(
    n: int,
    task_probs: Mapping[str, float] | None = None,
    seed: int = 0,
    size: int = 112,
    prompt_free_fraction: float = 0.5,
) -> list[Condition]:
    """``n`` conditions with tasks drawn from ``task_probs`` (default: paper's 0.5/0.25/0.25).

    ``prompt_free_fraction`` of extend conditions get an empty prompt.
    """
    probs = dict(DEFAULT_TASK_PROBS if task_probs is None else task_probs)
    unknown = set(probs) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}")
    names = [t for t in TASKS if probs.get(t, 0) > 0]
    p = np.asarray([probs[t] for t in names], dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng(int(seed))
    out = []
    for i in range(n):
        task = names[int(rng.choice(len(names), p=p))]
        with_prompt = not (task == "extend" and rng.uniform() < prompt_free_fraction)
        out.append(make_condition(task, _child_seed(seed, i), size, with_prompt))
    return out
