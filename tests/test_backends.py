"""Backends: every family's graphs on onnxruntime and openvino equal torch (float32), int8 stays
close, exported folders run offline, and bad inputs behave as on the torch path.

Tiny random checkpoints in the Hub layout, exported through the same code users run
(`torch.onnx.export(dynamo=True)`, `openvino.convert_model`, onnxruntime's dynamic int8).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_images

import im2text
from im2text.cli import main
from im2text.engine.graphs import (
    MANIFEST,
    BackendError,
    BackendSpec,
    GraphModule,
    cache_root,
    example_inputs,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")

GRAPH_BACKENDS = ("onnxruntime", "openvino")
# Every family with graph parts, by tiny checkpoint kind, and the task it is judged on.
KINDS = {
    "blip": "caption",
    "blip-vqa": "ask",
    "blip-itm": "match",
    "clip": "match",
    "vit": "classify",
    "git": "caption",
    "vision-encoder-decoder": "caption",
    "trocr": "caption",
    "blip2-opt": "caption",
    "blip2-t5": "caption",
    "instructblip": "caption",
}


def _images(n: int = 3) -> list:
    # Mixed sizes: the processor resizes them; one batch holds them all.
    return [random_images(1, seed=i, size=(40 + 12 * i, 36 + 5 * i))[0] for i in range(n)]


def _outputs(model: im2text.Model, task: str) -> dict:
    """What a user sees, in full precision: texts + scores, or probabilities."""
    imgs = _images()
    if task == "caption":
        caps = model.caption(imgs, max_new_tokens=6)
        assert all(c.ok for c in caps), [c.error for c in caps]
        return {"text": [c.text for c in caps], "score": [c.mean_logprob for c in caps]}
    if task == "ask":
        ans = model.ask(imgs, ["what is it?", "a color?", "how many?"], max_new_tokens=4)
        assert all(a.ok for a in ans), [a.error for a in ans]
        return {"text": [a.text for a in ans], "score": [a.confidence for a in ans]}
    if task == "match":
        rows = model.match(imgs, ["a cat", "a red square", "two dogs"])
        assert all(r.ok for r in rows), [r.error for r in rows]
        return {"score": [s for r in rows for s in (*r.similarity, *r.probability, *(r.itm or ()))]}
    top = model.classify(imgs, top_k=3)
    assert all(c.ok for c in top), [c.error for c in top]
    return {"text": [[n for n, _ in c.labels] for c in top],
            "score": [p for c in top for _, p in c.labels]}  # fmt: skip


def _graph_parts(model: im2text.Model) -> list[GraphModule]:
    root = model.family.model
    return [m for m in ([root] if isinstance(root, GraphModule) else root.modules())
            if isinstance(m, GraphModule)]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_float32_graphs_equal_torch(kind: str, tiny) -> None:
    """Each family on each graph backend: the part's own outputs within 1e-4 of torch, and
    the same texts (greedy) with scores within 1e-4."""
    path = str(tiny(kind))
    task = KINDS[kind]
    torch_model = im2text.load(path)
    want = _outputs(torch_model, task)
    for backend in GRAPH_BACKENDS:
        model = im2text.load(path, backend=backend)
        parts = _graph_parts(model)
        assert parts, f"{kind} on {backend}: nothing ran as a graph"
        if kind.startswith("blip2"):  # the ViT and the Q-Former
            assert {p.part.path for p in parts} == {"vision_model", "qformer"}
        assert model.family.backend == BackendSpec(backend)
        got = _outputs(model, task)
        assert got.get("text") == want.get("text"), (kind, backend)
        np.testing.assert_allclose(got["score"], want["score"], atol=1e-4, err_msg=backend)
        # Each exported part itself, on a batch, against the torch module it replaced.
        for part in parts:
            sub = part.part.path
            root = torch_model.family.model
            original = root.get_submodule(sub) if sub else root
            inputs = example_inputs(torch_model.family, part.part)
            with torch.inference_mode():
                ref = type(original).forward(original, **inputs)
                out = part(**inputs)
            first = ref if isinstance(ref, torch.Tensor) else ref[0]
            mine = out if isinstance(out, torch.Tensor) else out[0]
            assert (first - mine).abs().max().item() <= 1e-4, (kind, backend, sub)


def test_batched_equals_one_at_a_time_on_graphs(tiny) -> None:
    model = im2text.load(str(tiny("blip")), backend="onnxruntime", batch_size=3)
    imgs = _images()
    batched = [c.text for c in model.caption(imgs, max_new_tokens=6)]
    single = [model.caption(im, max_new_tokens=6).text for im in imgs]
    assert batched == single


@pytest.mark.parametrize("kind", ["blip", "clip", "vit", "vision-encoder-decoder", "blip2-opt"])
def test_int8_stays_close_to_float32(kind: str, tiny) -> None:
    """int8 (onnxruntime graphs + torch int8 linears) on random tiny weights: the encoder's
    output keeps a cosine similarity >= 0.98 to float32's (measured: 0.995-0.9999)."""
    path = str(tiny(kind))
    fp32 = im2text.load(path, backend="onnxruntime")
    int8 = im2text.load(path, backend="onnxruntime", quantize="int8")
    assert int8.family.backend == BackendSpec("onnxruntime", int8=True)
    a, b = _graph_parts(fp32)[0], _graph_parts(int8)[0]
    size = fp32.family.image_size
    pv = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        x, y = a(pixel_values=pv), b(pixel_values=pv)
    x = (x if isinstance(x, torch.Tensor) else x[0]).flatten(1)
    y = (y if isinstance(y, torch.Tensor) else y[0]).flatten(1)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
    print(f"{kind}: int8 vs float32 cosine {cos.mean():.4f} (min {cos.min():.4f})")
    assert cos.min().item() >= 0.98
    # What stays in torch runs int8 linears.
    quantized = [m for m in int8.family.model.modules() if "quantized" in type(m).__module__]
    if kind != "vit":  # the whole ViT classifier is the graph
        assert quantized


