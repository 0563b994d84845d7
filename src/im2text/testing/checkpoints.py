"""Tiny random-weight checkpoints in exactly the Hugging Face Hub layout, built offline.

Tests, benchmarks and users without Hub access use these to exercise the same loading code path as
a real checkpoint: config + safetensors weights + tokenizer/processor files written with
`save_pretrained`. Tokenizers are trained locally with the `tokenizers` library, so every special
token id in the configs comes from our own vocabulary (never from a real model's numbers).

    from im2text.testing import build_checkpoint
    path = build_checkpoint("blip", tmp_dir)      # -> tmp_dir/blip, loadable by im2text.load(path)
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from im2text.testing.data import CORPUS

__all__ = ["TINY_FAMILIES", "TINY_KINDS", "build_checkpoint"]


# --- tokenizers ---------------------------------------------------------------------------------


def _wordpiece_vocab(corpus: Iterable[str], specials: list[str], size: int = 300) -> dict[str, int]:
    """A WordPiece vocabulary: specials, every character (word-initial and `##` continuation),
    then whole words by frequency, ties by spelling.

    Built by hand from the `tokenizers` BERT normaliser + pre-tokeniser rather than with its
    WordPieceTrainer: the trainer breaks frequency ties in hash order, which changes with every
    process, so the same corpus gave a different vocabulary (and so different learning runs)
    each time. This one is the same in every process.
    """
    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: dict[str, int] = {}
    for line in corpus:
        for word, _span in pre.pre_tokenize_str(norm.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    chars = sorted({c for w in counts for c in w})
    tokens = [*specials, *chars, *(f"##{c}" for c in chars)]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens += words[: max(0, size - len(tokens))]
    return {t: i for i, t in enumerate(tokens)}


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

    # The trainer orders equal-score pieces in hash order (a different id order per process):
    # keep the specials first and sort the rest by (rounded score, piece), so ids are stable.
    trained = [
        (str(p), round(float(sc), 4)) for p, sc in json.loads(tok.to_str())["model"]["vocab"]
    ]
    specials, rest = trained[:3], sorted(trained[3:], key=lambda v: (-v[1], v[0]))
    return T5Tokenizer(vocab=[*specials, *rest], extra_ids=0)


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


def _blip2_lm(lm: str, *, add_bos: bool = True, t5_bos: str | None = None) -> tuple[Any, dict]:
    """The LLM's tokenizer (with an `<image>` token) and text config: "opt" or "t5"."""
    if lm == "opt":
        tok = _bpe_tokenizer("GPT2Tokenizer", pad_token="<pad>")
        tok.add_special_tokens({"bos_token": "</s>", "eos_token": "</s>"})
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        tok.add_bos_token = add_bos
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
        return tok, text_config
    if lm != "t5":
        raise ValueError(f"lm must be 'opt' or 't5', not {lm!r}")
    tok = _unigram_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tok, _t5_config(tok, bos=t5_bos)


