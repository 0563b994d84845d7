"""Backends: run a family's encoders as exported graphs on ONNX Runtime or OpenVINO, int8 opt-in.

A family names the submodules it can run as a graph (`GraphPart`: a vision tower, a whole
classifier). `apply_backend` exports each once (`torch.onnx.export(dynamo=True)` or
`openvino.convert_model`), quantizes it when asked, caches the result (keyed by the part's
weights, backend, int8, engine, torch and im2text versions) and swaps the submodule for a
`GraphModule` that runs it and returns the same output class as the original. Everything else
(decoders, heads, generate with its beams, sampling and KV cache) stays in torch: with int8 its
`nn.Linear` layers become torch's dynamic-int8 linears. That split was picked by measurement on
BLIP-base (`benchmarks/int8_engines.py`, docs/PERFORMANCE.md): int8 ONNX Runtime ran the ViT 3.5x
faster than torch fp32 (OpenVINO 3.0x, torch's own int8 1.9x); for the decoder, exported with its
KV cache as a step graph, torch's int8 linears gave 2.7x, ONNX Runtime 1.2x, OpenVINO 0.5x.

An exported folder (`export_model`) holds the Hugging Face checkpoint plus `graphs/` and
`im2text-backend.json`; `im2text.load(DIR)` runs it offline on the backend it was exported for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from im2text.families.base import Family

BACKENDS = ("torch", "onnxruntime", "openvino")
MANIFEST = "im2text-backend.json"  # in an exported folder: which backend and graphs it holds
GRAPHS = "graphs"  # the exported folder's subfolder of graph files
_HINTS = {
    "onnxruntime": "pip install 'im2text[onnx]'  (onnxruntime, onnx, onnxscript)",
    "openvino": "pip install 'im2text[openvino]'",
}


class BackendError(RuntimeError):
    """A backend that cannot run here (engine missing, unsupported device or family)."""


@dataclass(frozen=True)
class GraphPart:
    """A submodule that runs as one exported graph.

    The graph takes `inputs` as positional tensors with a dynamic batch dimension and returns
    the tensor fields of the submodule's output; other keyword arguments the callers pass
    (output_attentions=None, return_dict=True, ...) must be ones that change nothing.
    """

    path: str  # attribute path in family.model ("" = the whole model)
    inputs: tuple[str, ...] = ("pixel_values",)  # forward keywords, in graph input order
    example: Callable[[Family], dict[str, torch.Tensor]] | None = None  # None: one image batch


@dataclass(frozen=True)
class BackendSpec:
    """Which backend a model runs on."""

    backend: str = "torch"  # torch | onnxruntime | openvino
    int8: bool = False  # int8 weights (graphs: dynamic int8 quantization; torch: int8 linears)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r} (use {', '.join(BACKENDS)})")

    @property
    def label(self) -> str:
        return f"{self.backend}{'-int8' if self.int8 else ''}"


def require_engine(backend: str) -> Any:
    """Import the engine's module, or raise BackendError with the one-line install hint."""
    if backend == "torch":
        return torch
    try:
        if backend == "onnxruntime":
            import onnxruntime

            return onnxruntime
        import openvino

        return openvino
    except ImportError as e:
        raise BackendError(f"backend {backend!r} is not installed: {_HINTS[backend]}") from e


def engine_version(backend: str) -> str:
    return str(getattr(require_engine(backend), "__version__", "?"))


# --- applying a backend to a loaded family ------------------------------------------------------


def apply_backend(family: Family, spec: BackendSpec, folder: str | None = None) -> None:
    """Run `family` on `spec`'s backend: its graph parts as graphs, the rest in torch.

    `folder`: an exported folder whose `graphs/` already hold the parts (nothing is exported).
    """
    if spec.backend == "torch":
        if spec.int8:
            _int8_linears(family.model, skip=())
        family.backend = spec
        return
    require_engine(spec.backend)
    if family.device.type != "cpu":
        raise BackendError(
            f"backend {spec.backend!r} runs on the CPU; use --backend torch on {family.device}"
        )
    parts = type(family).graph_parts
    if not parts:
        raise BackendError(
            f"the {family.key} family has no graphs for backend {spec.backend!r} "
            "(use --backend torch)"
        )
    manifest = _read_manifest(folder) if folder else None
    for part in parts:
        module = family.model.get_submodule(part.path) if part.path else family.model
        if manifest is not None:
            entry = manifest["parts"][part.path]
            graph = Path(folder or ".") / entry["file"]
            outputs = _output_spec(entry)
        else:
            graph, outputs = _cached_graph(family, part, module, spec)
        runner = GraphModule(_runner(spec.backend, graph), part, outputs, module)
        _swap(family, part.path, runner)
    # What stays in torch: int8 linears where asked (the graphs are quantized already).
    if spec.int8:
        _int8_linears(family.model, skip=(GraphModule,))
    family.backend = spec


