"""Scoring image pairs with a trained reward model: batched (no grad) and differentiable (for RL).

`RewardScorer.score` runs the stock processor on PIL images, for ranking and active learning.
`RewardScorer.differentiable` takes image *tensors* and re-implements the Qwen image processor's
resize -> normalise -> patchify in torch so gradients flow back to the pixels (the stock processor
goes through PIL/numpy and would cut the autograd graph). The text side (input ids, image grid,
mm_token_type_ids) depends only on the image sizes and the query, so it is computed once per
shape with the real processor and cached. At sizes that need no resize (multiples of 28 within the
pixel budget, e.g. 56 or 112 px) the tensor path equals the processor exactly; otherwise torch's
antialiased bicubic resize approximates PIL's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from contracts.cards import REWARD_CARD, read_reward_card
from contracts.vocabulary import BUILTIN, Vocabulary, VocabularyError

from .data import PairCollator
from .loss import p_yes as p_yes_from_log_odds
from .model import forward_log_odds, load_reward_model
from .template import TEMPLATE_VERSION, build_messages

logger = logging.getLogger(__name__)

MODEL_CARD = REWARD_CARD  # the card's schema, reader and writer: contracts.cards


@dataclass
class ScoreRequest:
    """Is `first` better than `second` for `criterion` of `task`? Images are PIL images or paths."""

    first: Image.Image | str | Path
    second: Image.Image | str | Path
    task: str
    criterion: str
    prompt: str = ""


@dataclass(frozen=True)
class Score:
    """P(Yes) (renormalised over Yes/No) and its log-odds logit(Yes) - logit(No)."""

    p_yes: float
    log_odds: float


class RewardScorer:
    """P(Yes) scorer around a Qwen2.5-VL reward model and its processor."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        yes_token_id: int,
        no_token_id: int,
        card: dict[str, Any] | None = None,
        vocabulary: Vocabulary = BUILTIN,
    ):
        self.model = model
        self.processor = processor
        self.yes_token_id = yes_token_id
        self.no_token_id = no_token_id
        self.card = card or {}
        self.vocabulary = vocabulary  # the words of every query: the model's training vocabulary
        self.collator = PairCollator(processor, vocabulary)
        self._template_cache: dict[tuple, dict[str, torch.Tensor]] = {}
        self._checkpointed_layers: list[torch.nn.Module] = []  # set by enable_lm_checkpointing
        ip = processor.image_processor
        self.patch_size = int(ip.patch_size)
        self.merge_size = int(ip.merge_size)
        self.temporal_patch_size = int(ip.temporal_patch_size)
        self.min_pixels = int(ip.size["shortest_edge"])
        self.max_pixels = int(ip.size["longest_edge"])
        self.image_mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_std = torch.tensor(ip.image_std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> RewardScorer:
        """Load a trained reward model folder (a run's `final/`) for scoring.

        The pixel budget and the vocabulary saved with the model (those used in training; the
        built-in vocabulary for cards written before cards carried one) are used. The model is
        frozen (`requires_grad=False`) and in eval mode; `differentiable` still builds a graph to
        the input pixels.
        """
        model_dir = Path(model_dir)
        card_path = model_dir / MODEL_CARD
        read = read_reward_card(model_dir)
        card = read.data if read is not None else {}
        if read is not None:
            version = read.template_version
            if version != TEMPLATE_VERSION:
                raise ValueError(
                    f"{model_dir} was trained with query template {version!r}, but this code uses "
                    f"{TEMPLATE_VERSION!r}; retrain or use a matching engine version"
                )
        else:
            logger.warning("%s has no %s: scoring an untrained base model", model_dir, MODEL_CARD)
        try:
            vocabulary = read.vocabulary() if read is not None else BUILTIN
        except VocabularyError as exc:
            raise ValueError(f"{card_path}: vocabulary: {exc}") from exc
        loaded = load_reward_model(
            model_dir,
            device=device,
            dtype=dtype,
            min_pixels=card.get("min_pixels"),
            max_pixels=card.get("max_pixels"),
        )
        loaded.model.eval()
        loaded.model.requires_grad_(False)
        return cls(loaded.model, loaded.processor, loaded.yes_token_id, loaded.no_token_id, card, vocabulary)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ----------------------------------------------------------------------------- batched scoring
    def score_log_odds(self, requests: Sequence[ScoreRequest], batch_size: int = 16) -> torch.Tensor:
        """Log-odds for each request as a float32 CPU tensor (no gradient)."""
        out = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(requests), batch_size):
                    chunk = requests[start : start + batch_size]
                    inputs = self.collator.encode([(r.first, r.second, r.task, r.criterion, r.prompt) for r in chunk])
                    inputs = {k: v.to(self.device) for k, v in inputs.items()}
                    inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
                    out.append(forward_log_odds(self.model, inputs, self.yes_token_id, self.no_token_id).cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, requests: Sequence[ScoreRequest], batch_size: int = 16) -> list[Score]:
        """Score every request; batches of `batch_size` pairs share one forward pass."""
        values = self.score_log_odds(requests, batch_size=batch_size)
        probs = p_yes_from_log_odds(values)
        return [Score(p_yes=float(p), log_odds=float(v)) for p, v in zip(probs, values, strict=True)]

    # ------------------------------------------------------------------------ differentiable path
    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the processor resizes an image to under the model's pixel budget."""
        return smart_resize(
            height,
            width,
            factor=self.patch_size * self.merge_size,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )

    def pixels_to_patches(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """[B, 3, H, W] in [0, 1] -> ([B, tokens, C*T*p*p] normalised patches, (H', W')).

        Mirrors `Qwen2VLImageProcessorPil`: resize (only if needed) -> normalise -> patchify with
        the merge-window-major layout (grid_h/m, grid_w/m, m, m, C, T, p, p) the vision tower
        expects, the single frame repeated over the temporal patch.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        b, c, h, w = images.shape
        th, tw = self.target_size(h, w)
        x = images.float()
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        x = (x - self.image_mean.to(x.device)) / self.image_std.to(x.device)
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = th // p, tw // p
        x = x.reshape(b, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (B, gh/m, gw/m, m, m, C, p, p)
        x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)
        return x.reshape(b, gh * gw, c * t * p * p), (th, tw)

    def _template(self, task: str, criterion: str, prompt: str, size1: tuple, size2: tuple) -> dict:
        key = (task, criterion, prompt, size1, size2)
        cached = self._template_cache.get(key)
        if cached is None:
            text = self.processor.apply_chat_template(
                build_messages(task, criterion, prompt, self.vocabulary), add_generation_prompt=True, tokenize=False
            )
            # Blank images of the final size: only their shape matters for the token layout.
            blanks = [Image.new("RGB", (size1[1], size1[0])), Image.new("RGB", (size2[1], size2[0]))]
            enc = self.processor(text=[text], images=blanks, return_tensors="pt")
            cached = {
                "input_ids": enc["input_ids"][0],
                "mm_token_type_ids": enc["mm_token_type_ids"][0],
                "image_grid_thw": enc["image_grid_thw"],
            }
            if len(self._template_cache) > 512:  # bound memory for many distinct prompts
                self._template_cache.clear()
            self._template_cache[key] = cached
        return cached

    def differentiable(
        self,
        first: torch.Tensor,
        second: torch.Tensor,
        task: str,
        criterion: str | Sequence[str],
        prompt: str | Sequence[str] | None = None,
        return_log_odds: bool = False,
    ) -> torch.Tensor:
        """P(Yes | first, second, query) for a batch of image tensors, differentiable w.r.t. pixels.

        `first` and `second` are [B, 3, H, W] tensors in [0, 1] (the two may differ in size).
        `criterion` is one criterion for the whole batch or one per row: rows with different
        criteria share ONE forward (RL stacks a batch's per-criterion queries, see
        `score_criteria`). `prompt` is one string for the whole batch or one per sample (used only
        for criteria that use the prompt). Returns [B] P(Yes) or, with `return_log_odds`,
        logit(Yes) - logit(No), which does not saturate (the better RL reward for sharp models).
        """
        if first.shape[0] != second.shape[0]:
            raise ValueError("first and second must have the same batch size")
        b = first.shape[0]
        prompts = [prompt or ""] * b if prompt is None or isinstance(prompt, str) else [p or "" for p in prompt]
        if len(prompts) != b:
            raise ValueError(f"got {len(prompts)} prompts for a batch of {b}")
        criteria = [criterion] * b if isinstance(criterion, str) else list(criterion)
        if len(criteria) != b:
            raise ValueError(f"got {len(criteria)} criteria for a batch of {b}")
        device, dtype = self.device, self.dtype
        patches1, size1 = self.pixels_to_patches(first.to(device))
        patches2, size2 = self.pixels_to_patches(second.to(device))
        # Interleave per sample: [s0 first, s0 second, s1 first, ...], the order of the
        # <|image_pad|> runs in the concatenated token sequence.
        pixel_values = torch.stack([patches1, patches2], dim=1).reshape(-1, patches1.shape[-1])

        templates = [self._template(task, c, p, size1, size2) for c, p in zip(criteria, prompts, strict=True)]
        length = max(t["input_ids"].shape[0] for t in templates)
        pad_id = self.processor.tokenizer.pad_token_id
        input_ids = torch.full((b, length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((b, length), dtype=torch.long)
        mm_types = torch.zeros((b, length), dtype=templates[0]["mm_token_type_ids"].dtype)
        for i, t in enumerate(templates):  # left padding, as in training
            n = t["input_ids"].shape[0]
            input_ids[i, length - n :] = t["input_ids"]
            attention_mask[i, length - n :] = 1
            mm_types[i, length - n :] = t["mm_token_type_ids"]
        inputs = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "mm_token_type_ids": mm_types.to(device),
            "image_grid_thw": torch.cat([t["image_grid_thw"] for t in templates]).to(device),
            "pixel_values": pixel_values.to(dtype),
        }
        with self._lm_checkpointing():
            values = forward_log_odds(self.model, inputs, self.yes_token_id, self.no_token_id)
        return values if return_log_odds else p_yes_from_log_odds(values)

    def score_criteria(
        self,
        first: torch.Tensor,
        second: torch.Tensor,
        task: str,
        rows: Sequence[tuple[str, Sequence[int]]],
        prompts: Sequence[str],
        return_log_odds: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Score several criteria of one batch in ONE differentiable forward.

        `rows` lists (criterion, indices of the samples it applies to); the selected pairs of every
        criterion are stacked into one batch of queries, so a single reward-model graph is alive
        until the backward (instead of one graph per criterion). Returns {criterion: [len(indices)]}.
        Equal to calling `differentiable` once per criterion (tested), only batched.
        """
        rows = [(c, list(idx)) for c, idx in rows if len(idx)]
        if not rows:
            return {}
        flat = [i for _, idx in rows for i in idx]
        sel = torch.tensor(flat, device=first.device)
        values = self.differentiable(
            first.index_select(0, sel), second.index_select(0, sel), task,
            [c for c, idx in rows for _ in idx], [prompts[i] for i in flat], return_log_odds=return_log_odds,
        )
        out, start = {}, 0
        for criterion, idx in rows:
            out[criterion] = values[start : start + len(idx)]
            start += len(idx)
        return out

    # ----------------------------------------------------------------------- memory at real size
    def enable_lm_checkpointing(self) -> None:
        """Recompute the language model's decoder layers in the backward instead of keeping their
        activations (RL backpropagates through the frozen reward model to the pixels; at 7B the
        LM's activations dominate). The vision tower is left as is: its sequence is short.

        transformers only checkpoints a layer in training mode, and the scorer stays in eval mode
        (no dropout); `differentiable` therefore flips only the decoder layers' own ``training``
        flag for the duration of its forward (their attention/MLP children stay in eval mode).
        """
        lm = self._language_model()
        lm.activation_checkpointing_enable({"use_reentrant": False})
        self._checkpointed_layers = [m for m in lm.modules() if isinstance(m, GradientCheckpointingLayer)]

    def _language_model(self) -> torch.nn.Module:
        model = self.model
        inner = getattr(model, "model", None)
        lm = getattr(inner, "language_model", None)
        if lm is None:
            raise ValueError(f"{type(model).__name__} has no language_model to checkpoint")
        return lm

    @contextmanager
    def _lm_checkpointing(self):
        layers = self._checkpointed_layers
        if not layers or not torch.is_grad_enabled():
            yield
            return
        before = [m.training for m in layers]
        for m in layers:
            m.training = True
        try:
            yield
        finally:
            for m, flag in zip(layers, before, strict=True):
                m.training = flag
