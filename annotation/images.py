"""Upload validation for images and masks: type, byte size, pixel bombs, binary masks."""
from __future__ import annotations

import hashlib
import io
import warnings

from django.conf import settings
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}


class ImageRejected(ValueError):
    """The file is not an acceptable image; the message says why, for a per-row report."""


def open_image(data: bytes, *, what: str = "image") -> Image.Image:
    """Decode ``data`` after checking format, byte size and pixel count (before decoding pixels)."""
    if len(data) > settings.UPLOAD_MAX_IMAGE_BYTES:
        raise ImageRejected(f"{what} is {len(data)} bytes; the limit is {settings.UPLOAD_MAX_IMAGE_BYTES}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            # Header only so far: refuse pixel bombs before anything is decoded.
            if img.width * img.height > settings.UPLOAD_MAX_IMAGE_PIXELS:
                raise ImageRejected(
                    f"{what} has {img.width}×{img.height} pixels; the limit is {settings.UPLOAD_MAX_IMAGE_PIXELS}."
                )
            if img.format not in ALLOWED_FORMATS:
                raise ImageRejected(f"{what} is {img.format}; use PNG, JPEG or WEBP.")
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageRejected(f"{what} is not a readable image ({exc.__class__.__name__}).") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"{what} looks like a decompression bomb.") from exc
    return img


def check_mask(mask: Image.Image, *, size: tuple[int, int]) -> Image.Image:
    """Return the mask as mode 'L' with values 0/255; reject other sizes or grey levels."""
    if mask.size != size:
        raise ImageRejected(f"mask is {mask.size[0]}×{mask.size[1]} but the image is {size[0]}×{size[1]}.")
    grey = mask.convert("L")
    levels = {value for _, value in grey.getcolors(maxcolors=256) or []}
    if not levels <= {0, 255}:
        raise ImageRejected("mask is not binary: use only black (keep) and white (edit).")
    if 255 not in levels:
        raise ImageRejected("mask is empty: mark the region to edit in white.")
    return grey


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