def _swap(family: Family, path: str, new: nn.Module) -> None:
    from im2text.engine.dedupe import encode_unique_images

    if not path:
        family.model = new
        return
    parent_path, _, name = path.rpartition(".")
    parent = family.model.get_submodule(parent_path) if parent_path else family.model
    setattr(parent, name, new)
    if type(family).vision_tower == path:
        encode_unique_images(new)  # the replaced tower had it; keep skipping repeated images


def _int8_linears(model: nn.Module, skip: tuple[type, ...]) -> None:
    """Every `nn.Linear` outside `skip` modules -> torch's dynamic-int8 linear, in place."""
    with warnings.catch_warnings():  # torch.ao's eager quantization warns it is deprecated
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        for name, child in list(model.named_children()):
            if isinstance(child, skip):
                continue
            if isinstance(child, nn.Linear):
                quantized = quantize_dynamic(nn.Sequential(child), {nn.Linear}, dtype=torch.qint8)[
                    0
                ]
                setattr(model, name, quantized)
            else:
                _int8_linears(child, skip)


# --- the runtime module -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outputs:
    """What a graph returns: which output class, and its tensor fields in graph order."""

    cls: str  # "transformers.modeling_outputs.BaseModelOutputWithPooling", or "tensor"/"tuple"
    fields: tuple[str, ...]


class GraphModule(nn.Module):
    """Stands in for a submodule: same call, same output class, computed by an exported graph."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], part: GraphPart,
                 outputs: _Outputs, original: nn.Module):  # fmt: skip
        super().__init__()
        self._run = run
        self.part = part
        self.outputs = outputs
        self.config = getattr(original, "config", None)  # callers read config values
        self.main_input_name = getattr(original, "main_input_name", part.inputs[0])
        self._dtype = next((p.dtype for p in original.parameters()), torch.float32)
        self._out_cls = _import(outputs.cls) if "." in outputs.cls else None

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        values = dict(zip(self.part.inputs, args, strict=False))
        for name in self.part.inputs:
            if name in kwargs:
                values[name] = kwargs.pop(name)
        for key, value in kwargs.items():  # flags that would change the output: refuse
            if value not in (None, False) and key != "return_dict":
                raise BackendError(
                    f"{key}={value!r} is not available on an exported graph (use --backend torch)"
                )
        missing = [n for n in self.part.inputs if values.get(n) is None]
        if missing:
            raise BackendError(f"graph inputs missing: {', '.join(missing)}")
        arrays = [_numpy(values[n]) for n in self.part.inputs]
        tensors = [torch.from_numpy(a).to(self._dtype) for a in self._run(arrays)]
        if self._out_cls is not None:
            return self._out_cls(**dict(zip(self.outputs.fields, tensors, strict=True)))
        return tensors[0] if self.outputs.cls == "tensor" else tuple(tensors)


def _numpy(t: torch.Tensor) -> Any:
    t = t.detach().to("cpu")
    return (t.float() if t.is_floating_point() else t).numpy()


def _import(dotted: str) -> Any:
    """The output class a graph's manifest names: only a transformers `ModelOutput` (a folder's
    JSON never makes im2text import or call anything else)."""
    import importlib

    from transformers.utils import ModelOutput

    module, _, name = dotted.rpartition(".")
    if not module.startswith("transformers."):
        raise BackendError(f"graph output class {dotted!r} is not a transformers ModelOutput")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelOutput)):
        raise BackendError(f"graph output class {dotted!r} is not a transformers ModelOutput")
    return cls


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _runner(backend: str, graph: Path) -> Callable[[list[Any]], list[Any]]:
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()  # as many as torch: never oversubscribe
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_ort(arrays: list[Any]) -> list[Any]:
            return list(session.run(None, dict(zip(names, arrays, strict=True))))

        return run_ort
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        str(graph), "CPU", {"INFERENCE_NUM_THREADS": _threads(), "INFERENCE_PRECISION_HINT": "f32"}
    )

    def run_ov(arrays: list[Any]) -> list[Any]:
        request = compiled.create_infer_request()  # one per call: callers may be threads
        result = request.infer(arrays, share_inputs=True)  # synchronous: no copy needed
        return [result[out] for out in compiled.outputs]

    return run_ov


# --- export, quantization and the cache ---------------------------------------------------------


class _Exportable(nn.Module):
    """Positional tensors in, a tuple of the output's tensor fields out (what exporters take)."""

    def __init__(self, module: nn.Module, part: GraphPart, fields: tuple[str, ...]):
        super().__init__()
        self.module = module
        self.part = part
        self.fields = fields

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # The class's own forward: instance-level wrappers (dedupe's torch.unique) don't export.
        out = type(self.module).forward(
            self.module, **dict(zip(self.part.inputs, tensors, strict=True))
        )
        if isinstance(out, torch.Tensor):
            return (out,)
        if hasattr(out, "keys"):
            return tuple(out[f] for f in self.fields)
        return tuple(out[int(f)] for f in self.fields)


