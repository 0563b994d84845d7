"""Compose a VisionEncoderDecoder from any vision encoder and any causal LM, ready to train."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def compose(encoder: str, decoder: str, out: str | Path) -> Path:
    """Build `encoder` (ViT, DeiT, BEiT, Swin, ...) + `decoder` (GPT-2, OPT, ...) with fresh
    cross-attention, the encoder's image processor and the decoder's tokenizer, in `out`.

    Decoders without a pad token (GPT-2) reuse EOS, and generation starts from BOS — the
    vit-gpt2 recipe — so the result captions as soon as it is trained.
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoTokenizer,
        VisionEncoderDecoderModel,
    )

    tokenizer = AutoTokenizer.from_pretrained(decoder)
    image_processor = AutoImageProcessor.from_pretrained(encoder)
    # The decoder must attend to the image: a causal LM config gains cross-attention layers.
    dec_config = AutoConfig.from_pretrained(decoder)
    dec_config.is_decoder = True
    dec_config.add_cross_attention = True
    model = VisionEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder, decoder, decoder_config=dec_config
    )
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if bos is None or eos is None:
        raise ValueError(f"decoder tokenizer {decoder!r} has no BOS/EOS (or CLS/SEP) token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = bos
        cfg.pad_token_id = pad
        cfg.eos_token_id = eos
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


def compose_blip2(
    vision: str,
    llm: str,
    out: str | Path,
    *,
    num_query_tokens: int = 32,
    qformer: str | None = None,
    qformer_hidden: int = 768,
    qformer_layers: int = 12,
    qformer_heads: int = 12,
    cross_attention_frequency: int = 2,
    seed: int = 0,
) -> Path:
    """Build a `Blip2ForConditionalGeneration` checkpoint in `out` around any LLM.

    vision: a BLIP, BLIP-2 or InstructBLIP checkpoint (or a BLIP vision model): its image
        encoder and image processor are taken unchanged.
    llm: any causal or encoder-decoder LM transformers loads; its weights and tokenizer are
        taken unchanged, plus an `<image>` token for the query placeholders.
    qformer: a BERT-style encoder to initialise the Q-Former from, as the paper does (self-
        attention and both feed-forward branches from BERT; cross-attention new); without it a
        fresh Q-Former of `qformer_hidden` x `qformer_layers` is built.

    The queries start at N(0, 0.02) (the paper), not at transformers' zeros: identical queries
    receive identical gradients and would never tell apart what they attend to. Every new
    weight is drawn from `seed`: the same arguments build the same checkpoint.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
    )

    from im2text.families.blip2 import QFORMER_TOKENIZER

    vision_cfg, vision_state = _vision_tower(vision)
    lm_config = AutoConfig.from_pretrained(llm)
    seq2seq = bool(getattr(lm_config, "is_encoder_decoder", False))
    loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    lm = loader.from_pretrained(llm)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    embeddings: Any = lm.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    image_token = int(tokenizer.convert_tokens_to_ids("<image>"))  # type: ignore[arg-type]

    bert = None
    if qformer is not None:
        from transformers import AutoModel

        bert = AutoModel.from_pretrained(qformer)
        b = bert.config
        qformer_hidden, qformer_layers = b.hidden_size, b.num_hidden_layers
        qformer_heads = b.num_attention_heads
    q_tokenizer = _qformer_tokenizer(qformer or llm)
    q_config = Blip2QFormerConfig(
        hidden_size=qformer_hidden,
        num_hidden_layers=qformer_layers,
        num_attention_heads=qformer_heads,
        intermediate_size=bert.config.intermediate_size if bert else 4 * qformer_hidden,
        encoder_hidden_size=vision_cfg["hidden_size"],
        cross_attention_frequency=cross_attention_frequency,
        use_qformer_text_input=True,  # the text branch stage 1 trains (ITC / ITM / ITG)
        vocab_size=len(q_tokenizer),
        pad_token_id=q_tokenizer.pad_token_id,
        **({"max_position_embeddings": bert.config.max_position_embeddings} if bert else {}),
    )
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**vision_cfg).to_dict(),
        qformer_config=q_config.to_dict(),
        text_config=lm.config.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=image_token,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config)
        with torch.no_grad():
            model.query_tokens.normal_(0.0, q_config.initializer_range)
        heads = _stage1_heads(model, bert)
    model.vision_model.load_state_dict(vision_state)
    model.language_model.load_state_dict(lm.state_dict())
    if bert is not None:
        result = model.qformer.load_state_dict(_qformer_from_bert(bert.state_dict()), strict=False)
        if result.unexpected_keys:
            raise ValueError(
                f"--qformer {qformer!r}: not a BERT layout ({result.unexpected_keys[:3]})"
            )
    configs: tuple[Any, ...] = (model.config.text_config, model.generation_config)
    for cfg in configs:
        cfg.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    model.eval().save_pretrained(out)
    processor = Blip2Processor(
        image_processor=AutoImageProcessor.from_pretrained(vision),
        tokenizer=tokenizer,
        num_query_tokens=num_query_tokens,
    )
    processor.save_pretrained(out)
    q_tokenizer.save_pretrained(str(out / QFORMER_TOKENIZER))
    heads.save(out)
    return out


def _qformer_tokenizer(source: str) -> Any:
    """The Q-Former's text tokenizer: BERT's (or, for a fresh Q-Former, the LLM's), with the
    tokens stage 1 reads: [CLS] / [SEP] around each text, [DEC] to start generation (ITG)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    tok.padding_side = "right"
    wanted = (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
              ("bos_token", "[DEC]"))  # fmt: skip
    missing: dict[str, Any] = {name: t for name, t in wanted if getattr(tok, name) is None}
    if tok.bos_token is not None and tok.bos_token in (tok.cls_token, tok.eos_token):
        missing["bos_token"] = "[DEC]"  # ITG's start must be a token of its own
    if missing:
        tok.add_special_tokens(missing)
    return tok


def _stage1_heads(model: Any, bert: Any) -> Any:
    """The stage-1 heads, with BERT's text embeddings when given (as the paper initialises
    them); saved beside the checkpoint with the Q-Former's tokenizer."""
    import torch

    from im2text.families.blip2 import QFormerHeads

    heads = QFormerHeads(model.config.qformer_config, model.config.image_text_hidden_size)
    if bert is not None:
        words = bert.get_input_embeddings().weight
        positions = bert.embeddings.position_embeddings.weight
        with torch.no_grad():
            n = min(len(words), heads.embeddings.word_embeddings.num_embeddings)
            heads.embeddings.word_embeddings.weight[:n] = words[:n]  # [DEC] stays new
            heads.embeddings.position_embeddings.weight.copy_(positions)
    return heads


_VISION_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "image_size", "patch_size", "hidden_act", "layer_norm_eps")  # fmt: skip


def _vision_tower(source: str) -> tuple[dict, dict]:
    """(BLIP-2 vision config fields, `vision_model` state dict) of a BLIP-family checkpoint.
    BLIP and BLIP-2 image encoders share one layout (fused qkv, same names), so the weights
    move unchanged."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(source)
    if config.model_type not in ("blip", "blip-2", "instructblip", "blip_vision_model",
                                 "blip_2_vision_model", "instructblip_vision_model"):  # fmt: skip
        raise ValueError(
            f"--vision {source!r} is a {config.model_type} checkpoint; BLIP-2's image encoder "
            "comes from a BLIP, BLIP-2 or InstructBLIP checkpoint (the same ViT layout)"
        )
    vcfg = getattr(config, "vision_config", config)
    fields = {k: getattr(vcfg, k) for k in _VISION_KEYS if hasattr(vcfg, k)}
    if config.model_type in ("blip", "blip-2", "instructblip"):
        # The whole model would load an LLM too for BLIP-2: read only the vision weights.
        state = _prefixed_weights(source, "vision_model.")
    else:
        state = AutoModel.from_pretrained(source).state_dict()
    return fields, state


def _prefixed_weights(source: str, prefix: str) -> dict:
    """The tensors under `prefix` in a checkpoint's safetensors files (local or Hub)."""
    from huggingface_hub import snapshot_download
    from safetensors import safe_open

    folder = Path(source)
    if not folder.is_dir():
        folder = Path(snapshot_download(source, allow_patterns=["*.safetensors", "*.json"]))
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith(prefix):
                    state[key[len(prefix) :]] = f.get_tensor(key)
    if not state:
        raise ValueError(f"{source}: no {prefix}* weights in its safetensors files")
    return state


def _qformer_from_bert(bert: dict) -> dict:
    """BERT encoder weights under Q-Former names: self-attention and the feed-forward for both
    the query and the text branch (the paper initialises both from BERT); cross-attention and
    the text embeddings are not in a Q-Former and stay new."""
    out = {}
    for key, value in bert.items():
        key = key.removeprefix("bert.")
        if key.startswith("embeddings.LayerNorm."):
            out["layernorm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("encoder.layer."):
            key = key.replace(".attention.self.", ".attention.attention.")
            out[key] = value
            for branch in ("intermediate", "output"):
                if f".{branch}." in key and ".attention." not in key:
                    out[key.replace(f".{branch}.", f".{branch}_query.")] = value
    return out
