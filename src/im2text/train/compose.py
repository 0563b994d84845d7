"""Compose a VisionEncoderDecoder from any vision encoder and any causal LM, ready to train."""

from __future__ import annotations

from pathlib import Path


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