def _build_blip2(
    out: Path, *, lm: str = "opt", add_bos: bool = True, t5_bos: str | None = None
) -> None:
    """BLIP-2 with an OPT or T5 LLM. `add_bos=False`: an OPT tokenizer that adds no BOS (the
    config still names one, as generate's start token). `t5_bos`: the T5 config's
    `bos_token_id` — "eos" (`</s>`, as Salesforce's Flan-T5 conversions set it), "new" (a
    token of its own, `<s>`), or None (unset: transformers' own T5 default)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    tok, text_config = _blip2_lm(lm, add_bos=add_bos, t5_bos=t5_bos)
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


def _t5_config(tok, bos: str | None = None) -> dict:
    """A tiny T5 text config. `bos`: what `bos_token_id` (generate's start token when no text
    is given) is — None (unset), "eos" (`</s>`) or "new" (a `<s>` token added to `tok`)."""
    bos_id = None
    if bos == "eos":
        bos_id = tok.eos_token_id
    elif bos == "new":
        tok.add_special_tokens({"bos_token": "<s>"})
        bos_id = tok.bos_token_id
    elif bos is not None:
        raise ValueError(f"bos must be None, 'eos' or 'new', not {bos!r}")
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
        bos_token_id=bos_id,
    )


def _build_instructblip(
    out: Path, *, lm: str = "t5", add_bos: bool = True, t5_bos: str | None = None
) -> None:
    """InstructBLIP with a T5 (default) or OPT LLM; `add_bos`, `t5_bos` as for BLIP-2."""
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    tok, text_config = _blip2_lm(lm, add_bos=add_bos, t5_bos=t5_bos)
    qtok = _bert_tokenizer()
    parts = _qformer_and_vision()
    parts["qformer_config"]["vocab_size"] = len(qtok)
    parts["qformer_config"]["pad_token_id"] = qtok.pad_token_id
    config = InstructBlipConfig(
        text_config=text_config,
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


# llava-1.5's conversation format: "USER: <image>\n{prompt} ASSISTANT: {answer}</s>".
_LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}{{ eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _build_llava(
    out: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    image_size: int = _IMAGE,
    patch_size: int = 8,
    init_range: float = 0.2,
) -> None:
    """LLaVA: a CLIP vision tower + projector + Llama, the llava-hf processor layout with a chat
    template. Default: tiny (16 image tokens for a 32 px image in 8 px patches, CLS dropped);
    the keywords size it up for learning runs (`init_range` 0.02 to train from scratch)."""
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok, _ = _blip2_lm("opt")  # BPE with </s> as BOS/EOS, <pad> and <image>
    size = dict(hidden_size=hidden, intermediate_size=4 * hidden if hidden > 32 else 64,
                num_hidden_layers=layers, num_attention_heads=heads)  # fmt: skip
    text = dict(model_type="llama", vocab_size=len(tok), **size, num_key_value_heads=heads,
                max_position_embeddings=128, initializer_range=init_range,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(model_type="clip_vision_model", image_size=image_size, patch_size=patch_size,
                  projection_dim=hidden, **size)  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, tok.eos_token_id
    gen.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    improc = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=improc,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)


def _build_llava_next(out: Path) -> None:
    """LLaVA-NeXT (a model type no im2text family names: it runs through the generic
    image-text-to-text family): the LLaVA tower + Llama with "anyres" tiles, its own processor
    and the LLaVA chat template."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tok, _ = _blip2_lm("opt")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                max_position_embeddings=512, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(model_type="clip_vision_model", image_size=_IMAGE, patch_size=8,
                  projection_dim=32, **_TINY)  # fmt: skip
    config = LlavaNextConfig(vision_config=vision, text_config=text,
                             image_token_index=tok.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_layer=-1)  # fmt: skip
    model = LlavaNextForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, tok.eos_token_id
    gen.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    improc = LlavaNextImageProcessor(size={"shortest_edge": _IMAGE}, image_grid_pinpoints=pinpoints,
                                     crop_size={"height": _IMAGE, "width": _IMAGE})  # fmt: skip
    LlavaNextProcessor(image_processor=improc, tokenizer=tok, patch_size=8,
                       vision_feature_select_strategy="default", chat_template=_LLAVA_TEMPLATE,
                       image_token="<image>", num_additional_image_tokens=1,
                       ).save_pretrained(out)  # fmt: skip


def _build_llava_onevision(out: Path) -> None:
    """LLaVA-OneVision: a tiny SigLIP (32 px tiles, 8 px patches: 16 tokens a tile), a Qwen2 LM,
    "anyres" tiling on a small grid of pinpoints (a wide image gets more tiles than a square
    one); the Hub files with the ChatML template and no video processor."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
    )

    tok = _bpe_tokenizer("Qwen2Tokenizer", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<image>", "<video>"]})  # fmt: skip
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    text = dict(model_type="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=512, initializer_range=0.2, bos_token_id=eos,
                eos_token_id=eos, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(model_type="siglip_vision_model", image_size=_IMAGE, patch_size=8, **_TINY)
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False,
    )  # fmt: skip
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = eos, eos, tok.pad_token_id
    model.save_pretrained(out)
    LlavaOnevisionImageProcessor(
        size={"height": _IMAGE, "width": _IMAGE}, image_grid_pinpoints=pinpoints
    ).save_pretrained(out)
    template = _QWEN_VL_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")
    tok.chat_template = template
    tok.save_pretrained(out)
    (out / "chat_template.jinja").write_text(template)
    (out / "processor_config.json").write_text(json.dumps({
        "num_image_tokens": (_IMAGE // 8) ** 2, "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": "anyres_max_9", "image_token": "<image>"}))  # fmt: skip


# Gemma 3's turns; the image placeholder is <start_of_image>, which its processor expands.
_GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _build_gemma3(out: Path) -> None:
    """Gemma 3: a tiny SigLIP (32 px, 8 px patches) pooled to 4 soft tokens per image, a Gemma 3
    LM (sliding + global layers); the processor layout with <start_of_image> / <end_of_image>
    and the chat template; turns end with <end_of_turn> (the generation EOS)."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tok = _bpe_tokenizer("GPT2Tokenizer", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                         extra_special_tokens={"boi_token": "<start_of_image>",
                                               "eoi_token": "<end_of_image>",
                                               "image_token": "<image_soft_token>"})  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    ids = tok.convert_tokens_to_ids
    eot = ids("<end_of_turn>")
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                query_pre_attn_scalar=16, sliding_window=16, max_position_embeddings=256,
                initializer_range=0.2, bos_token_id=tok.bos_token_id, eos_token_id=eot,
                pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(model_type="siglip_vision_model", image_size=_IMAGE, patch_size=8, **_TINY)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
                          image_token_index=tok.image_token_id)  # fmt: skip
    model = Gemma3ForConditionalGeneration(config).eval()
    # transformers initialises the image projection to zeros (images would change nothing).
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.5)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, [tok.eos_token_id, eot]
    gen.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    improc = Gemma3ImageProcessor(size={"height": _IMAGE, "width": _IMAGE})
    Gemma3Processor(image_processor=improc, tokenizer=tok, chat_template=_GEMMA3_TEMPLATE,
                    image_seq_length=4).save_pretrained(out)  # fmt: skip


