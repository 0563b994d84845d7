"""VisualBERT (uclanlp/visualbert-vqa, -nlvr2, -vqa-coco-pre): BERT reading a text and the
Visual Genome detector's regions (36 x 2,048 features), from a raw image.

Quirks kept here: transformers' model takes region features, not images, so the family owns a
region detector (`frcnn.py`): from `detector/` inside the checkpoint folder, or the `frcnn-vg`
preset. VQA is a classifier over the checkpoint's answer labels (`id2label`; 3,129 for VQA v2):
the answer is the most probable label and its softmax probability the confidence (the model
was trained with a KL loss on soft answer scores); `candidates` rank labels. NLVR2 reads the two
images' regions one after the other and says whether the statement is true. The pre-trained
checkpoints match texts to images (sentence-image head) and give joint embeddings. Region features
are cached on disk by image content (`RegionCache`): training extracts each image's regions once
and reuses them across epochs and runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from im2text.families.base import CheckpointError, Family, has_tokenizer_files
from im2text.families.frcnn import FrcnnDetector
from im2text.results import Candidate

if TYPE_CHECKING:
    from PIL import Image

    from im2text.config import GenerationSettings
    from im2text.families.base import MatchScores

DETECTOR_DIR = "detector"  # the detector's folder inside a VisualBERT checkpoint
DETECTOR_PRESET = "frcnn-vg"
ANSWER_FILES = ("trainval_label2ans.json", "answers.json")  # answer names, when the config has none
# VQA v2's 3,129 answers in VisualBERT's label order (Pythia's list; see answers/README.md).
VQA_V2_ANSWERS = Path(__file__).parent / "answers" / "vqa_v2.json"
VQA_V2_SIZE = 3129


class RegionCache:
    """Region features on disk, one file per image content x detector (written atomically)."""

    def __init__(self, root: str | Path, detector: FrcnnDetector):
        # Keyed by every weight byte (~0.3 s for the full-size detector): two detectors that
        # differ anywhere never share regions.
        digest = hashlib.sha1()
        for name, t in sorted(detector.model.state_dict().items()):
            digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        self.root = Path(root) / digest.hexdigest()[:16]
        self.hits = self.misses = 0

    @staticmethod
    def key(image: Image.Image) -> str:
        return hashlib.sha1(image.tobytes() + repr((image.size, image.mode)).encode()).hexdigest()

    def get(self, image: Image.Image) -> dict[str, torch.Tensor] | None:
        path = self.root / f"{self.key(image)}.pt"
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return torch.load(path, weights_only=True)

    def put(self, image: Image.Image, regions: dict[str, torch.Tensor]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{self.key(image)}.pt"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(regions, tmp)
        os.replace(tmp, path)


def default_cache_root() -> Path:
    base = os.environ.get("IM2TEXT_CACHE") or Path.home() / ".cache" / "im2text"
    return Path(base) / "regions"


class _RegionBert(Family):
    """What every VisualBERT head shares: the region detector it reads, its on-disk region
    cache, and the [CLS] text [SEP] + regions input."""

    model_types = ("visual_bert",)
    default_prompt: str | None = None
    prompt_is_prefix = False
    caption_styles: ClassVar[dict[str, str]] = {}

    detector: FrcnnDetector
    cache: RegionCache | None = None
    cache_writes = False  # training writes the regions it extracts; inference only reads
    source: str = ""

    @classmethod
    def from_pretrained(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any
    ) -> _RegionBert:
        family = super().from_pretrained(source, device=device, dtype=dtype, **hub)
        assert isinstance(family, _RegionBert)
        family.source = source
        family.attach(load_detector(source, device, hub))
        return family

    def attach(self, detector: FrcnnDetector) -> None:
        """Give the model its region detector (the widths must agree)."""
        dim = self.model.config.visual_embedding_dim
        width = detector.model.roi_heads.box_predictor.cls_score.in_features
        if dim != width:
            why = (" (uclanlp's NLVR2 checkpoints were trained on 1,024-d Detectron features, "
                   f"which {DETECTOR_PRESET} does not give)" if dim == 1024 else "")  # fmt: skip
            raise CheckpointError(
                f"this VisualBERT reads {dim}-d region features; the detector gives {width}-d"
                f"{why}: put a detector giving {dim}-d features in the checkpoint's "
                f"{DETECTOR_DIR}/ folder"
            )
        self.detector = detector
        self.cache = RegionCache(default_cache_root(), detector)

    # uclanlp's Hub checkpoints hold only config.json + weights: VisualBERT reads BERT's
    # uncased WordPiece vocabulary (as transformers' VisualBERT demo loads it).
    needs_tokenizer = False
    fallback_tokenizer: ClassVar[str] = "google-bert/bert-base-uncased"

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        """The checkpoint's tokenizer; a checkpoint without one gets BERT's uncased one."""
        from transformers import AutoTokenizer

        folder = Path(source)
        # A Hub id: does the repo (or its cached snapshot) hold a vocabulary?
        own = has_tokenizer_files(folder) if folder.is_dir() else _hub_has_tokenizer(source, hub)
        if own:
            return AutoTokenizer.from_pretrained(source, **hub)
        kw = {k: v for k, v in hub.items() if k in ("local_files_only", "cache_dir", "token")}
        try:
            return AutoTokenizer.from_pretrained(cls.fallback_tokenizer, **kw)
        except Exception as e:
            raise CheckpointError(
                f"{source} has no tokenizer files and BERT's ({cls.fallback_tokenizer}), which "
                f"VisualBERT reads, is not available: {e}"
            ) from e

    def save_pretrained(self, directory: str) -> None:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.detector.save_pretrained(str(Path(directory) / DETECTOR_DIR))

    @property
    def image_size(self) -> int | None:
        return self.detector.image_size

    def regions(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, R, D) region features, one image at a time (a batch pads images to one size,
        which moves features near the borders: answers would depend on the batch)."""
        out = []
        for im in images:
            found = self.cache.get(im) if self.cache is not None else None
            if found is None:
                found = self.detector.regions([im])[0]
                if self.cache is not None and self.cache_writes:
                    self.cache.put(im, {"features": found["features"], "boxes": found["boxes"]})
            out.append(found["features"])
        return torch.stack(out)

    def encode(self, features: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
        """VisualBERT's inputs: [CLS] text [SEP] (segment 0), then the regions (segment 1)."""
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        n, r = features.shape[:2]
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "token_type_ids": torch.zeros_like(enc["input_ids"]),
            "visual_embeds": features,
            "visual_attention_mask": torch.ones(n, r, dtype=torch.long),
            "visual_token_type_ids": torch.ones(n, r, dtype=torch.long),
        }


