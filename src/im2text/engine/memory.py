"""Will a model fit? Its weights counted from the config alone (a model built on the meta
device holds no memory), against what the device has free, before any weight is read."""

from __future__ import annotations

from typing import Any

import torch

# Running needs more than the weights (activations, KV cache, the processor's tensors): the
# share added on top of the weights before comparing with free memory.
RUN_OVERHEAD = 0.2

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


class ModelTooLargeError(MemoryError):
    """A model that would not fit the device's free memory (or the budget given)."""


def weight_bytes(model_class: str, config: Any, dtype: torch.dtype) -> int:
    """Bytes of the parameters and buffers `model_class` built from `config` holds in `dtype`
    (integer buffers at their own size)."""
    import transformers

    cls = getattr(transformers, model_class)
    with torch.device("meta"):
        model = cls.from_config(config) if model_class.startswith("Auto") else cls(config)
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        size = torch.finfo(dtype).bits // 8 if t.is_floating_point() else t.element_size()
        total += t.numel() * size
    return total


def free_bytes(device: torch.device) -> int:
    """Memory free for a new model: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def parse_size(value: int | str) -> int:
    """Bytes from 123, "500MB", "8GiB", "1.5 GB"."""
    if isinstance(value, int):
        return value
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("kmgib")
    unit = text[len(number) :]
    try:
        return int(float(number) * _UNITS[unit])
    except (KeyError, ValueError):
        raise ValueError(f"cannot read the memory size {value!r} (e.g. 8GB, 500MiB)") from None


def check_fits(
    name: str, model_class: str, config: Any, dtype: torch.dtype, device: torch.device,
    budget: int | str | None = None,
) -> int:  # fmt: skip
    """Raise ModelTooLargeError (naming sizes and ways out) when `name` would not fit; returns
    the estimate in bytes. `budget` caps it below what the device has free."""
    need = int(weight_bytes(model_class, config, dtype) * (1 + RUN_OVERHEAD))
    free = free_bytes(device)
    limit = min(free, parse_size(budget)) if budget is not None else free
    if need > limit:
        where = f"the budget of {_size(limit)}" if budget is not None and limit < free \
            else f"{device.type} with {_size(free)} free"  # fmt: skip
        raise ModelTooLargeError(
            f"{name} needs about {_size(need)} in {str(dtype).removeprefix('torch.')} "
            f"(weights + {RUN_OVERHEAD:.0%} to run), more than {where}: try "
            "dtype='bfloat16', device_map='auto' (spreads it over GPUs and the CPU), or a "
            "smaller model"
        )
    return need


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"
