"""Dataset records and the one error every reader raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["CaptionExample", "DatasetError", "ImageRef", "VqaExample"]

ImageRef: TypeAlias = "Path | Image.Image"  # a file on disk, or a decoded image (HF datasets)


@dataclass(frozen=True)
class CaptionExample:
    """An image and its reference captions."""

    image: ImageRef  # image file (checked to exist) or an in-memory PIL image
    captions: list[str]  # one or more non-empty reference captions
    id: str  # unique within the dataset (e.g. COCO image id, or the file name)


@dataclass(frozen=True)
class VqaExample:
    """A question about an image, with the annotators' answers."""

    image: ImageRef  # image file (checked to exist) or an in-memory PIL image
    question: str  # the question text (non-empty)
    answers: list[str]  # ground-truth answers (10 in VQA v2); empty when unannotated (test sets)
    question_id: str  # unique within the dataset
    answer_type: str | None = None  # "yes/no", "number", "other" in VQA v2
    question_type: str | None = None  # e.g. "what color is the" in VQA v2

    @property
    def id(self) -> str:
        """Alias of `question_id`, so every record has an `id`."""
        return self.question_id


class DatasetError(ValueError):
    """A dataset file is wrong; the message names the file and the line (or JSON element).

    Example: "data/metadata.jsonl:17: empty caption".
    """

    def __init__(
        self, source: str | Path, message: str, *, line: int | None = None, where: str = ""
    ) -> None:
        self.source = str(source)  # the offending file or folder
        self.line = line  # 1-based line (text formats) or row number, when known
        self.where = where  # JSON element path such as "annotations[17]", when known
        loc = self.source
        if line is not None:
            loc += f":{line}"
        if where:
            loc += f": {where}"
        super().__init__(f"{loc}: {message}")

    @classmethod
    def empty(cls, source: str | Path, detail: str = "") -> DatasetError:
        """The error for a dataset that yielded nothing: "no examples in <source>[: detail]"."""
        err = cls(source, "no examples")
        ValueError.__init__(err, f"no examples in {source}" + (f": {detail}" if detail else ""))
        return err
