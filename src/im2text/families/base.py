"""What a model family is, the capabilities it can declare, and the scoring shared by
generative families.

A family loads one kind of checkpoint and holds every quirk of it (prompt format, special tokens,
which processor, how the sequence starts). What it can do is declared by implementing small
`typing.Protocol`s — `Generator`, `Conversational`, `Ranker`, `Reader`, `Detector`,
`Embedder`, `Matcher`, `Classifier`, `Trainable`, `LoraAdaptable` — and by `Family.tasks`;
tasks, `Model` and the trainer check those with `isinstance` and call nothing else. A CPU-side
method (`prepare*`: images + text -> tensors) runs in loader threads; model-side methods run in
the calling thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict, runtime_checkable

import torch

from im2text.config import GenerationSettings
from im2text.engine.graphs import BackendSpec, GraphPart
from im2text.results import Candidate, Line, Region

if TYPE_CHECKING:
    from PIL import Image


class MatchScores(TypedDict):
    """One image's scores against each text (`itm` only from models with an ITM head)."""

    similarity: list[float]
    probability: list[float]
    itm: list[float] | None


# --- capabilities -------------------------------------------------------------------------------
# Each is what one task needs from a family; `isinstance(family, Generator)` checks it.


@runtime_checkable
class Generator(Protocol):
    """Generates text from an image and an optional prompt (captioning; VQA by generation)."""

    default_prompt: str | None  # caption prompt when the user gives none
    prompt_is_prefix: bool  # the caption is prompt + continuation (BLIP, GIT), or the answer only
    caption_styles: dict[str, str]  # "short" / "detailed" / "tags" -> the prompt that asks so

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        """CPU side: images and one prompt per image -> the model's generate inputs."""
        ...

    def generate(
        self, inputs: dict[str, torch.Tensor], settings: GenerationSettings, *, streamer: Any = None
    ) -> list[list[Candidate]]:
        """Decode a prepared batch: per image, `num_return_sequences` scored candidates."""
        ...

    def question_prompt(self, question: str) -> str:
        """The prompt that asks `question` (VQA); the answer is what the model says next."""
        ...


@runtime_checkable
class Conversational(Protocol):
    """Takes a whole conversation (system, user and assistant turns, several images) through
    its chat template (the server's `/v1/chat/completions` forwards them unchanged)."""

    def prepare_chat(
        self, images: list[Image.Image], messages: list[dict[str, Any]]
    ) -> dict[str, torch.Tensor]:
        """CPU side: the conversation -> generate inputs for the assistant's next turn."""
        ...


@runtime_checkable
class Ranker(Protocol):
    """Scores a closed list of answers for (image, question) rows (BLIP VQA's rank mode)."""

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]: ...

    def question_prompt(self, question: str) -> str: ...

    def rank(self, inputs: dict[str, torch.Tensor], answers: list[str]) -> torch.Tensor:
        """(B, K) log-probability of each candidate answer for each row."""
        ...


@runtime_checkable
class Reader(Protocol):
    """Reads the text in images: lines with boxes and confidences."""

    # False: the lines come in reading order with no positions of their own (each box is the
    # whole image: VLMs that answer with the text), so they are never re-ordered by box.
    line_positions: bool

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: Any = None,
        options: Any = None,  # ReadOptions: the detector techniques a family applies
    ) -> list[list[Line]]: ...