def example_inputs(family: Family, part: GraphPart) -> dict[str, torch.Tensor]:
    """Inputs to export `part` with: its own example, else a batch of random images."""
    if part.example is not None:
        return part.example(family)
    size = family.image_size or 224
    gen = torch.Generator().manual_seed(0)
    # Batch 2, so the exporter does not specialise the batch dimension to 1.
    return {"pixel_values": torch.randn(2, 3, size, size, generator=gen)}


def _describe(out: Any) -> _Outputs:
    if isinstance(out, torch.Tensor):
        return _Outputs("tensor", ("0",))
    if hasattr(out, "keys"):
        fields = tuple(k for k in out if isinstance(out[k], torch.Tensor))
        return _Outputs(f"{type(out).__module__}.{type(out).__qualname__}", fields)
    fields = tuple(str(i) for i, v in enumerate(out) if isinstance(v, torch.Tensor))
    return _Outputs("tuple", fields)


def _output_spec(entry: dict[str, Any]) -> _Outputs:
    return _Outputs(entry["outputs"]["cls"], tuple(entry["outputs"]["fields"]))


def export_graph(
    module: nn.Module, part: GraphPart, example: dict[str, torch.Tensor], backend: str,
    int8: bool, path: Path,
) -> _Outputs:  # fmt: skip
    """Export `module` as `path` for `backend` (int8-quantized if asked); returns its outputs."""
    require_engine(backend)
    args = tuple(example[n] for n in part.inputs)
    with torch.inference_mode():
        described = _describe(type(module).forward(module, **example))
    wrapper = _Exportable(module, part, described.fields).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        if backend == "onnxruntime":
            fp32 = Path(tmp) / "fp32.onnx"
            _onnx_export(wrapper, args, part, fp32)
            if int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                with _quiet_logs():  # it advises pre-processing on the root logger, every time
                    quantize_dynamic(str(fp32), str(Path(tmp) / "int8.onnx"),
                                     weight_type=QuantType.QInt8)  # fmt: skip
                fp32 = Path(tmp) / "int8.onnx"
            _publish_onnx(fp32, path)
        else:
            _openvino_export(wrapper, args, part, int8, path, Path(tmp))
    return described


def _onnx_export(wrapper: nn.Module, args: tuple[torch.Tensor, ...], part: GraphPart,
                 path: Path) -> None:  # fmt: skip
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = (tuple({0: batch} for _ in args),)  # forward(*tensors): one varargs entry
    # The exporter prints its progress and warns about every op it decomposes: keep it quiet.
    with (
        warnings.catch_warnings(),
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
        _quiet_logs(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), dynamo=True, input_names=list(part.inputs),
            dynamic_shapes=dynamic, external_data=False, optimize=True,
        )  # fmt: skip


