"""Build a tiny, randomly initialised Qwen2.5-VL reward model folder for tests and demos.

Nothing is downloaded: the byte-level BPE tokenizer is trained locally on the query template's
own text, the model is built from a `Qwen2_5_VLConfig` at sizes where a training step takes a few
hundredths of a second on a CPU, and everything is written with `save_pretrained`, so the folder
loads through exactly the `from_pretrained` path a real Qwen2.5-VL checkpoint uses.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from contracts.vocabulary import BUILTIN

from .processor import ImageOnlyQwen2_5_VLProcessor, save_processor
from .template import NO, YES, build_query

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# A minimal Qwen-style chat template: every image item becomes the vision placeholder triple, every
# message is `<|im_start|>role\n...<|im_end|>\n`, and the generation prompt is the assistant header.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "a red circle blue square green triangle yellow star cat dog house tree sky sea mountain car "
    "high-definition perfect composition remove the specified object bright dark word sign"
).split()


def _tokenizer_corpus(seed: int) -> list[str]:
    """Built-in template text for every (task, criterion) plus bare answer words, so Yes/No are single
    tokens. Other vocabularies' words are still encoded (byte-level BPE), only in more tokens."""
    rng = random.Random(seed)
    lines = []
    for _ in range(60):
        for task, criteria in BUILTIN.task_criteria.items():
            for criterion in criteria:
                prompt = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
                lines.append(build_query(task, criterion, prompt))
    lines.extend([YES, NO, f"{YES}\n{NO}", "assistant\n" + YES, "assistant\n" + NO] * 100)
    lines.extend(["user", "assistant", "system"] * 20)
    return lines


def build_tiny_tokenizer(seed: int = 0, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on template text (deterministic for a given seed)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # noqa: S106 - a token, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )


def tiny_model_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config with tiny sizes (about 0.2 M parameters)."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # mrope_section must sum to head_dim / 2 = 64 / 4 / 2 = 8.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 2, 2]},
            "bos_token_id": ids["<|endoftext|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            # Untied like Qwen2.5-VL-7B, so LoRA on lm_head does not also move the input embeddings.
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,  # must equal the text hidden size
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_reward_model(
    out_dir: str | Path, seed: int = 0, min_pixels: int = 28 * 28, max_pixels: int = 112 * 112
) -> Path:
    """Build and save a tiny random Qwen2.5-VL model + tokenizer + processor into `out_dir`.

    Deterministic: the same seed gives byte-identical weights. Returns the folder path, which
    `load_reward_model`, `load_processor` and `AutoModelForImageTextToText.from_pretrained` read.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed)
    config = tiny_model_config(tokenizer)
    # Fork the RNG so building a model does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    save_processor(processor, out)
    return out
