"""im2text: turn images into text — captions, answers, read text and image-text scores.

import im2text
model = im2text.load("blip-base")      # preset, Hub id, or local checkpoint dir
model.caption("cat.jpg")                # -> Caption(text=..., mean_logprob=...)
"""

from __future__ import annotations

from im2text._loading import ModelNotAvailableError
from im2text.config import GenerationSettings, LoadSettings, Preset
from im2text.engine.memory import ModelTooLargeError
from im2text.families.base import CheckpointError
from im2text.images import ImageError
from im2text.jobs.engines import EngineConfig, JobSummary, run_job
from im2text.model import Model, download, load
from im2text.registry import list_models
from im2text.results import (
    Answer,
    Candidate,
    Caption,
    Classification,
    Detection,
    Embedding,
    Line,
    Match,
    Reading,
    Region,
)
from im2text.tasks import TASKS

__version__ = "0.1.0"

__all__ = [
    "TASKS",
    "Answer",
    "Candidate",
    "Caption",
    "CheckpointError",
    "Classification",
    "Detection",
    "Embedding",
    "EngineConfig",
    "GenerationSettings",
    "ImageError",
    "JobSummary",
    "Line",
    "LoadSettings",
    "Match",
    "Model",
    "ModelNotAvailableError",
    "ModelTooLargeError",
    "Preset",
    "Reading",
    "Region",
    "__version__",
    "download",
    "list_models",
    "load",
    "run_job",
]
