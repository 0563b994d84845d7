"""Encode each distinct image once, even when a batch repeats it (many questions, one image).

Wraps an image encoder's `forward`: identical rows of `pixel_values` are found with
`torch.unique` (cheap next to a ViT forward), only the distinct ones are encoded, and every
output tensor is expanded back to the batch. Works for any family's vision tower unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def encode_unique_images(module: nn.Module) -> nn.Module:
    """Patch `module.forward` in place to skip duplicate images; returns the module."""
    if getattr(module, "_im2text_dedupe", False):
        return module
    original = module.forward
    module.im2text_images_encoded = 0  # type: ignore[assignment]  # rows really encoded (tests)

    def forward(*args: Any, **kwargs: Any) -> Any:
        pixel_values = kwargs.get("pixel_values", args[0] if args else None)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() < 2:
            return original(*args, **kwargs)
        n = pixel_values.shape[0]
        flat = pixel_values.reshape(n, -1)
        unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
        module.im2text_images_encoded += unique.shape[0]  # type: ignore[operator]
        if unique.shape[0] == n:
            return original(*args, **kwargs)
        unique = unique.reshape(-1, *pixel_values.shape[1:]).to(pixel_values.dtype)
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = unique
        else:
            args = (unique, *args[1:])
        return _expand(original(*args, **kwargs), inverse, unique.shape[0])

    module.forward = forward  # type: ignore[method-assign]
    module._im2text_dedupe = True  # type: ignore[assignment]
    return module


def _expand(out: Any, inverse: torch.Tensor, n_unique: int) -> Any:
    """Index every batch-first tensor in `out` (tensor, tuple or ModelOutput) by `inverse`."""
    if isinstance(out, torch.Tensor):
        return out[inverse] if out.dim() and out.shape[0] == n_unique else out
    if isinstance(out, tuple) and not hasattr(out, "keys"):
        return type(out)(_expand(o, inverse, n_unique) for o in out)
    if hasattr(out, "keys"):  # transformers ModelOutput (ordered dict + dataclass)
        for k in list(out.keys()):
            out[k] = _expand(out[k], inverse, n_unique)
        return out
    return out