def test_torch_int8_quantizes_linears_only(tiny) -> None:
    model = im2text.load(str(tiny("blip")), quantize="int8")
    assert model.family.backend == BackendSpec("torch", int8=True)
    kinds = {type(m).__module__ for m in model.family.model.modules()}
    assert any("quantized" in k for k in kinds)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.family.model.modules())
    caps = model.caption(_images(), max_new_tokens=5)
    assert all(c.ok and c.text and c.mean_logprob <= 0 for c in caps)


def test_graph_cache_is_keyed_by_weights(tiny, tmp_path: Path, monkeypatch) -> None:
    """A second load reuses the cached graph; other weights or int8 get their own entry."""
    monkeypatch.setenv("IM2TEXT_CACHE", str(tmp_path / "cache"))
    path = str(tiny("clip"))
    im2text.load(path, backend="onnxruntime")
    entries = sorted(cache_root().iterdir())
    assert len(entries) == 1
    graph = entries[0] / "graph.onnx"
    stamp = graph.stat().st_mtime_ns
    im2text.load(path, backend="onnxruntime")
    assert graph.stat().st_mtime_ns == stamp and len(list(cache_root().iterdir())) == 1
    im2text.load(path, backend="onnxruntime", quantize="int8")
    assert len(list(cache_root().iterdir())) == 2
    # Change one weight: a new checkpoint hash, a new entry (never the stale graph).
    changed = tmp_path / "changed"
    model = im2text.load(path)
    with torch.no_grad():
        model.family.model.vision_model.post_layernorm.bias.add_(0.5)
    model.save(changed)
    im2text.load(str(changed), backend="onnxruntime")
    assert len(list(cache_root().iterdir())) == 3


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_export_then_load_offline(backend: str, tiny, tmp_path: Path, monkeypatch, capsys) -> None:
    """`im2text export` writes a folder that loads (with no cache to fall back on) and gives
    the same captions as the model it came from, on the backend it was exported for."""
    monkeypatch.setenv("IM2TEXT_CACHE", str(tmp_path / "empty-cache"))
    src = str(tiny("blip"))
    out = tmp_path / "exported"
    assert main(["export", src, "--backend", backend, "--to", str(out)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["backend"] == backend and manifest["int8"] is False
    assert all((out / e["file"]).is_file() for e in manifest["parts"].values())
    model = im2text.load(str(out))
    assert model.family.backend == BackendSpec(backend)
    assert not (tmp_path / "empty-cache").exists()  # the folder's graphs ran; nothing exported
    want = [c.text for c in im2text.load(src).caption(_images(), max_new_tokens=6)]
    assert [c.text for c in model.caption(_images(), max_new_tokens=6)] == want
    # A folder made for one backend is not loaded on another.
    with pytest.raises(BackendError, match="exported for"):
        im2text.load(str(out), backend="torch")
    # The manifest names output classes; nothing but a transformers ModelOutput is imported.
    tampered = json.loads((out / MANIFEST).read_text())
    for entry in tampered["parts"].values():
        entry["outputs"]["cls"] = "os.system"
    (out / MANIFEST).write_text(json.dumps(tampered))
    with pytest.raises(BackendError, match="not a transformers ModelOutput"):
        im2text.load(str(out))
    (out / MANIFEST).write_text(json.dumps(manifest))
    # Exporting onto a non-empty folder is refused, and leaves it as it was.
    before = sorted(p.name for p in out.iterdir())
    assert main(["export", src, "--backend", backend, "--to", str(out)]) != 0
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_export_int8_via_cli_and_caption_through_cli(tiny, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    assert main(["export", str(tiny("blip")), "--backend", "onnxruntime", "--int8",
                 "--to", str(out)]) == 0  # fmt: skip
    records = tmp_path / "caps.jsonl"
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_images()):
        im.save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code = main(["caption", str(folder), "-m", str(out), "-o", str(records), "--int8",
                 "--no-progress", "--max-new-tokens", "4"])  # fmt: skip
    assert code == 4  # one item failed, the others were written
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 4
    bad = [r for r in rows if r.get("error")]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.jpg")
    assert all(r["caption"] for r in rows if not r.get("error"))


def test_bulk_job_names_its_backend(tiny, tmp_path: Path) -> None:
    """Records from int8 are not float32's: resuming a float32 output with --int8 is refused."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(_images(2)):
        im.save(folder / f"{i}.png")
    out = tmp_path / "caps.jsonl"
    args = ["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out), "--no-progress",
            "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == 0
    assert main([*args, "--backend", "onnxruntime", "--int8"]) == 2
    assert len(out.read_text().splitlines()) == 2


def test_missing_engine_gives_the_install_hint(tiny, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(BackendError, match=r"pip install 'im2text\[openvino\]'"):
        im2text.load(str(tiny("clip")), backend="openvino")
    code = main(["embed", str(Path(__file__).parent / "data"), "-m", str(tiny("clip")),
                 "--backend", "openvino", "--no-progress"])  # fmt: skip
    assert code == 2
    assert "pip install 'im2text[openvino]'" in capsys.readouterr().err


def test_backend_refusals(tiny) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        im2text.load(str(tiny("clip")), backend="tensorrt")
    with pytest.raises(ValueError, match="unknown quantize"):
        im2text.load(str(tiny("clip")), quantize="int4")
    model = im2text.load(str(tiny("blip")), backend="onnxruntime")
    with pytest.raises(BackendError, match="not available on an exported graph"):
        _graph_parts(model)[0](pixel_values=torch.zeros(1, 3, 32, 32), output_attentions=True)
    with pytest.raises(BackendError, match="torch float32"):
        model.export(os.devnull, backend="openvino")
    with pytest.raises(BackendError, match="cannot be saved"):
        model.save(os.devnull)


def test_server_loads_models_on_the_int8_backend(tiny) -> None:
    """`serve --backend onnxruntime --int8`: names load on that backend; answers equal the same
    model's Python API on that backend."""
    pytest.importorskip("fastapi")
    import base64
    import io
    import time

    from fastapi.testclient import TestClient

    from im2text.serve import ServeConfig, create_app

    path = str(tiny("blip"))
    image = io.BytesIO()
    _images(1)[0].save(image, "PNG")
    want = im2text.load(path, backend="onnxruntime", quantize="int8").caption(image.getvalue())
    fp32 = im2text.load(path).caption(image.getvalue())
    assert want.mean_logprob != fp32.mean_logprob  # so the server's answer tells them apart
    app = create_app([path], ServeConfig(backend="onnxruntime", int8=True))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = {"model": "blip", "image": base64.b64encode(image.getvalue()).decode()}
        resp = client.post("/v1/caption", json=body)
    assert resp.status_code == 200, resp.text
    (record,) = resp.json()["results"]
    assert record["caption"] == want.text
    assert record["mean_logprob"] == pytest.approx(want.mean_logprob, abs=1e-5)