# SmolVLM's conversation format: "User:<image> {prompt}<end_of_utterance>\nAssistant: ...".
_IDEFICS3_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _build_idefics3(out: Path) -> None:
    """Idefics3 / SmolVLM: a tiny SigLIP-style encoder (32 px, 8 px patches), pixel shuffle by 2
    (4 image tokens per image), a Llama; the SmolVLM processor layout with a chat template."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tok, _ = _blip2_lm("opt")
    tok.add_special_tokens({"additional_special_tokens": [
        "<image>", "<fake_token_around_image>", "<end_of_utterance>", "<global-img>"]})  # fmt: skip
    eou = tok.convert_tokens_to_ids("<end_of_utterance>")
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                max_position_embeddings=128, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                eos_token_id=eou, pad_token_id=tok.pad_token_id)  # fmt: skip
    config = Idefics3Config(
        vision_config=dict(image_size=_IMAGE, patch_size=8, **_TINY),
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = tok.bos_token_id, eou, tok.pad_token_id
    model.save_pretrained(out)
    improc = Idefics3ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": _IMAGE},
        max_image_size={"longest_edge": _IMAGE},
    )
    processor = Idefics3Processor(
        image_processor=improc, tokenizer=tok, image_seq_len=4, chat_template=_IDEFICS3_TEMPLATE
    )
    processor.save_pretrained(out)


def _build_paligemma(out: Path) -> None:
    """PaliGemma: a tiny SigLIP (32 px, 8 px patches: 16 image tokens) + Gemma, the processor
    layout of google/paligemma-* (its 1,152 <loc>/<seg> tokens included)."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tok = _bpe_tokenizer("GPT2Tokenizer", pad_token="<pad>")
    tok.add_special_tokens({"bos_token": "<bos>", "eos_token": "<eos>",
                            "additional_special_tokens": ["<image>"]})  # fmt: skip
    tok.image_token, tok.image_token_id = "<image>", tok.convert_tokens_to_ids("<image>")
    improc = SiglipImageProcessor(size={"height": _IMAGE, "width": _IMAGE})
    improc.image_seq_length = (_IMAGE // 8) ** 2  # type: ignore[attr-defined]
    processor = PaliGemmaProcessor(image_processor=improc, tokenizer=tok)  # adds <loc>/<seg>
    text = dict(model_type="gemma", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                max_position_embeddings=128, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(model_type="siglip_vision_model", image_size=_IMAGE, patch_size=8, **_TINY)
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=32,
                             image_token_index=tok.image_token_id)  # fmt: skip
    model = PaliGemmaForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, tok.eos_token_id
    gen.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)


