"""Build a tiny FLUX.1-Fill-architecture pipeline from scratch (no downloads).

The tiny model keeps the real Fill channel arithmetic (latent channels 16, VAE scale factor 8, so the
transformer takes 8*16 + 4*8*8 = 384 channels and predicts 64), which means every packing and
conditioning code path is the one a real FLUX.1-Fill-dev folder exercises. Sizes are small
enough that the pipeline builds in a fraction of a second and an RL step takes tens of
milliseconds on a CPU.
"""

from __future__ import annotations

import string
from pathlib import Path

#: Bumped whenever the tiny pipeline's build changes, so caches of models pre-trained from an
#: older build (the synthetic base policy's ``config_hash``) are not reused.
TINY_BUILD_VERSION = 2
#: Every printable ASCII character. The tokenizers must know each of them: prompts quote
#: capitalised words (the word "STAR"), and an unknown character would swallow the word.
ALPHABET = string.ascii_letters + string.digits + string.punctuation
# Small synthetic corpus: merges for the words tests and fixed prompts use, on top of the alphabet.
_WORDS = (
    "a photo of red blue green yellow white black cat dog tree house sky sea car person object "
    "remove the specified high-definition perfect composition fill extend image with in on under "
    "bright dark small large mountain river flower table chair window door road city night day"
).split()


def _corpus() -> list[str]:
    lines = [" ".join(_WORDS[i : i + 6]) for i in range(0, len(_WORDS), 3)]
    lines += ["remove the specified object", "high-definition, perfect composition", "a red cat", "a blue sky"]
    # Each character as a word of its own, so word-final pieces (CLIP's "p</w>") exist for all of them.
    lines.append(" ".join(ALPHABET))
    return lines * 4


def _clip_tokenizer():
    """Train a tiny CLIP-style BPE (``</w>`` suffix, lowercase) and wrap it as ``CLIPTokenizer``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=None))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    model = tok.model
    vocab = tok.get_vocab()
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in _bpe_merges(model, tok)]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _bpe_merges(model, tok) -> list:
    """Read the merges of a trained BPE model (``tokenizers`` exposes them only through its JSON)."""
    import json

    return json.loads(tok.to_str())["model"]["merges"]


def _t5_tokenizer():
    """Train a tiny Unigram tokenizer with T5's special ids (<pad>=0, </s>=1, <unk>=2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",  # noqa: S106 - a token
        initial_alphabet=list(ALPHABET), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    import json

    vocab = [(piece, score) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def tiny_vae(block_out_channels: tuple[int, ...] = (16, 16, 32, 32)):
    """A FLUX-style VAE (16 latent channels, no quant convs) at tiny width.

    Down-sampling is 2^(levels − 1): the default 4 levels keep FLUX's 8×; 3 levels give a 4× VAE,
    which a tiny model can actually train to reproduce colours; at 8× it stalls with washed-out colour.
    """
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )


def tiny_transformer(*, num_layers: int = 1, num_single_layers: int = 2, attention_head_dim: int = 16,
                     num_attention_heads: int = 2, text_dim: int = 32, pooled_dim: int = 32,
                     axes_dims_rope: tuple[int, int, int] = (4, 6, 6), vae_scale_factor: int = 8):
    """A FluxTransformer2DModel with the real Fill packing: in 8·16 + 4·s² channels (384 for FLUX's
    s = 8; 192 for a 4× VAE), out 64 channels. ``vae_scale_factor`` must match the VAE's levels."""
    from diffusers import FluxTransformer2DModel

    c_lat, s = 16, vae_scale_factor
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=8 * c_lat + 4 * s * s,
        out_channels=4 * c_lat,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        attention_head_dim=attention_head_dim,
        num_attention_heads=num_attention_heads,
        joint_attention_dim=text_dim,
        pooled_projection_dim=pooled_dim,
        guidance_embeds=True,
        axes_dims_rope=tuple(axes_dims_rope),
    )


def build_tiny_fill_pipeline(out_dir: str | Path, seed: int = 0) -> Path:
    """Build, save and return the folder of a randomly initialised tiny ``FluxFillPipeline``.

    The folder has the hub layout (``transformer/``, ``vae/``, ``text_encoder/`` ...), so it loads
    exactly like a real FLUX.1-Fill-dev folder.
    """
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxFillPipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    vae = tiny_vae()
    transformer = tiny_transformer()
    vocab = tokenizer.get_vocab()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxFillPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(out)
    return out