class VisualBert(_RegionBert):
    """VisualBERT VQA: `ask` (answers from the label set, candidates ranked), fine-tuning."""

    key = "visualbert"
    architectures = ("VisualBertForQuestionAnswering",)
    model_class = "VisualBertForQuestionAnswering"
    tasks: ClassVar[tuple[str, ...]] = ("ask",)
    objectives: ClassVar[tuple[str, ...]] = ("lm",)  # the answer classifier's loss
    names_answers: ClassVar[bool] = True  # its labels are answers (VQA), named somewhere

    def attach(self, detector: FrcnnDetector) -> None:
        """The detector, and the label set (the config's, else an answer file)."""
        super().attach(detector)
        labels = self.model.config.id2label
        self.answers = [str(labels[i]) for i in range(len(labels))]
        if self.answers == [f"LABEL_{i}" for i in range(len(labels))] and self.names_answers:
            self.answers = self._answer_file(len(labels))
        self.answer_ids = {a: i for i, a in enumerate(self.answers)}

    def _answer_file(self, n: int) -> list[str]:
        """The answers of a checkpoint whose config names none (uclanlp/visualbert-vqa): a JSON
        list of `n` answers in label order beside the weights (`trainval_label2ans.json` or
        `answers.json`), else, for 3,129 labels, VQA v2's vocabulary shipped here."""
        import json

        candidates = [Path(self.source) / name for name in ANSWER_FILES]
        if n == VQA_V2_SIZE:
            candidates.append(VQA_V2_ANSWERS)  # shipped: VQA v2's vocabulary (answers/README.md)
        for path in candidates:
            if path.is_file():
                answers = json.loads(path.read_text())
                if isinstance(answers, list) and len(answers) == n:
                    return [str(a) for a in answers]
        raise CheckpointError(
            f"{self.source}'s config names none of its {n} answers: put them, a JSON list in "
            f"label order, beside the weights as {ANSWER_FILES[0]}"
        )

    # --- Generator / Ranker -----------------------------------------------------------------------

    def question_prompt(self, question: str) -> str:
        return question

    def prepare(self, images: list[Image.Image], prompts: list[str | None]) -> dict[str, Any]:
        """CPU side: the detector's input per image and the questions (regions come later,
        in the model's thread)."""
        return {"images": images, "texts": [p or "" for p in prompts]}

    @torch.inference_mode()
    def logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        feats = self.regions(inputs["images"])
        enc = {k: self._to_device(v) for k, v in self.encode(feats, inputs["texts"]).items()}
        return self.model(**enc).logits.float().cpu()  # (B, answers)

    def generate(
        self, inputs: dict[str, Any], settings: GenerationSettings, *, streamer: Any = None
    ) -> list[list[Candidate]]:
        """The `num_return_sequences` most probable answers per row, log-probability each."""
        logp = self.logits(inputs).log_softmax(-1)
        k = min(settings.num_return_sequences, logp.shape[1])
        top = logp.topk(k, dim=-1)
        return [
            [Candidate(self.answers[i], v, v, num_tokens=1) for v, i in
             zip(vals.tolist(), ids.tolist(), strict=True)]
            for vals, ids in zip(top.values, top.indices, strict=True)
        ]  # fmt: skip

    def rank(self, inputs: dict[str, Any], answers: list[str]) -> torch.Tensor:
        """(B, K) log-probabilities of the candidate answers (each must be one of the labels)."""
        unknown = [a for a in answers if a not in self.answer_ids]
        if unknown:
            raise ValueError(
                f"not among this model's {len(self.answers)} answers: {', '.join(unknown[:5])}"
            )
        ids = torch.tensor([self.answer_ids[a] for a in answers])
        return self.logits(inputs).log_softmax(-1)[:, ids]

    # --- Trainable --------------------------------------------------------------------------------

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """The question and the cached regions; the label is the answer's one-hot distribution
        (transformers' KL loss against the softmax)."""
        return self.scored_training_inputs(images, prompts, [(t,) for t in targets])

    def scored_training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], answers: list[tuple[str, ...]]
    ) -> dict[str, torch.Tensor]:
        """The VQA recipe's targets: every annotator answer in the label set weighted by its
        soft score (0.3 per vote, at most 1), normalised to the distribution transformers'
        KL loss compares the softmax with. Answers outside the label set drop out (as in the
        recipe); a question with none in it is an error."""
        from im2text.evaluate.vqa import answer_scores

        labels = torch.zeros(len(answers), len(self.answers))
        for row, given in enumerate(answers):
            for answer, score in answer_scores(given).items():
                if answer in self.answer_ids:
                    labels[row, self.answer_ids[answer]] = score
            if labels[row].sum() == 0:
                raise ValueError(f"answers not in the model's label set: {', '.join(given[:5])}")
        with torch.no_grad():
            feats = self.regions(images)
        enc = self.encode(feats, [p or "" for p in prompts])
        return {**enc, "labels": labels / labels.sum(-1, keepdim=True)}

    def prepare_for_training(self) -> None:
        """BERT and the answer head learn; the detector is fixed and its regions cached."""
        self.cache_writes = True
        for p in self.model.parameters():
            p.requires_grad_(True)
        for p in self.detector.model.parameters():
            p.requires_grad_(False)