# Qwen's ChatML with the Qwen-VL image markers and the default system turn of Qwen2.5-VL.
_QWEN_VL_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _build_qwen_vl(out: Path, *, version: int = 25) -> None:
    """Qwen2.5-VL (`version=25`) or Qwen3-VL (30): a tiny ViT at the image's own resolution
    (14 / 16 px patches, 2x2 merged: a 56x28 image is 2 tokens), a Qwen LM with multimodal
    rotary positions; the Hub files (image processor, tokenizer, chat template, no video
    processor)."""
    import transformers
    from transformers import Qwen2VLImageProcessor

    tok = _bpe_tokenizer("Qwen2Tokenizer", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
        "<|video_pad|>"]})  # fmt: skip
    ids = tok.convert_tokens_to_ids
    patch = 14 if version == 25 else 16
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                max_position_embeddings=256, initializer_range=0.2,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                pad_token_id=tok.pad_token_id)  # fmt: skip
    vision: dict[str, Any] = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                  out_hidden_size=32, patch_size=patch, spatial_merge_size=2,
                                  temporal_patch_size=2)  # fmt: skip
    if version == 25:
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                   "mrope_section": [2, 3, 3]}  # fmt: skip
        vision.update(window_size=4 * patch, fullatt_block_indexes=[1])
        cfg_cls, model_cls = "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"
    else:
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                   "mrope_section": [2, 3, 3],
                                   "mrope_interleaved": True}  # fmt: skip
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
        cfg_cls, model_cls = "Qwen3VLConfig", "Qwen3VLForConditionalGeneration"
    config = getattr(transformers, cfg_cls)(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
    )  # fmt: skip
    model = getattr(transformers, model_cls)(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = text["bos_token_id"], text["eos_token_id"]
    gen.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    # Small bounds so tests see images of 1 to 16 tokens (the real ones allow ~16k).
    grid = patch * 2
    Qwen2VLImageProcessor(
        patch_size=patch, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": grid * grid, "longest_edge": 16 * grid * grid},
    ).save_pretrained(out)  # fmt: skip
    tok.chat_template = _QWEN_VL_TEMPLATE
    tok.save_pretrained(out)
    (out / "chat_template.jinja").write_text(_QWEN_VL_TEMPLATE)


# Florence-2's parsing rules (its processor_config.json): which answers hold boxes or quads.
_FLORENCE2_PARSING = {
    "ocr": {
        "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"
        r"<loc_(\d+)><loc_(\d+)><loc_(\d+)>",
        "AREA_THRESHOLD": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def _build_florence2(out: Path) -> None:
    """Florence-2: a tiny DaViT (4 stages, 64 px: 2x2 tokens + 1 pooled), a BART, the BART
    tokenizer with the 1,000 <loc_k> tokens and Florence's markup tokens, a CLIP image processor
    and the parsing rules."""
    from transformers import (
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    tok = _bpe_tokenizer("BartTokenizer", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>",
                         extra_special_tokens={"image_token": "<image>"})  # fmt: skip
    markup = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>"]
    tok.add_special_tokens({"additional_special_tokens":
                            [*(f"<loc_{k}>" for k in range(1000)), *markup]})  # fmt: skip
    size = 64
    vision = dict(depths=[1, 1, 1, 1], embed_dim=[8, 16, 16, 32], num_heads=[1, 1, 1, 2],
                  num_groups=[1, 1, 1, 2], window_size=2, projection_dim=32,
                  max_temporal_embeddings=4, max_position_embeddings=8,
                  drop_path_rate=0.0)  # fmt: skip
    text = dict(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                decoder_ffn_dim=64, max_position_embeddings=256, init_std=0.2,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                forced_eos_token_id=None)  # fmt: skip
    config = Florence2Config(vision_config=vision, text_config=text,
                             image_token_id=tok.image_token_id)  # fmt: skip
    model = Florence2ForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tok.bos_token_id, tok.eos_token_id
    gen.pad_token_id, gen.decoder_start_token_id = tok.pad_token_id, tok.eos_token_id
    gen.forced_eos_token_id = None  # (BART's default, id 2, is a text token here)
    model.save_pretrained(out)
    improc = CLIPImageProcessor(size={"height": size, "width": size}, do_center_crop=False,
                                crop_size={"height": size, "width": size})  # fmt: skip
    improc.image_seq_length = (size // 32) ** 2 + 1  # type: ignore[attr-defined]
    Florence2Processor(image_processor=improc, tokenizer=tok,
                       post_processor_config=_FLORENCE2_PARSING).save_pretrained(out)  # fmt: skip


def _build_got_ocr2(out: Path) -> None:
    """GOT-OCR 2.0: a tiny SAM-style ViT (128 px, 16 px patches, its conv neck) pooled to 4
    image tokens, a Qwen2 LM; the processor layout (it writes the OCR turn itself)."""
    from transformers import (
        GotOcr2Config,
        GotOcr2ForConditionalGeneration,
        GotOcr2ImageProcessor,
        GotOcr2Processor,
    )

    tok = _bpe_tokenizer("Qwen2Tokenizer", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"]})  # fmt: skip
    end = tok.convert_tokens_to_ids("<|im_end|>")
    text = dict(model_type="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=256, initializer_range=0.2, bos_token_id=end,
                eos_token_id=end, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                  image_size=128, patch_size=16, window_size=4, global_attn_indexes=[1],
                  mlp_dim=64, initializer_range=0.2)  # fmt: skip
    config = GotOcr2Config(vision_config=vision, text_config=text, image_seq_length=4,
                           image_token_index=tok.convert_tokens_to_ids("<imgpad>"),
                           tie_word_embeddings=False)  # fmt: skip
    model = GotOcr2ForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = end, end, tok.pad_token_id
    model.save_pretrained(out)
    improc = GotOcr2ImageProcessor(size={"height": 128, "width": 128})
    GotOcr2Processor(image_processor=improc, tokenizer=tok).save_pretrained(out)


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

    vocab, merges = _bpe_merges(CORPUS, specials=["<|startoftext|>", "<|endoftext|>"], size=300)
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")


def _bpe_merges(
    corpus: Iterable[str], *, specials: list[str], size: int
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train CLIP-style BPE (words split by the `tokenizers` Whitespace pre-tokeniser, the last
    symbol of a word marked `</w>`): merge the most frequent pair, ties by spelling.

    Written here instead of `tokenizers`' BpeTrainer, which orders the alphabet and breaks ties
    between equal-count merges in hash order, so its vocabulary changed in every process.
    """
    pre = pre_tokenizers.Whitespace()
    counts: dict[tuple[str, ...], int] = {}
    for line in corpus:
        for word, _span in pre.pre_tokenize_str(line.lower()):
            symbols = (*word[:-1], word[-1] + "</w>")
            counts[symbols] = counts.get(symbols, 0) + 1
    tokens = [*specials, *sorted({sym for w in counts for sym in w})]
    merges: list[tuple[str, str]] = []
    while len(tokens) < size:
        pairs: dict[tuple[str, str], int] = {}
        for w, n in counts.items():
            for pair in itertools.pairwise(w):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda pr: (-pairs[pr], pr))
        merges.append(best)
        tokens.append(best[0] + best[1])
        merged: dict[tuple[str, ...], int] = {}
        for w, n in counts.items():
            out: list[str] = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        counts = merged
    return {t: i for i, t in enumerate(tokens)}, merges


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


def frcnn_vg_config(**sizes: Any) -> dict:
    """The Visual Genome Faster R-CNN's config.yaml (unc-nlp/frcnn-vg-finetuned: ResNet-101 C4,
    1,600 objects, 400 attributes, 36 regions), every key the reference code reads; `sizes`
    overrides ("RESNETS.DEPTH": 50, ...) make a small one of the same layout."""
    cfg: dict[str, Any] = {
        "ANCHOR_GENERATOR": {"ASPECT_RATIOS": [[0.5, 1.0, 2.0]], "OFFSET": 0.0,
                             "SIZES": [[32, 64, 128, 256, 512]]},
        "BACKBONE": {"FREEZE_AT": 2},
        "INPUT": {"FORMAT": "BGR", "MAX_SIZE_TEST": 1000, "MIN_SIZE_TEST": 600},
        "MAX_DETECTIONS": 36,
        "MIN_DETECTIONS": 10,
        "MODEL": {"DEVICE": "cpu", "MAX_POOL": True,
                  "PIXEL_MEAN": [102.9801, 115.9465, 122.7717], "PIXEL_STD": [1.0, 1.0, 1.0]},
        "PAD_VALUE": 0.0,
        "PROPOSAL_GENERATOR": {"HIDDEN_CHANNELS": 512, "MIN_SIZE": 0},
        "RESNETS": {"DEPTH": 101, "NORM": "BN", "NUM_GROUPS": 1, "OUT_FEATURES": ["res4"],
                    "RES2_OUT_CHANNELS": 256, "RES5_DILATION": 1, "STEM_OUT_CHANNELS": 64,
                    "STRIDE_IN_1X1": True, "WIDTH_PER_GROUP": 64},
        "ROI_BOX_HEAD": {"ATTR": True, "BBOX_REG_WEIGHTS": [10.0, 10.0, 5.0, 5.0],
                         "CLS_AGNOSTIC_BBOX_REG": False, "NUM_ATTRS": 400,
                         "POOLER_RESOLUTION": 14, "POOLER_SAMPLING_RATIO": 2,
                         "RES5HALVE": False, "SMOOTH_L1_BETA": 0.0},
        "ROI_HEADS": {"IN_FEATURES": ["res4"], "IOU_LABELS": [0, 1], "IOU_THRESHOLDS": [0.5],
                      "NMS_THRESH_TEST": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                      "NUM_CLASSES": 1600, "POSITIVE_FRACTION": 0.5,
                      "PROPOSAL_APPEND_GT": True, "SCORE_THRESH_TEST": 0.2},
        "RPN": {"BATCH_SIZE_PER_IMAGE": 256, "BBOX_REG_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
                "BOUNDARY_THRESH": -1, "IN_FEATURES": ["res4"], "IOU_LABELS": [0, -1, 1],
                "IOU_THRESHOLDS": [0.3, 0.7], "LOSS_WEIGHT": 1.0, "NMS_THRESH": 0.7,
                "POSITIVE_FRACTION": 0.5, "POST_NMS_TOPK_TEST": 300,
                "POST_NMS_TOPK_TRAIN": 2000, "PRE_NMS_TOPK_TEST": 6000,
                "PRE_NMS_TOPK_TRAIN": 12000, "SMOOTH_L1_BETA": 0.0},
        "SIZE_DIVISIBILITY": 0,
    }  # fmt: skip
    for path, value in sizes.items():
        *parents, leaf = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[leaf] = value
    return cfg


# The tiny detector: ResNet-50's depth at 1/8 of its width, 64 px inputs, 20 objects and 10
# attributes (named in vocab files, as the real folder can be), 36 regions.
TINY_FRCNN = {"RESNETS.DEPTH": 50, "RESNETS.STEM_OUT_CHANNELS": 8,
              "RESNETS.RES2_OUT_CHANNELS": 32, "RESNETS.WIDTH_PER_GROUP": 8,
              "PROPOSAL_GENERATOR.HIDDEN_CHANNELS": 16, "ANCHOR_GENERATOR.SIZES": [[8, 16, 32]],
              "INPUT.MIN_SIZE_TEST": 64, "INPUT.MAX_SIZE_TEST": 96,
              "ROI_HEADS.NUM_CLASSES": 20, "ROI_BOX_HEAD.NUM_ATTRS": 10,
              "ROI_BOX_HEAD.POOLER_RESOLUTION": 4, "RPN.PRE_NMS_TOPK_TEST": 200,
              "RPN.POST_NMS_TOPK_TEST": 60}  # fmt: skip
_FRCNN_OBJECTS = ("car", "tree", "building", "person", "dog", "cat", "sky", "road", "window",
                  "sign", "ball", "table", "chair", "cup", "shirt", "hat", "wall", "grass",
                  "cloud", "boat")  # fmt: skip
_FRCNN_ATTRIBUTES = ("red", "green", "blue", "white", "black", "tall", "small", "large",
                     "wooden", "round")  # fmt: skip


def _build_frcnn(out: Path, **sizes: Any) -> None:
    """The detector in its Hub layout: config.yaml + pytorch_model.bin (+ label files)."""
    import torch
    import yaml

    from im2text.families.frcnn import GeneralizedRCNN, read_config

    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(frcnn_vg_config(**(sizes or TINY_FRCNN))))
    model = GeneralizedRCNN(read_config(out / "config.yaml"))
    with torch.no_grad():  # distinct class scores: random heads, not detectron2's near-zero init
        for name, p in model.named_parameters():
            if name.startswith("roi_heads.box_predictor") and p.dim() > 1:
                p.normal_(0, 0.2)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "objects_vocab.txt").write_text("\n".join(_FRCNN_OBJECTS) + "\n")
    (out / "attributes_vocab.txt").write_text("\n".join(_FRCNN_ATTRIBUTES) + "\n")


# easy-vqa's 13 answers and a few more: the tiny VisualBERT's answer labels.
VQA_ANSWERS = ("yes", "no", "circle", "rectangle", "triangle", "red", "green", "blue", "black",
               "gray", "teal", "brown", "yellow", "dog", "cat", "two")  # fmt: skip


def _build_visualbert(out: Path, *, head: str = "vqa", hidden: int = 32, layers: int = 2,
                      heads: int = 2, init_range: float = 0.2) -> None:  # fmt: skip
    """VisualBERT (VQA; NLVR2 with `head="nlvr2"`; pre-trained with "pre") over the tiny
    detector (256-d regions, in `detector/`), a WordPiece tokenizer, labels in the config."""
    from transformers import (
        VisualBertConfig,
        VisualBertForPreTraining,
        VisualBertForQuestionAnswering,
        VisualBertForVisualReasoning,
    )

    tok = _bert_tokenizer()
    labels = {"vqa": list(VQA_ANSWERS), "nlvr2": ["false", "true"], "pre": ["LABEL_0", "LABEL_1"]}[
        head
    ]
    config = VisualBertConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, visual_embedding_dim=256,
        max_position_embeddings=128, initializer_range=init_range, pad_token_id=tok.pad_token_id,
        id2label=dict(enumerate(labels)),
        label2id={a: i for i, a in enumerate(labels)},
    )  # fmt: skip
    cls = {"vqa": VisualBertForQuestionAnswering, "nlvr2": VisualBertForVisualReasoning,
           "pre": VisualBertForPreTraining}[head]  # fmt: skip
    cls(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    _build_frcnn(out / "detector")


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
    # Start-token variants (the unconditional caption's first LLM token, see families/blip2.py):
    # an OPT tokenizer that adds no BOS, and T5 configs whose bos_token_id is set.
    "blip2-opt-nobos": lambda out: _build_blip2(out, lm="opt", add_bos=False),
    "blip2-t5-eosbos": lambda out: _build_blip2(out, lm="t5", t5_bos="eos"),
    "blip2-t5-bos": lambda out: _build_blip2(out, lm="t5", t5_bos="new"),
    "instructblip-opt": lambda out: _build_instructblip(out, lm="opt"),
    "instructblip-opt-nobos": lambda out: _build_instructblip(out, lm="opt", add_bos=False),
    "instructblip-t5-bos": lambda out: _build_instructblip(out, lm="t5", t5_bos="new"),
    "git": _build_git,
    "vision-encoder-decoder": _build_vision_encoder_decoder,
    "llava": lambda out, **kw: _build_llava(out, **kw),
    "idefics3": _build_idefics3,
    "paligemma": _build_paligemma,
    "llava-onevision": _build_llava_onevision,
    "gemma3": _build_gemma3,
    "llava-next": _build_llava_next,
    "florence2": _build_florence2,
    "got-ocr2": _build_got_ocr2,
    "frcnn": _build_frcnn,
    "visualbert-vqa": lambda out, **kw: _build_visualbert(out, **kw),
    "visualbert-nlvr2": lambda out: _build_visualbert(out, head="nlvr2"),
    "visualbert-pre": lambda out: _build_visualbert(out, head="pre"),
    "qwen2.5-vl": _build_qwen_vl,
    "qwen3-vl": lambda out: _build_qwen_vl(out, version=30),
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
    "llava",
    "idefics3",
    "paligemma",
    "llava-onevision",
    "gemma3",
    "llava-next",
    "florence2",
    "qwen2.5-vl",
    "qwen3-vl",
)


def build_checkpoint(kind: str, root: str | os.PathLike, **kwargs) -> Path:
    """Build a tiny random checkpoint of `kind` under `root/kind` (once; reused if present).

    Args:
        kind: one of `TINY_FAMILIES`, or "blip" with keyword arguments for a custom size.
        root: parent folder; the checkpoint goes to `root/kind` (default size) or
            `root/kind-HASH` (HASH of `kwargs`), so each size is cached under its own name.
        **kwargs: passed to the builder (e.g. `hidden=96, layers=2, image_size=64` for BLIP).
    """
    import hashlib
    import json

    import torch

    if kind not in _BUILDERS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(TINY_KINDS)}")
    name = kind
    if kwargs:  # a custom size must never be answered with the cached default one
        digest = hashlib.sha1(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()
        name = f"{kind}-{digest[:10]}"
    out = Path(root) / name
    if (out / "config.json").exists() or (out / "config.yaml").exists():
        return out
    torch.manual_seed(0)
    tmp = out.with_name(out.name + ".tmp")
    builder = _BUILDERS[kind]
    builder(tmp, **kwargs) if kwargs else builder(tmp)
    os.replace(tmp, out)
    return out
