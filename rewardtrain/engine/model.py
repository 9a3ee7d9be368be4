"""Loading the Qwen2.5-VL reward model, resolving the Yes/No answer tokens, and applying LoRA."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

from .processor import ImageOnlyQwen2_5_VLProcessor, load_processor
from .template import NO, YES, build_messages

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
    """The base model folder is missing, unreadable or not a Qwen2.5-VL checkpoint."""


@dataclass
class RewardModel:
    """A loaded reward model with what is needed to read P(Yes) from it."""

    model: PreTrainedModel
    processor: ImageOnlyQwen2_5_VLProcessor
    yes_token_id: int
    no_token_id: int


def _check_location(path: str) -> None:
    if Path(path).exists():
        if not Path(path).is_dir():
            raise ModelLoadError(f"model path {path} is a file; expected a model folder")
        if not (Path(path) / "config.json").exists():
            raise ModelLoadError(f"model folder {path} has no config.json")
        return
    if path.startswith((".", "/", "~")) or not _HUB_ID.match(path):
        raise ModelLoadError(f"model folder not found: {path}")


def check_architecture(path: str) -> Any:
    """Return the model config, raising ModelLoadError unless it is a Qwen2.5-VL architecture."""
    _check_location(path)
    try:
        model_config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read a model config from {path}: {exc}") from exc
    model_type = getattr(model_config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"{path} is a {model_type!r} model; the reward model needs a Qwen2.5-VL architecture "
            f"(model_type {' or '.join(SUPPORTED_MODEL_TYPES)})"
        )
    return model_config


def resolve_answer_token_ids(processor: ImageOnlyQwen2_5_VLProcessor) -> tuple[int, int]:
    """Return the (Yes, No) token ids as they are produced right after the assistant header.

    The reward is read from the logit of the first answer token, so each answer word must be
    exactly one token in that context. We check by tokenizing the full prompt with and without the
    answer appended, which catches tokenizers that merge across the header or split the word.
    """
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(
        build_messages("fill", "aesthetics"), add_generation_prompt=True, tokenize=False
    )
    base = tokenizer(prompt, add_special_tokens=False).input_ids
    ids = []
    for word in (YES, NO):
        full = tokenizer(prompt + word, add_special_tokens=False).input_ids
        if full[: len(base)] != base or len(full) != len(base) + 1:
            pieces = tokenizer.convert_ids_to_tokens(full[len(base) - 1 :])
            raise ModelLoadError(
                f"answer {word!r} is not a single token after the assistant header (got {pieces}); "
                "this tokenizer cannot be used as a OneReward reward model"
            )
        ids.append(full[-1])
    if ids[0] == ids[1]:
        raise ModelLoadError("Yes and No map to the same token id")
    return ids[0], ids[1]


def load_reward_model(
    path: str | Path,
    config: Any = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> RewardModel:
    """Load a Qwen2.5-VL checkpoint + processor and resolve its Yes/No answer tokens.

    `config` may be a `RewardTrainConfig`; then its weight dtype (`weight_dtype()`: float32 for a
    full fine-tune), device and pixel budget are used and, when `config.lora` is true, LoRA
    adapters are attached (see `apply_lora`). Raises ModelLoadError for a missing folder or another
    architecture.
    """
    path = str(path)
    check_architecture(path)
    if config is not None:
        dtype = dtype or config.weight_dtype()
        device = device or config.resolved_device()
        min_pixels = min_pixels or config.min_pixels
        max_pixels = max_pixels or config.max_pixels
    try:
        processor = load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype or torch.float32)
    except OSError as exc:
        raise ModelLoadError(f"cannot load the model from {path}: {exc}") from exc
    yes_id, no_id = resolve_answer_token_ids(processor)
    model.to(device or "cpu")
    if config is not None and config.lora:
        model = apply_lora(model, config)
    return RewardModel(model=model, processor=processor, yes_token_id=yes_id, no_token_id=no_id)


def apply_lora(model: PreTrainedModel, config: Any) -> PreTrainedModel:
    """Wrap `model` with peft LoRA adapters as configured; everything else is frozen."""
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias="none",
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise ValueError(f"lora_target_modules matched no module: {exc}") from exc


def forward_log_odds(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], yes_token_id: int, no_token_id: int
) -> torch.Tensor:
    """Run the model and return logit(Yes) - logit(No) at the last position, shape [B].

    Inputs must be left-padded (our processor does that), so position -1 is the answer position
    for every row. `logits_to_keep=1` keeps only the last position, which matters at real vocab
    sizes (152k x sequence length logits would dominate memory).
    """
    out = model(**inputs, logits_to_keep=1, use_cache=False)
    last = out.logits[:, -1, :]
    return (last[:, yes_token_id] - last[:, no_token_id]).float()
