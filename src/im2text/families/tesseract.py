"""Tesseract OCR through its command-line binary (TSV output), when it is installed.

Quirks kept here: words come with block/paragraph/line numbers, which we join into lines;
confidences are 0-100 per word (-1 for non-words), averaged per line and scaled to [0, 1].
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import torch

from im2text.families.base import Family
from im2text.results import Line

if TYPE_CHECKING:
    from PIL import Image


class Tesseract(Family):
    key = "tesseract"
    model_types = ()
    model_class = ""
    tasks = ("read",)
    needs_weights = False
    lang = "eng"  # tesseract language pack(s), e.g. "eng+deu"
    timeout_s = 60.0  # per image

    @classmethod
    def from_pretrained(cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any):  # type: ignore[override]
        binary = shutil.which("tesseract")
        if binary is None:
            raise ValueError(
                "the tesseract binary is not installed: apt-get install tesseract-ocr "
                "tesseract-ocr-eng (macOS: brew install tesseract), or use the rapidocr model"
            )
        return cls(binary, None, torch.device("cpu"), torch.float32)

    @property
    def image_size(self) -> int | None:
        return None

    def save_pretrained(self, directory: str) -> None:
        raise ValueError("tesseract is a system program; there is nothing to save")

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: object = None,
        options: object = None,
    ) -> list[list[Line]]:
        return [self._read_one(im) for im in images]

    def _read_one(self, image: Image.Image) -> list[Line]:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        proc = subprocess.run(
            [self.model, "stdin", "stdout", "-l", self.lang, "--psm", "3", "tsv"],
            input=buf.getvalue(),
            capture_output=True,
            timeout=self.timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tesseract failed: {proc.stderr.decode(errors='replace')[-300:]}")
        rows = csv.DictReader(
            io.StringIO(proc.stdout.decode("utf-8", errors="replace")),
            delimiter="\t",
            quoting=csv.QUOTE_NONE,
        )
        lines: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        for row in rows:
            if row.get("level") == "5" and (row.get("text") or "").strip():
                key = (row["block_num"], row["par_num"], row["line_num"])
                lines.setdefault(key, []).append(row)
        out = []
        for words in lines.values():
            x0 = min(int(w["left"]) for w in words)
            y0 = min(int(w["top"]) for w in words)
            x1 = max(int(w["left"]) + int(w["width"]) for w in words)
            y1 = max(int(w["top"]) + int(w["height"]) for w in words)
            confs = [float(w["conf"]) for w in words if float(w["conf"]) >= 0]
            score = sum(confs) / len(confs) / 100 if confs else 0.0
            text = " ".join(w["text"].strip() for w in words)
            out.append(Line(text, (float(x0), float(y0), float(x1), float(y1)), score))
        return out