@runtime_checkable
class Detector(Protocol):
    """Finds regions: labelled boxes with scores (Florence-2 `<OD>`, region detectors)."""

    def detect(self, images: list[Image.Image], settings: Any = None) -> list[list[Region]]:
        """Per image, its regions (the detect task orders them, best first)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Images and texts into one embedding space (L2-normalised float32 on the CPU)."""

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]: ...

    def embed_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) image embeddings."""
        ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """(T, D) text embeddings, encoded in chunks of bounded size."""
        ...


@runtime_checkable
class PairEmbedder(Protocol):
    """One embedding per image-text pair, from a model that reads both at once (VisualBERT):
    L2-normalised float32 on the CPU."""

    def embed_pairs(self, images: list[Image.Image], texts: list[str]) -> torch.Tensor:
        """(N, D): image i read with text i."""
        ...


@runtime_checkable
class Matcher(Protocol):
    """Scores texts against images (similarity, softmax over the texts, ITM where present)."""

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]: ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...

    def match(
        self, inputs: dict[str, torch.Tensor], texts: list[str], text_emb: torch.Tensor
    ) -> list[MatchScores]: ...


@runtime_checkable
class Classifier(Protocol):
    """Top-k labels: zero-shot over given labels, or a checkpoint's own classes."""

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]: ...

    def classifier(
        self, labels: list[str] | None, templates: tuple[str, ...]
    ) -> tuple[list[str], torch.Tensor]:
        """(label names, state) that `classify` scores every batch against."""
        ...

    def classify(self, inputs: dict[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """(B, L) probabilities over the labels."""
        ...


@runtime_checkable
class Trainable(Protocol):
    """Fine-tunes with its own loss: (images, prompts, targets) -> forward inputs with labels."""

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]: ...

    def prepare_for_training(self) -> None:
        """Freeze what this family never fine-tunes."""
        ...


@runtime_checkable
class ScoredAnswerTrainable(Protocol):
    """A VQA answer classifier that learns every annotator's answer at once, each weighted by
    its VQA soft score (`evaluate.vqa.answer_scores`), not the most common answer alone."""

    def scored_training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], answers: list[tuple[str, ...]]
    ) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class MultiObjective(Protocol):
    """Trains ITC / ITM (beside LM) from parts it names: encoders, projections, ITM head."""

    def objective_parts(self) -> Any:
        """An `im2text.train.objectives.ObjectiveParts` over this model's modules."""
        ...


@runtime_checkable
class LoraAdaptable(Protocol):
    """Names the modules LoRA adapters go on (only the language model's), and those trained in
    full beside them (a VLM's connector: new to the task, small)."""

    def lora_targets(self) -> list[str]: ...

    def lora_trained_in_full(self) -> list[str]: ...


# --- families -------------------------------------------------------------------------------------


# Files that hold a tokenizer's vocabulary, one of which a text model's folder must have.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")  # fmt: skip


def has_tokenizer_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


