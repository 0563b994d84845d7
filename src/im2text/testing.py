"""Tiny random-weight checkpoints in exactly the Hugging Face Hub layout, built offline.

Tests, benchmarks and users without Hub access use these to exercise the same loading code path as
a real checkpoint: config + safetensors weights + tokenizer/processor files written with
`save_pretrained`. Tokenizers are trained locally with the `tokenizers` library, so every special
token id in the configs comes from our own vocabulary (never from a real model's numbers).

    from im2text.testing import build_checkpoint
    path = build_checkpoint("blip", tmp_dir)      # -> tmp_dir/blip, loadable by im2text.load(path)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

__all__ = [
    "CORPUS",
    "TINY_FAMILIES",
    "TINY_KINDS",
    "build_checkpoint",
    "shape_corpus",
    "shape_dataset",
    "shape_image",
]

COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
SIZES = ("small", "large")


def shape_corpus() -> list[str]:
    """Sentences covering the synthetic shapes captions and some general captioning words."""
    lines = [f"a {s} {c} {sh}" for s in SIZES for c in COLORS for sh in SHAPES]
    lines += [f"a {c} {sh} on a gray background" for c in COLORS for sh in SHAPES]
    lines += [
        "a photo of a cat sitting on a couch",
        "a picture of a dog running in the park",
        "two people standing next to a train",
        "what is in the image ? the answer is yes no one two three",
        "question : answer : describe the image in detail . a short description",
        "an astronaut in space , a coffee cup on a table , a man riding a horse",
    ]
    return lines


CORPUS = shape_corpus()


# --- tokenizers ---------------------------------------------------------------------------------


def _wordpiece_vocab(corpus: Iterable[str], specials: list[str], size: int = 300) -> dict[str, int]:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        list(corpus), trainers.WordPieceTrainer(vocab_size=size, special_tokens=specials)
    )
    return tok.get_vocab()


def _bert_tokenizer(extra_specials: tuple[str, ...] = (), vocab_size: int | None = None):
    """WordPiece tokenizer; `vocab_size` pads the vocabulary with unused tokens up to a real
    model's size, so a full-size random model's LM head costs what the real one does."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra_specials]
    vocab = _wordpiece_vocab(CORPUS, specials)
    for i in range(len(vocab), vocab_size or 0):
        vocab[f"[unused{i}]"] = i
    return BertTokenizer(vocab=vocab)


def _bpe_tokenizer(cls_name: str = "GPT2Tokenizer", **kwargs):
    """Byte-level BPE (GPT-2 / OPT style)."""
    import transformers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    vocab = tok.get_vocab()
    model_json = tok.to_str()
    import json

    merges = json.loads(model_json)["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    return getattr(transformers, cls_name)(vocab=vocab, merges=merges, **kwargs)


def _unigram_tokenizer():
    """SentencePiece-style unigram vocabulary (T5 style)."""
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS,
        trainers.UnigramTrainer(
            vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
        ),
    )
    import json

    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


# --- family builders ----------------------------------------------------------------------------

# Small enough to build in well under a second, big enough to have every code path of the real
# architecture (2 layers, 2 heads, real patching).
_TINY: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)
_IMAGE = 32
# Keywords the base config takes through its **kwargs rather than the typed signature.
_BASE_ONLY: dict[str, Any] = {"is_decoder": True}


def _blip_image_processor(size: int):
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": size, "width": size})


def _build_blip(
    out: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    image_size: int = _IMAGE,
    patch_size: int = 8,
    head: str = "caption",
    vocab_size: int | None = None,
    max_positions: int = 64,
    init_range: float | None = None,
) -> None:
    """BLIP of any size: the defaults are tiny; `hidden=768, layers=12, heads=12,
    image_size=384, patch_size=16, vocab_size=30524, max_positions=512` is BLIP-base's."""
    import transformers
    from transformers import BlipConfig, BlipProcessor

    tok = _bert_tokenizer(extra_specials=("[DEC]",), vocab_size=vocab_size)
    # BLIP's text decoder starts from [DEC] (bos) and stops at [SEP]; ids come from our vocab.
    dec = tok.convert_tokens_to_ids("[DEC]")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    size = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
    )
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tok),
            max_position_embeddings=max_positions,
            **({"initializer_range": init_range} if init_range else {}),
            encoder_hidden_size=hidden,
            bos_token_id=dec,
            pad_token_id=tok.pad_token_id,
            sep_token_id=tok.sep_token_id,
            eos_token_id=tok.sep_token_id,
            **size,
        ),
        # BLIP's vision default init (1e-10) starts the tower at ~zero: fine for fine-tuning a
        # real checkpoint, hopeless from scratch.
        vision_config=dict(
            image_size=image_size, patch_size=patch_size, initializer_range=0.02, **size
        ),
        projection_dim=hidden,
        image_text_hidden_size=hidden,
    )
    cls = {
        "caption": "BlipForConditionalGeneration",
        "vqa": "BlipForQuestionAnswering",
        "itm": "BlipForImageTextRetrieval",
    }[head]
    model = getattr(transformers, cls)(config).eval()
    model.save_pretrained(out)
    BlipProcessor(image_processor=_blip_image_processor(image_size), tokenizer=tok).save_pretrained(
        out
    )


