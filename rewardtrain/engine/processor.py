"""Image-only Qwen2.5-VL processor that works without torchvision.

transformers 5.x builds the stock Qwen2.5-VL processor from a torchvision-backed image processor
and a video processor. torchvision is not usable with the CPU torch wheel on our machines
(importing it fails with `operator torchvision::nms does not exist`), and `AutoProcessor`
silently returns just the tokenizer for folders it cannot resolve. So we assemble the processor
from its parts: the tokenizer (left padding, so the answer logit is always at position -1), the
PIL-backed image processor, and a subclass that passes ``video_processor=None``. The same loader
reads our tiny folders and real hub-layout folders.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoImageProcessor, AutoTokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 - mirrors the transformers class name
    """`Qwen2_5_VLProcessor` without a video processor (images and text only)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


def load_processor(
    path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None
) -> ImageOnlyQwen2_5_VLProcessor:
    """Load the tokenizer and PIL image processor from `path` and wrap them in the image-only processor.

    `min_pixels`/`max_pixels` (pixel counts, though stored as `size.shortest_edge`/`longest_edge`)
    override the folder's token budget so training, evaluation and the differentiable scorer all
    see the same image resolution.
    """
    path = str(path)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    overrides = {}
    if min_pixels is not None:
        overrides["min_pixels"] = int(min_pixels)
    if max_pixels is not None:
        overrides["max_pixels"] = int(max_pixels)
    image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", **overrides)
    chat_template = getattr(tokenizer, "chat_template", None)
    if chat_template is None:
        raise ValueError(f"{path} has no chat template (chat_template.jinja or tokenizer_config.json)")
    return ImageOnlyQwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
    )


def save_processor(processor: ImageOnlyQwen2_5_VLProcessor, out_dir: str | Path) -> None:
    """Save the processor parts in the hub layout (tokenizer files + image-processor config).

    We save the parts rather than `processor.save_pretrained` so the folder records the stock
    image processor and tokenizer classes, which stock `AutoProcessor` (with torchvision) and our
    `load_processor` both read.
    """
    out_dir = str(out_dir)
    processor.tokenizer.save_pretrained(out_dir)
    processor.image_processor.save_pretrained(out_dir)