def _hub_has_tokenizer(repo: str, hub: dict[str, Any]) -> bool:
    """Whether a Hub repo has a tokenizer vocabulary: one file looked up (cache, then Hub)."""
    from huggingface_hub import hf_hub_download

    kw = {k: v for k, v in hub.items() if k in ("revision", "local_files_only", "cache_dir")}
    for name in ("tokenizer.json", "vocab.txt"):
        try:
            hf_hub_download(repo, name, **kw)
            return True
        except Exception:
            continue
    return False


def load_detector(source: str, device: torch.device, hub: dict[str, Any]) -> FrcnnDetector:
    """The checkpoint's own detector folder, else the `frcnn-vg` preset (Hub, or its cache)."""
    inside = Path(source) / DETECTOR_DIR
    if inside.is_dir():
        return FrcnnDetector.from_pretrained(str(inside), device=device, dtype=torch.float32)
    from im2text.registry import get_preset

    preset = get_preset(DETECTOR_PRESET)
    assert preset is not None
    kw = {k: v for k, v in hub.items() if k in ("local_files_only",)}
    try:
        return FrcnnDetector.from_pretrained(preset.hub_id, device=device, dtype=torch.float32,
                                             **kw)  # fmt: skip
    except Exception as e:
        raise CheckpointError(
            f"{source} has no {DETECTOR_DIR}/ folder and the region detector "
            f"({preset.hub_id}) is not available: {e}"
        ) from e


