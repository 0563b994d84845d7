"""Fine-tuning: `train(config)` (what `im2text train` runs) and `fit()` for in-memory data."""

from im2text.train.config import TrainConfig
from im2text.train.loop import (
    Example,
    NonFiniteLossError,
    evaluate_examples,
    examples_from_dataset,
    fit,
    retrieval_metrics,
    train,
)

__all__ = [
    "Example",
    "NonFiniteLossError",
    "TrainConfig",
    "evaluate_examples",
    "examples_from_dataset",
    "fit",
    "retrieval_metrics",
    "train",
]
