"""Presets as data: short names for well-known checkpoints, with their pinned settings.

Any Hub id or local directory loads too; the family is then read from its config.
"""

from __future__ import annotations

from im2text.config import Preset

# Generation defaults follow each model's paper / model card (BLIP: beam 3, max 20, min 5).
_BLIP_GEN = {"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 5}
_BLIP2_GEN = {"num_beams": 5, "max_new_tokens": 30, "min_new_tokens": 1}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="blip-base",
            family="blip",
            hub_id="Salesforce/blip-image-captioning-base",
            tasks=("caption",),
            description="BLIP ViT-B captioner fine-tuned on COCO (224M params)",
            generation=_BLIP_GEN,
            license="bsd-3-clause",
        ),
        Preset(
            name="blip-large",
            family="blip",
            hub_id="Salesforce/blip-image-captioning-large",
            tasks=("caption",),
            description="BLIP ViT-L captioner fine-tuned on COCO (470M params)",
            generation=_BLIP_GEN,
            license="bsd-3-clause",
        ),
        Preset(
            name="blip2-opt-2.7b",
            family="blip2",
            hub_id="Salesforce/blip2-opt-2.7b",
            tasks=("caption", "ask"),
            description="BLIP-2 with OPT-2.7b language model (3.9B params)",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="blip2-flan-t5-xl",
            family="blip2",
            hub_id="Salesforce/blip2-flan-t5-xl",
            tasks=("caption", "ask"),
            description="BLIP-2 with Flan-T5-XL language model (3.9B params)",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="instructblip-flan-t5-xl",
            family="instructblip",
            hub_id="Salesforce/instructblip-flan-t5-xl",
            tasks=("caption", "ask"),
            description="InstructBLIP with Flan-T5-XL: follows instructions about an image",
            prompt="A short image description:",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="vit-gpt2",
            family="vision-encoder-decoder",
            hub_id="nlpconnect/vit-gpt2-image-captioning",
            tasks=("caption",),
            description="ViT encoder + GPT-2 decoder trained on COCO",
            generation={"num_beams": 4, "max_new_tokens": 16},
            license="apache-2.0",
        ),
        Preset(
            name="git-base",
            family="git",
            hub_id="microsoft/git-base-coco",
            tasks=("caption",),
            description="GIT base fine-tuned on COCO (177M params)",
            generation={"max_new_tokens": 50},
            license="mit",
        ),
        Preset(
            name="git-large",
            family="git",
            hub_id="microsoft/git-large-coco",
            tasks=("caption",),
            description="GIT large fine-tuned on COCO (394M params)",
            generation={"max_new_tokens": 50},
            license="mit",
        ),
        Preset(
            name="smolvlm-256m-instruct",
            family="idefics3",
            hub_id="HuggingFaceTB/SmolVLM-256M-Instruct",
            tasks=("caption", "ask", "read"),
            description="SmolVLM: SigLIP + SmolLM2-135M chat LLM (256M params), Idefics3 layout",
            generation={"max_new_tokens": 60},
            license="apache-2.0",
        ),
        Preset(
            name="smolvlm-500m-instruct",
            family="idefics3",
            hub_id="HuggingFaceTB/SmolVLM-500M-Instruct",
            tasks=("caption", "ask", "read"),
            description="SmolVLM: SigLIP + SmolLM2-360M chat LLM (500M params), Idefics3 layout",
            generation={"max_new_tokens": 60},
            license="apache-2.0",
        ),
        Preset(
            name="paligemma2-3b-mix-224",
            family="paligemma",
            hub_id="google/paligemma2-3b-mix-224",
            tasks=("caption", "ask", "read"),
            description="PaliGemma 2 mix: SigLIP + Gemma 2 2B, task prefixes (gated on the Hub)",
            generation={"max_new_tokens": 60},
            license="gemma",
        ),
        Preset(
            name="llava-interleave-qwen-0.5b",
            family="llava",
            hub_id="llava-hf/llava-interleave-qwen-0.5b-hf",
            tasks=("caption", "ask", "read"),
            description="LLaVA-Interleave: SigLIP + Qwen1.5-0.5B chat LLM (0.9B params)",
            generation={"max_new_tokens": 60},
            license="tongyi-qianwen-research",
        ),
        Preset(
            name="llava-1.5-7b",
            family="llava",
            hub_id="llava-hf/llava-1.5-7b-hf",
            tasks=("caption", "ask", "read"),
            description="LLaVA 1.5: CLIP ViT-L/14-336 + Vicuna-7B chat LLM (7B params)",
            generation={"max_new_tokens": 60},
            license="llama2",
        ),
        Preset(
            name="llava-onevision-0.5b",
            family="llava",
            hub_id="llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
            tasks=("caption", "ask", "read"),
            description="LLaVA-OneVision: SigLIP (anyres tiles) + Qwen2-0.5B chat LLM (0.9B)",
            generation={"max_new_tokens": 60},
            license="apache-2.0",
        ),
        Preset(
            name="qwen2.5-vl-3b-instruct",
            family="qwen-vl",
            hub_id="Qwen/Qwen2.5-VL-3B-Instruct",
            tasks=("caption", "ask", "read"),
            description="Qwen2.5-VL 3B: native-resolution ViT + Qwen2.5 chat LLM (3.8B params)",
            generation={"max_new_tokens": 128},
            license="qwen-research",
        ),
        Preset(
            name="qwen2.5-vl-7b-instruct",
            family="qwen-vl",
            hub_id="Qwen/Qwen2.5-VL-7B-Instruct",
            tasks=("caption", "ask", "read"),
            description="Qwen2.5-VL 7B: native-resolution ViT + Qwen2.5 chat LLM (8.3B params)",
            generation={"max_new_tokens": 128},
            license="apache-2.0",
        ),
        Preset(
            name="qwen3-vl-2b-instruct",
            family="qwen-vl",
            hub_id="Qwen/Qwen3-VL-2B-Instruct",
            tasks=("caption", "ask", "read"),
            description="Qwen3-VL 2B (the smallest): native-resolution ViT + Qwen3 chat LLM",
            generation={"max_new_tokens": 128},
            license="apache-2.0",
        ),
        Preset(
            name="gemma-3-4b-it",
            family="image-text-to-text",
            hub_id="google/gemma-3-4b-it",
            tasks=("caption", "ask", "read"),
            description="Gemma 3 4B instruct: SigLIP (256 soft tokens) + Gemma 3 LM (gated)",
            generation={"max_new_tokens": 128},
            license="gemma",
        ),
        Preset(
            name="florence-2-base",
            family="florence2",
            hub_id="florence-community/Florence-2-base",
            tasks=("caption", "read", "detect"),
            description="Florence-2 base: DaViT + BART, task tokens (captions, OCR, boxes; 0.23B)",
            generation={"max_new_tokens": 256, "num_beams": 3},
            license="mit",
        ),
        Preset(
            name="florence-2-large",
            family="florence2",
            hub_id="florence-community/Florence-2-large",
            tasks=("caption", "read", "detect"),
            description="Florence-2 large: DaViT + BART, task tokens (captions, OCR, boxes; 0.77B)",
            generation={"max_new_tokens": 256, "num_beams": 3},
            license="mit",
        ),
        Preset(
            name="got-ocr-2",
            family="got-ocr2",
            hub_id="stepfun-ai/GOT-OCR-2.0-hf",
            tasks=("read",),
            description="GOT-OCR 2.0: document OCR VLM (SAM-style ViT + Qwen2-0.5B; 0.6B params)",
            generation={"max_new_tokens": 1024},
            license="apache-2.0",
        ),
        Preset(
            name="frcnn-vg",
            family="frcnn",
            hub_id="unc-nlp/frcnn-vg-finetuned",
            tasks=("detect",),
            description="Visual Genome Faster R-CNN (ResNet-101 C4): 36 regions, 1,600 objects, "
            "400 attributes; the features VisualBERT / LXMERT read",
        ),
        Preset(
            name="visualbert-vqa",
            family="visualbert",
            hub_id="uclanlp/visualbert-vqa",
            tasks=("ask",),
            description="VisualBERT VQA (BERT-base over 36 Visual Genome regions from frcnn-vg; "
            "answers from its label set)",
        ),
        Preset(
            name="visualbert-nlvr2",
            family="visualbert-nlvr2",
            hub_id="uclanlp/visualbert-nlvr2",
            tasks=("ask",),
            description="VisualBERT NLVR2: is a statement about two images (side by side) true? "
            "(reads 1,024-d Detectron regions: needs such a detector in its detector/ folder)",
        ),
        Preset(
            name="visualbert-vqa-coco-pre",
            family="visualbert-pre",
            hub_id="uclanlp/visualbert-vqa-coco-pre",
            tasks=("match",),
            description="VisualBERT pre-trained on COCO captions: image-text match scores and "
            "joint image-text embeddings over frcnn-vg's regions",
        ),
        Preset(
            name="blip-vqa-base",
            family="blip-vqa",
            hub_id="Salesforce/blip-vqa-base",
            tasks=("ask",),
            description="BLIP ViT-B fine-tuned for VQAv2 (answers with a probability)",
            generation={"num_beams": 3, "max_new_tokens": 10},
            license="bsd-3-clause",
        ),
        Preset(
            name="blip-vqa-capfilt-large",
            family="blip-vqa",
            hub_id="Salesforce/blip-vqa-capfilt-large",
            tasks=("ask",),
            description="BLIP ViT-B (CapFilt-L pre-training) fine-tuned for VQAv2",
            generation={"num_beams": 3, "max_new_tokens": 10},
            license="bsd-3-clause",
        ),
        Preset(
            name="git-base-vqav2",
            family="git",
            hub_id="microsoft/git-base-vqav2",
            tasks=("ask",),
            description="GIT base fine-tuned on VQAv2",
            generation={"max_new_tokens": 10},
            license="mit",
        ),
        Preset(
            name="blip-itm-base-coco",
            family="blip-itm",
            hub_id="Salesforce/blip-itm-base-coco",
            tasks=("match", "classify", "embed"),
            description="BLIP ViT-B image-text matching (ITM head + ITC embeddings), COCO",
            license="bsd-3-clause",
        ),
        Preset(
            name="clip-vit-base-patch32",
            family="clip",
            hub_id="openai/clip-vit-base-patch32",
            tasks=("match", "classify", "embed"),
            description="CLIP ViT-B/32: zero-shot labels, retrieval embeddings",
            license="mit",
        ),
        Preset(
            name="clip-vit-large-patch14",
            family="clip",
            hub_id="openai/clip-vit-large-patch14",
            tasks=("match", "classify", "embed"),
            description="CLIP ViT-L/14: zero-shot labels, retrieval embeddings",
            license="mit",
        ),
        Preset(
            name="vit-base-patch16-224",
            family="vit",
            hub_id="google/vit-base-patch16-224",
            tasks=("classify",),
            description="ViT-B/16 supervised ImageNet-1k classifier (top-k labels)",
            license="apache-2.0",
        ),
        Preset(
            name="trocr-base-printed",
            family="vision-encoder-decoder",
            hub_id="microsoft/trocr-base-printed",
            tasks=("read",),
            description="TrOCR base, printed text lines (full pages via the PP-OCR detector)",
            generation={"num_beams": 4, "max_new_tokens": 64},
            license="mit",
        ),
        Preset(
            name="trocr-base-handwritten",
            family="vision-encoder-decoder",
            hub_id="microsoft/trocr-base-handwritten",
            tasks=("read",),
            description="TrOCR base, handwritten text lines (IAM)",
            generation={"num_beams": 4, "max_new_tokens": 64},
            license="mit",
        ),
        Preset(
            name="rapidocr",
            family="rapidocr",
            hub_id="",
            tasks=("read",),
            description="PP-OCR detection + recognition (ONNX, weights inside the wheel): offline",
            license="apache-2.0",
        ),
        Preset(
            name="tesseract",
            family="tesseract",
            hub_id="",
            tasks=("read",),
            description="Tesseract OCR (the system's tesseract binary)",
            license="apache-2.0",
        ),
    ]
}


def list_models(task: str | None = None) -> list[Preset]:
    """All presets (optionally only those trained for `task`), sorted by name."""
    return sorted(
        (p for p in PRESETS.values() if task is None or task in p.tasks), key=lambda p: p.name
    )


def get_preset(name: str) -> Preset | None:
    """The preset called `name`, or None when `name` is a Hub id or a path."""
    return PRESETS.get(name)