class VisualBertNlvr2(VisualBert):
    """VisualBERT NLVR2: is a statement about two images true? `ask(pair, statement)` with the
    pair side by side in one image (left half, right half, as NLVR2 shows them): the answer is
    "true" or "false" with its probability. The two images' regions are read one after the
    other (72 for the default 36 each)."""

    key = "visualbert-nlvr2"
    architectures = ("VisualBertForVisualReasoning",)
    model_class = "VisualBertForVisualReasoning"
    names_answers = False  # two labels, named below

    def attach(self, detector: FrcnnDetector) -> None:
        super().attach(detector)
        if self.answers == ["LABEL_0", "LABEL_1"]:  # the Hub config names no labels
            self.answers = ["false", "true"]  # NLVR2's label 1 is "true"
            self.answer_ids = {a: i for i, a in enumerate(self.answers)}

    def regions(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 2R, D): each side-by-side pair's left half's regions, then its right half's."""
        halves = []
        for im in images:
            w, h = im.size
            if w < 2:
                raise ValueError("an NLVR2 input is two images side by side: this one is 1 px wide")
            halves += [im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))]
        feats = super().regions(halves)  # (2B, R, D)
        return feats.view(len(images), -1, feats.shape[-1])


class VisualBertPretrained(_RegionBert):
    """VisualBERT as pre-trained on COCO captions (uclanlp/visualbert-vqa-coco-pre): image-text
    match scores from its sentence-image head, and joint image-text embeddings (the pooled
    [CLS] over the text and the image's regions, what downstream heads are trained on).

    A cross-encoder: each text is read together with each image, so nothing is encoded ahead
    (`embed_texts` is (T, 0)). The head was pre-trained on two captions (is the second one
    also about the image?); im2text reads one text, [CLS] text [SEP] + regions, as
    transformers' VisualBertForPreTraining example does, and reports per text `itm` = the
    head's probability of its "matches" label (0), `similarity` = that probability's log-odds
    and `probability` = softmax of the log-odds over the texts."""

    key = "visualbert-pre"
    architectures = ("VisualBertForPreTraining",)
    model_class = "VisualBertForPreTraining"
    tasks: ClassVar[tuple[str, ...]] = ("match",)
    text_batch_size = 64  # texts read with one image per forward pass

    def prepare_images(self, images: list[Image.Image]) -> dict[str, Any]:
        return {"images": images}  # regions come in the model's thread (`match`)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.empty(len(texts), 0)

    @torch.inference_mode()
    def _read(self, features: torch.Tensor, texts: list[str]) -> Any:
        enc = {k: self._to_device(v) for k, v in self.encode(features, texts).items()}
        return self.model.visual_bert(**enc).pooler_output

    @torch.inference_mode()
    def match(
        self, inputs: dict[str, Any], texts: list[str], text_emb: torch.Tensor
    ) -> list[MatchScores]:
        feats = self.regions(inputs["images"])
        out: list[MatchScores] = []
        for b in range(feats.shape[0]):
            odds = []
            for start in range(0, len(texts), self.text_batch_size):
                chunk = texts[start : start + self.text_batch_size]
                pooled = self._read(feats[b : b + 1].expand(len(chunk), -1, -1), chunk)
                logits = self.model.cls.seq_relationship(pooled).float().cpu()
                odds.append(logits[:, 0] - logits[:, 1])  # label 0: the text matches
            score = torch.cat(odds)
            out.append({"similarity": score.tolist(), "probability": score.softmax(-1).tolist(),
                        "itm": score.sigmoid().tolist()})  # fmt: skip
        return out

    def embed_pairs(self, images: list[Image.Image], texts: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised joint embeddings, image i read with text i."""
        pooled = self._read(self.regions(images), texts).float().cpu()
        return torch.nn.functional.normalize(pooled, dim=-1)


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two images as one NLVR2 input: the same height (the right one scaled), left | right."""
    from PIL import Image as PILImage

    left, right = left.convert("RGB"), right.convert("RGB")
    if right.height != left.height:
        right = right.resize((max(1, round(right.width * left.height / right.height)),
                              left.height))  # fmt: skip
    # Equal halves, so the model's split finds each image whole.
    width = max(left.width, right.width)
    pair = PILImage.new("RGB", (2 * width, left.height))
    pair.paste(left, (0, 0))
    pair.paste(right, (width, 0))
    return pair