@contextlib.contextmanager
def _quiet_logs() -> Any:
    """Exporters and quantizers log advice at WARNING (torchvision ops skipped, pre-processing
    suggested) that says nothing about the user's model: hold it back while they run."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _publish_onnx(src: Path, dst: Path) -> None:
    """fsync, then rename into place (`src` is staged beside `dst`: no copy of the graph)."""
    with open(src, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)


def _openvino_export(wrapper: nn.Module, args: tuple[torch.Tensor, ...], part: GraphPart,
                     int8: bool, path: Path, tmp: Path) -> None:  # fmt: skip
    import openvino as ov

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(wrapper, example_input=args)
    for i, name in enumerate(part.inputs):  # dynamic batch, named inputs
        model.inputs[i].get_tensor().set_names({name})
    model.reshape({i: [-1, *a.shape[1:]] for i, a in enumerate(args)})
    if int8:
        try:
            import nncf
        except ImportError as e:
            raise BackendError(f"int8 on openvino needs NNCF: {_HINTS['openvino']}") from e
        # int8 weights; the CPU plugin then quantizes activations on the fly for its matmuls.
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                contextlib.redirect_stderr(null), _quiet_logs():  # fmt: skip
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    staged = tmp / "model.xml"
    ov.save_model(model, str(staged), compress_to_fp16=False)
    # The .bin first, then the .xml that names it: a reader never sees a half-written pair.
    os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(staged, path)


def graph_suffix(backend: str) -> str:
    return ".onnx" if backend == "onnxruntime" else ".xml"


def weights_hash(module: nn.Module) -> str:
    """sha256 over a module's parameter and buffer names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_root() -> Path:
    """Where exported graphs are kept: $IM2TEXT_CACHE, else ~/.cache/im2text."""
    base = os.environ.get("IM2TEXT_CACHE") or Path.home() / ".cache" / "im2text"
    return Path(base) / "graphs"


def _cache_key(family: Family, part: GraphPart, module: nn.Module, spec: BackendSpec,
               example: dict[str, torch.Tensor]) -> str:  # fmt: skip
    import im2text

    shapes = {k: tuple(v.shape[1:]) for k, v in example.items()}
    parts = [weights_hash(module), family.key, part.path, spec.label, engine_version(spec.backend),
             torch.__version__, im2text.__version__, json.dumps(shapes)]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _cached_graph(family: Family, part: GraphPart, module: nn.Module,
                  spec: BackendSpec) -> tuple[Path, _Outputs]:  # fmt: skip
    import fcntl

    example = example_inputs(family, part)
    folder = cache_root() / _cache_key(family, part, module, spec, example)
    graph = folder / f"graph{graph_suffix(spec.backend)}"
    meta = folder / "outputs.json"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:  # one exporter per entry; others wait, then reuse
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (graph.is_file() and meta.is_file()):
            outputs = export_graph(module, part, example, spec.backend, spec.int8, graph)
            meta.write_text(json.dumps(dataclasses.asdict(outputs)))
    return graph, _output_spec({"outputs": json.loads(meta.read_text())})


# --- exported folders ---------------------------------------------------------------------------


def _read_manifest(folder: str | None) -> dict[str, Any] | None:
    if not folder:
        return None
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def folder_backend(folder: str) -> BackendSpec | None:
    """The backend an exported folder was made for (None: a plain checkpoint)."""
    manifest = _read_manifest(folder)
    if manifest is None:
        return None
    return BackendSpec(manifest["backend"], bool(manifest["int8"]))


def export_model(family: Family, spec: BackendSpec, out: str) -> Path:
    """Write `family` as a folder `im2text.load(out)` runs on `spec` offline.

    The folder is the Hugging Face checkpoint (weights, config, processor) plus `graphs/`
    holding each graph part and `im2text-backend.json` naming them.
    """
    if spec.backend == "torch":
        raise BackendError("export writes graphs: use --backend onnxruntime or openvino")
    require_engine(spec.backend)
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    parts = type(family).graph_parts
    if not parts:
        raise BackendError(f"the {family.key} family has no graphs to export")
    target.mkdir(parents=True, exist_ok=True)
    family.save_pretrained(str(target))
    entries = {}
    for part in parts:
        module = family.model.get_submodule(part.path) if part.path else family.model
        name = (part.path or "model").replace(".", "_")
        graph = target / GRAPHS / f"{name}{graph_suffix(spec.backend)}"
        outputs = export_graph(
            module, part, example_inputs(family, part), spec.backend, spec.int8, graph
        )
        entries[part.path] = {
            "file": str(graph.relative_to(target)),
            "outputs": dataclasses.asdict(outputs),
        }
    import im2text

    manifest = {"backend": spec.backend, "int8": spec.int8, "family": family.key,
                "parts": entries, "engine": engine_version(spec.backend),
                "torch": torch.__version__, "im2text": im2text.__version__}  # fmt: skip
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return target