class Family:
    """Base class: load a checkpoint of this family. Capabilities come from subclasses.

    Subclasses set the class attributes; `GenerativeFamily` and `DualEncoder` give the shared
    implementations of their capabilities.
    """

    key: ClassVar[str]  # registry key, e.g. "blip"
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values this family handles
    # The heads (config.architectures) this family runs: exact class names, or "*Suffix" for
    # any class ending so. A checkpoint whose head is not listed by any family of its model
    # type is refused (never loaded with a randomly initialised head). () = any head.
    architectures: ClassVar[tuple[str, ...]] = ()
    # Training objectives it can learn (im2text.train.objectives): lm, itc, itm, itg.
    objectives: ClassVar[tuple[str, ...]] = ()
    # A staged recipe (BLIP-2): stage -> the objectives it trains; the last is the default.
    stages: ClassVar[dict[int, tuple[str, ...]]] = {}
    # The ones the current training run uses (set by the trainer; shapes `training_inputs`).
    training_objectives: tuple[str, ...] = ()
    model_class: ClassVar[str]  # transformers class that loads the weights
    vision_tower: ClassVar[str | None] = None  # attribute path of the image encoder (dedupe)
    needs_weights: ClassVar[bool] = True  # False for engines that ship their own (rapidocr)
    needs_tokenizer: ClassVar[bool] = True  # False for image-only models (ViT classifiers)
    line_positions: ClassVar[bool] = True  # read lines carry their own boxes (see Reader)
    # Fine-tune with LoRA by default above this many parameters (None: full fine-tuning).
    lora_by_default_above: ClassVar[int | None] = None
    tasks: ClassVar[tuple[str, ...]]  # what this family's checkpoints are for
    # Submodules that can run as exported graphs (--backend onnxruntime | openvino); the rest
    # of the model stays in torch. () = torch only.
    graph_parts: ClassVar[tuple[GraphPart, ...]] = ()

    # Its checkpoints have a layout of their own, not a transformers config.json (the region
    # detector's config.yaml): routed by `is_checkpoint`, before any config is read.
    own_layout: ClassVar[bool] = False

    @classmethod
    def is_checkpoint(cls, folder: str | Path) -> bool:
        """Whether a folder has this family's own layout (see `own_layout`)."""
        return False

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.device = device
        self.dtype = dtype
        self.backend = BackendSpec()  # set by engine.graphs.apply_backend

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any
    ) -> Family:
        """Load weights + processor from a dir or Hub id (`hub`: revision, local_files_only).

        Raises CheckpointError when the checkpoint lacks weights the model needs: transformers
        would initialise them at random and every output would be noise.
        """
        import transformers

        # Without its files transformers may build a default tokenizer whose ids are not the
        # model's: every caption would come out empty.
        folder = Path(source)
        if cls.needs_tokenizer and folder.is_dir() and not has_tokenizer_files(folder):
            raise CheckpointError(
                f"{source} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)})"
            )
        placed = {k: v for k, v in hub.items() if k != "device_map"}  # weights only
        processor = cls.load_processor(source, **placed)
        model_cls = getattr(transformers, cls.model_class)
        model, info = model_cls.from_pretrained(
            source, dtype=dtype, output_loading_info=True, **hub
        )
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            shown = ", ".join(missing[:4]) + (
                f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
            )
            raise CheckpointError(
                f"{source} has no weights for {len(missing)} parameter(s) of "
                f"{cls.model_class} ({shown}): it is not a complete {cls.key} checkpoint, and "
                "running it would give random outputs"
            )
        if "device_map" in hub:  # accelerate placed it; inputs go where its first layers are
            device = next(model.parameters()).device
            model.eval()
        else:
            model.to(device).eval()
        if cls.vision_tower:
            from im2text.engine.dedupe import encode_unique_images

            encode_unique_images(model.get_submodule(cls.vision_tower))
        return cls(model, processor, device, dtype)

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source, **hub)

    def save_pretrained(self, directory: str) -> None:
        """Write weights and processor files (the Hub layout) to `directory`."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)

    @property
    def max_text_tokens(self) -> int | None:
        """Text positions of the model's language side (None when it has no such limit)."""
        cfg = self.model.config
        for part in (getattr(cfg, "text_config", None), getattr(cfg, "decoder", None), cfg):
            for name in ("max_position_embeddings", "n_positions"):
                value = getattr(part, name, None) if part is not None else None
                if isinstance(value, int) and value > 0:
                    return value
        return None

    @property
    def image_size(self) -> int | None:
        """Side length the processor resizes to (used to decode big JPEGs at reduced size)."""
        improc = getattr(self.processor, "image_processor", self.processor)
        size = getattr(improc, "size", None) or {}
        crop = getattr(improc, "crop_size", None) or {}
        values = [v for d in (size, crop) for v in dict(d).values() if isinstance(v, int)]
        return max(values) if values else 384

    def vision_parameters(self) -> list[torch.nn.Parameter]:
        """The image encoder's parameters (what --freeze-vision fixes)."""
        if not self.vision_tower:
            return []
        return list(self.model.get_submodule(self.vision_tower).parameters())

    def _to_device(self, v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        pinned = v.device.type == "cpu" and self.device.type == "cuda" and v.is_pinned()
        if v.is_floating_point():
            return v.to(self.device, self.dtype, non_blocking=pinned)
        return v.to(self.device, non_blocking=pinned)


class CheckpointError(ValueError):
    """A checkpoint that im2text refuses to run (wrong head, missing weights)."""


class GenerativeFamily(Family, ABC):
    """Families that generate text (`Generator`) and fine-tune with an LM loss (`Trainable`)."""

    tasks: ClassVar[tuple[str, ...]] = ("caption",)
    objectives: ClassVar[tuple[str, ...]] = ("lm",)
    default_prompt: ClassVar[str | None] = None  # caption prompt when the user gives none
    # True: the model continues the prompt, so the caption is prompt + continuation (BLIP, GIT).
    # False: the prompt is an instruction/question and only the generated text is the answer.
    prompt_is_prefix: ClassVar[bool] = True
    # Named caption styles ("short", "detailed", "tags") -> the prompt or task token that asks
    # this family for them; `caption(style=...)` refuses a style a family does not list.
    caption_styles: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        """Turn images (and a prompt per image) into the keyword inputs of `model.generate`."""

    @abstractmethod
    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Inputs for a forward pass whose `.loss` trains the model to say `targets`."""

    def prepare_for_training(self) -> None:
        """Freeze what this family never fine-tunes (default: train everything)."""
        for p in self.model.parameters():
            p.requires_grad_(True)

    def question_prompt(self, question: str) -> str:
        """The prompt that asks `question` about the image (VQA); the answer is what follows."""
        return question

    def generation_kwargs(self) -> dict[str, Any]:
        """Family-specific `generate` keywords (special token ids and the like)."""
        return {}

    def eos_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.model.config.get_text_config().eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        return {int(i) for i in ids}

    @torch.inference_mode()
    def generate(
        self, inputs: dict[str, torch.Tensor], settings: GenerationSettings, *, streamer: Any = None
    ) -> list[list[Candidate]]:
        """Decode a prepared batch. Returns, per image, `num_return_sequences` candidates.

        `streamer` (a transformers streamer, batch of one) receives tokens as they are made.
        """
        tokens, logp, valid = self.generate_tokens(inputs, settings, streamer=streamer)
        totals, lengths = logp.sum(-1), valid.sum(-1)
        scores = totals / lengths.clamp(min=1)
        texts = self.decode(tokens)
        n = settings.num_return_sequences
        cands = [
            Candidate(t.strip(), s, lp, num_tokens=k)
            for t, s, lp, k in zip(
                texts, scores.tolist(), totals.tolist(), lengths.tolist(), strict=True
            )
        ]
        return [cands[i : i + n] for i in range(0, len(cands), n)]

    @torch.inference_mode()
    def generate_tokens(
        self, inputs: dict[str, torch.Tensor], settings: GenerationSettings, *, streamer: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`model.generate` on a prepared batch: the generated tokens (N, L), each one's
        log-probability (N, L) and which count (N, L) — see `token_logprobs`."""
        inputs = {k: self._to_device(v) for k, v in inputs.items()}
        if settings.do_sample and settings.seed is not None:
            torch.manual_seed(settings.seed)
        extra = {"streamer": streamer} if streamer is not None else {}
        out = self._generate(
            inputs,
            **self._fit_length(settings.to_generate_kwargs(), inputs),
            **self.generation_kwargs(),
            **extra,
            return_dict_in_generate=True,
            output_logits=True,
        )
        return token_logprobs(
            out.sequences, out.logits, getattr(out, "beam_indices", None), self.eos_token_ids()
        )

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Generated ids (N, L) -> texts (families whose outputs carry markup override it)."""
        return list(self.tokenizer.batch_decode(tokens, skip_special_tokens=True))

    def _fit_length(self, kwargs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """Cap max_new_tokens so prompt + answer fit the decoder's learned positions (asking a
        64-position model for 100 tokens would crash mid-batch rather than stop)."""
        text = self.model.config.get_text_config()
        limit = getattr(text, "max_position_embeddings", None)
        if not limit or getattr(text, "relative_attention_num_buckets", None):
            return kwargs  # relative positions (T5) have no hard limit
        ids = inputs.get("decoder_input_ids", inputs.get("input_ids"))
        used = int(ids.shape[1]) if isinstance(ids, torch.Tensor) else 1
        room = max(1, limit - used)
        if kwargs.get("max_new_tokens", 0) > room:
            kwargs = {**kwargs, "max_new_tokens": room}
            kwargs["min_new_tokens"] = min(kwargs.get("min_new_tokens", 0), room)
        return kwargs

    def _generate(self, inputs: dict[str, Any], **kwargs: Any) -> Any:
        """The raw `generate` call; families whose own `generate` is wrong override this."""
        return self.model.generate(**inputs, **kwargs)


def token_logprobs(
    sequences: torch.Tensor,
    logits: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    eos_ids: set[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generated tokens and each one's log-probability under the raw (unprocessed) logits.

    Args:
        sequences: (N, S) ids returned by generate (N = batch * num_return_sequences); the
            generated tokens are the last ones.
        logits: one (N or batch*beams, V) tensor per step, before any logits processor.
        beam_indices: (N, steps) which beam each step's token came from; -1 past the end.
        eos_ids: ids that end a sequence; the first EOS is scored, what follows is padding.

    Returns:
        tokens (N, L) of generated ids with padding after EOS replaced by the first EOS id,
        logp (N, L) per-token log-probabilities, and valid (N, L): the tokens that count.
    """
    n = sequences.shape[0]
    if beam_indices is None:
        length = len(logits)
        rows = torch.arange(n, device=sequences.device)[:, None].expand(n, length)
        valid = torch.ones(n, length, dtype=torch.bool, device=sequences.device)
    else:
        valid_all = beam_indices >= 0
        length = int(valid_all.sum(-1).max())
        rows, valid = beam_indices[:, :length].clamp(min=0), valid_all[:, :length]
    tokens = sequences[:, sequences.shape[1] - length :]  # (N, L)
    logp = torch.empty(n, length, dtype=torch.float32, device=sequences.device)
    for t in range(length):  # per step, so we never hold (N, L, V) log-probs at once
        step = logits[t].float().log_softmax(-1)  # (rows, V)
        logp[:, t] = step[rows[:, t], tokens[:, t]]
    if eos_ids:
        is_eos = torch.isin(tokens, torch.tensor(sorted(eos_ids), device=tokens.device))
        after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        valid = valid & ~after_eos
    tokens = tokens.masked_fill(~valid, min(eos_ids) if eos_ids else 0)
    return tokens, logp.masked_fill(~valid, 0.0), valid


