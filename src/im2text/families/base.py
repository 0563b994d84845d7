"""The protocol every model family implements, and the scoring shared by generative families.

Tasks talk to a family only through `prepare` (CPU side: images + text -> tensors, runs in loader
threads) and `generate` (model side: tensors -> scored texts). Everything model-specific — prompt
format, special tokens, which processor, how the sequence starts — lives in the family's own file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from im2text.config import GenerationSettings

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Candidate:
    """One decoded text and its mean token log-probability under the model."""

    text: str
    score: float


class Family:
    """Base class: load a checkpoint of this family and run it.

    Subclasses set the class attributes and implement `prepare`; most need nothing else.
    """

    key: ClassVar[str]  # registry key, e.g. "blip"
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values this family handles
    model_class: ClassVar[str]  # transformers class that loads the weights
    tasks: ClassVar[tuple[str, ...]] = ("caption",)
    default_prompt: ClassVar[str | None] = None  # caption prompt when the user gives none
    # True: the model continues the prompt, so the caption is prompt + continuation (BLIP, GIT).
    # False: the prompt is an instruction/question and only the generated text is the answer.
    prompt_is_prefix: ClassVar[bool] = True

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.device = device
        self.dtype = dtype

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any
    ) -> Family:
        """Load weights + processor from a dir or Hub id (`hub`: revision, local_files_only)."""
        import transformers

        processor = cls.load_processor(source, **hub)
        model_cls = getattr(transformers, cls.model_class)
        model = model_cls.from_pretrained(source, dtype=dtype, **hub)
        model.to(device).eval()
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
    def image_size(self) -> int:
        """Side length the processor resizes to (used to decode big JPEGs at reduced size)."""
        improc = getattr(self.processor, "image_processor", self.processor)
        size = getattr(improc, "size", None) or {}
        crop = getattr(improc, "crop_size", None) or {}
        values = [v for d in (size, crop) for v in dict(d).values() if isinstance(v, int)]
        return max(values) if values else 384

    # --- running --------------------------------------------------------------------------------

    def prepare(self, images: list[Image.Image], prompt: str | None) -> dict[str, torch.Tensor]:
        """Turn images (and one shared prompt) into the keyword inputs of `model.generate`."""
        raise NotImplementedError

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
        self, inputs: dict[str, torch.Tensor], settings: GenerationSettings
    ) -> list[list[Candidate]]:
        """Decode a prepared batch. Returns, per image, `num_return_sequences` candidates."""
        inputs = {k: self._to_device(v) for k, v in inputs.items()}
        if settings.do_sample and settings.seed is not None:
            torch.manual_seed(settings.seed)
        out = self.model.generate(
            **inputs,
            **settings.to_generate_kwargs(),
            **self.generation_kwargs(),
            return_dict_in_generate=True,
            output_logits=True,
        )
        tokens, scores = score_sequences(
            out.sequences, out.logits, getattr(out, "beam_indices", None), self.eos_token_ids()
        )
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        n = settings.num_return_sequences
        cands = [Candidate(t.strip(), s) for t, s in zip(texts, scores.tolist(), strict=True)]
        return [cands[i : i + n] for i in range(0, len(cands), n)]

    def _to_device(self, v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        if v.is_floating_point():
            return v.to(self.device, self.dtype)
        return v.to(self.device)


def score_sequences(
    sequences: torch.Tensor,
    logits: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    eos_ids: set[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated tokens and their mean log-probability under the raw (unprocessed) logits.

    Args:
        sequences: (N, S) ids returned by generate (N = batch * num_return_sequences); the
            generated tokens are the last ones.
        logits: one (N or batch*beams, V) tensor per step, before any logits processor.
        beam_indices: (N, steps) which beam each step's token came from; -1 past the end.
        eos_ids: ids that end a sequence; the first EOS is scored, what follows is padding.

    Returns:
        tokens (N, L) of generated ids with padding after EOS replaced by the first EOS id,
        and scores (N,) mean log-probability per generated token (EOS included).
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
    counts = valid.sum(-1).clamp(min=1)
    scores = (logp * valid).sum(-1) / counts
    return tokens.masked_fill(~valid, min(eos_ids) if eos_ids else 0), scores