def _qformer_and_vision(image_size: int = _IMAGE) -> dict:
    return dict(
        vision_config=dict(image_size=image_size, patch_size=8, **_TINY),
        qformer_config=dict(encoder_hidden_size=32, max_position_embeddings=64, **_TINY),
        num_query_tokens=4,
    )


def _build_blip2(out: Path, *, lm: str = "opt") -> None:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    if lm == "opt":
        tok = _bpe_tokenizer("GPT2Tokenizer", pad_token="<pad>")
        tok.add_special_tokens({"bos_token": "</s>", "eos_token": "</s>"})
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        tok.add_bos_token = True
        text_config = dict(
            model_type="opt",
            vocab_size=len(tok),
            hidden_size=32,
            word_embed_proj_dim=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    else:
        tok = _unigram_tokenizer()
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        text_config = _t5_config(tok)
    image_token = tok.convert_tokens_to_ids("<image>")
    config = Blip2Config(
        text_config=text_config, image_token_index=image_token, **_qformer_and_vision()
    )
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    # num_query_tokens must be on the processor, or the image tokens (and so the image) are dropped.
    Blip2Processor(
        image_processor=_blip_image_processor(_IMAGE),
        tokenizer=tok,
        num_query_tokens=config.num_query_tokens,
    ).save_pretrained(out)


def _t5_config(tok) -> dict:
    return dict(
        model_type="t5",
        vocab_size=len(tok),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )


def _build_instructblip(out: Path) -> None:
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    tok = _unigram_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    qtok = _bert_tokenizer()
    parts = _qformer_and_vision()
    parts["qformer_config"]["vocab_size"] = len(qtok)
    parts["qformer_config"]["pad_token_id"] = qtok.pad_token_id
    config = InstructBlipConfig(
        text_config=_t5_config(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        **parts,
    )
    InstructBlipForConditionalGeneration(config).eval().save_pretrained(out)
    InstructBlipProcessor(
        image_processor=_blip_image_processor(_IMAGE),
        tokenizer=tok,
        qformer_tokenizer=qtok,
        num_query_tokens=config.num_query_tokens,
    ).save_pretrained(out)


def _build_git(out: Path) -> None:
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tok = _bert_tokenizer()
    config = GitConfig(
        vision_config=dict(image_size=_IMAGE, patch_size=8, **_TINY),
        vocab_size=len(tok),
        max_position_embeddings=64,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        **_TINY,
    )
    GitForCausalLM(config).eval().save_pretrained(out)
    improc = CLIPImageProcessor(
        size={"shortest_edge": _IMAGE}, crop_size={"height": _IMAGE, "width": _IMAGE}
    )
    GitProcessor(image_processor=improc, tokenizer=tok).save_pretrained(out)


def _build_vision_encoder_decoder(out: Path, *, ocr: bool = False) -> None:
    """ViT encoder + GPT-2 decoder (the vit-gpt2 layout: image processor + tokenizer files)."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = _bpe_tokenizer("GPT2Tokenizer")
    enc = ViTConfig(image_size=_IMAGE, patch_size=8, **_TINY)
    dec = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        add_cross_attention=True,
        **_BASE_ONLY,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    # GPT-2 has no pad token: the real vit-gpt2 checkpoint reuses eos, so do we.
    config.decoder_start_token_id = tok.bos_token_id
    config.pad_token_id = tok.eos_token_id
    config.eos_token_id = tok.eos_token_id
    model = VisionEncoderDecoderModel(config=config).eval()
    model.generation_config.decoder_start_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.eos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ViTImageProcessor(size={"height": _IMAGE, "width": _IMAGE}).save_pretrained(out)


def _build_clip(out: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = _clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            max_position_embeddings=32,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **_TINY,
        ),
        vision_config=dict(image_size=_IMAGE, patch_size=8, **_TINY),
        projection_dim=32,
    )
    CLIPModel(config).eval().save_pretrained(out)
    improc = CLIPImageProcessor(
        size={"shortest_edge": _IMAGE}, crop_size={"height": _IMAGE, "width": _IMAGE}
    )
    CLIPProcessor(image_processor=improc, tokenizer=tok).save_pretrained(out)


def _clip_tokenizer():
    """CLIP-style BPE: lower-cased, words end with `</w>`."""
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|startoftext|>", "<|endoftext|>"],
            end_of_word_suffix="</w>",
        ),
    )
    import json

    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, pad_token="<|endoftext|>")


def _build_vit(out: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = ["tabby, tabby cat", "golden retriever", "espresso", "space shuttle", "pizza"]
    # `num_labels` is taken by the base config's **kwargs, not the typed signature.
    extra: dict[str, Any] = {"num_labels": len(labels)}
    config = ViTConfig(
        image_size=_IMAGE,
        patch_size=8,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **_TINY,
        **extra,
    )
    ViTForImageClassification(config).eval().save_pretrained(out)
    ViTImageProcessor(size={"height": _IMAGE, "width": _IMAGE}).save_pretrained(out)


def _build_trocr(out: Path) -> None:
    """TrOCR layout: ViT encoder + TrOCR decoder, RoBERTa-style BPE, TrOCRProcessor."""
    from transformers import (
        TrOCRConfig,
        TrOCRProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = _bpe_tokenizer(
        "RobertaTokenizer", bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"})
    enc = ViTConfig(image_size=_IMAGE, patch_size=8, **_TINY)
    dec = TrOCRConfig(
        vocab_size=len(tok),
        d_model=32,
        decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    # TrOCR starts decoding from </s>, like the real checkpoints.
    config.decoder_start_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    config.eos_token_id = tok.eos_token_id
    model = VisionEncoderDecoderModel(config=config).eval()
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id = tok.eos_token_id, tok.pad_token_id
    gen.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    improc = ViTImageProcessor(size={"height": _IMAGE, "width": _IMAGE})
    TrOCRProcessor(image_processor=improc, tokenizer=tok).save_pretrained(out)


_TINY_BLIP: dict[str, Any] = {"init_range": 0.06}

_BUILDERS: dict[str, Callable[..., None]] = {
    # Any size, see _build_blip. The tiny defaults use a wider text init (0.2): at 0.02 a random
    # decoder is so flat that top-2 logits differ by ~1e-4, and batched-vs-single float noise
    # flips greedy choices; 0.2 leaves gaps of ~0.07. Training from scratch keeps 0.02.
    "blip": lambda out, **kw: _build_blip(out, **(kw or _TINY_BLIP)),
    "blip-vqa": lambda out, **kw: _build_blip(out, head="vqa", **(kw or _TINY_BLIP)),
    "blip-itm": lambda out: _build_blip(out, head="itm", **_TINY_BLIP),
    "clip": _build_clip,
    "vit": _build_vit,
    "trocr": _build_trocr,
    "blip2-opt": lambda out: _build_blip2(out, lm="opt"),
    "blip2-t5": lambda out: _build_blip2(out, lm="t5"),
    "instructblip": _build_instructblip,
    "git": _build_git,
    "vision-encoder-decoder": _build_vision_encoder_decoder,
}
TINY_KINDS: tuple[str, ...] = tuple(_BUILDERS)
# The captioning families (the generative ones; every kind above is built by the tests).
TINY_FAMILIES: tuple[str, ...] = (
    "blip",
    "blip2-opt",
    "blip2-t5",
    "instructblip",
    "git",
    "vision-encoder-decoder",
)


def build_checkpoint(kind: str, root: str | os.PathLike, **kwargs) -> Path:
    """Build a tiny random checkpoint of `kind` under `root/kind` (once; reused if present).

    Args:
        kind: one of `TINY_FAMILIES`, or "blip" with keyword arguments for a custom size.
        root: parent folder.
        **kwargs: passed to the builder (e.g. `hidden=96, layers=2, image_size=64` for BLIP).
    """
    import torch

    out = Path(root) / kind
    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    tmp = out.with_name(out.name + ".tmp")
    builder = _BUILDERS[kind]
    builder(tmp, **kwargs) if kwargs else builder(tmp)
    os.replace(tmp, out)
    return out


# --- synthetic shapes data (learning tests, demos) ----------------------------------------------

_RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 170),
    "orange": (245, 140, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}


def shape_image(color: str, shape: str, size: str, *, image_size: int = 64, rng=None):
    """One shape of a colour and size at a random place on a gray background (PIL RGB image)."""
    import random

    from PIL import Image, ImageDraw

    rng = rng or random.Random()
    img = Image.new("RGB", (image_size, image_size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    r = image_size * (0.34 if size == "large" else 0.2) * rng.uniform(0.9, 1.1)
    cx = rng.uniform(r + 1, image_size - r - 1)
    cy = rng.uniform(r + 1, image_size - r - 1)
    fill = _RGB[color]
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "star":
        import math

        pts = [
            (cx + rad * math.sin(k * math.pi / 5), cy - rad * math.cos(k * math.pi / 5))
            for k, rad in zip(range(10), [r, r * 0.4] * 5, strict=True)
        ]
        draw.polygon(pts, fill=fill)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return img


def shape_dataset(n: int, *, seed: int = 0, image_size: int = 64):
    """`n` (image, caption) pairs: "a {size} {color} {shape}", uniformly drawn."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c, s, z = rng.choice(COLORS), rng.choice(SHAPES), rng.choice(SIZES)
        out.append((shape_image(c, s, z, image_size=image_size, rng=rng), f"a {z} {c} {s}"))
    return out