def score_sequences(
    sequences: torch.Tensor,
    logits: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    eos_ids: set[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`token_logprobs` summed per sequence: tokens (N, L), mean (N,) log-probability per
    generated token (EOS included), total (N,), and the number of generated tokens (N,)."""
    tokens, logp, valid = token_logprobs(sequences, logits, beam_indices, eos_ids)
    total = logp.sum(-1)
    count = valid.sum(-1)
    return tokens, total / count.clamp(min=1), total, count


# Zero-shot prompt ensemble from the CLIP authors' ImageNet notebook (the 7 best templates).
ENSEMBLE_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


class DualEncoder(Family, ABC):
    """Families with an image encoder and a text encoder in one embedding space (CLIP, BLIP ITC):
    `Embedder`, `Matcher` and zero-shot `Classifier`.

    Subclasses implement `prepare_images`, `embed_images`, `_embed_text_batch` and
    `logit_scale`. Texts are encoded `text_batch_size` at a time (open_clip's
    `num_classes_per_batch`): 5,000 labels x 7 templates never run as one forward pass.
    """

    tasks = ("match", "classify", "embed")
    text_batch_size: ClassVar[int] = 256  # texts per text-encoder forward pass

    @abstractmethod
    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def embed_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) L2-normalised image embeddings (float32, CPU)."""

    @abstractmethod
    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        """(T, D) L2-normalised embeddings of one chunk of texts (float32, CPU)."""

    @property
    @abstractmethod
    def logit_scale(self) -> float: ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """(T, D) L2-normalised text embeddings (float32, CPU), in chunks."""
        step = self.text_batch_size
        return torch.cat([self._embed_text_batch(texts[i : i + step])
                          for i in range(0, len(texts), step)])  # fmt: skip

    def match(
        self, inputs: dict[str, torch.Tensor], texts: list[str], text_emb: torch.Tensor
    ) -> list[MatchScores]:
        """Per image: cosine similarity to each text and softmax over the texts."""
        sim = self.embed_images(inputs) @ text_emb.T  # (B, T)
        prob = (sim * self.logit_scale).softmax(-1)
        return [
            {"similarity": s.tolist(), "probability": p.tolist(), "itm": None}
            for s, p in zip(sim, prob, strict=True)
        ]

    def classifier(
        self, labels: list[str] | None, templates: tuple[str, ...]
    ) -> tuple[list[str], torch.Tensor]:
        """Label names and (L, D) label embeddings: the renormalised mean over templates."""
        if not labels:
            raise ValueError("zero-shot classification needs labels (e.g. ['cat', 'dog'])")
        per_chunk = max(1, self.text_batch_size // len(templates))  # labels per forward pass
        parts = []
        for i in range(0, len(labels), per_chunk):
            chunk = labels[i : i + per_chunk]
            texts = [t.format(label) for label in chunk for t in templates]
            emb = self._embed_text_batch(texts).reshape(len(chunk), len(templates), -1).mean(1)
            parts.append(torch.nn.functional.normalize(emb, dim=-1))
        return labels, torch.cat(parts)

    def classify(self, inputs: dict[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """(B, L) zero-shot probabilities over the labels."""
        return (self.embed_images(inputs) @ state.T * self.logit_scale).softmax(-1)
