"""The house rules: capabilities declared and checked, one task table behind the API / CLI /
server, strict routing (a checkpoint without the head a task needs is refused), and every
family x tiny kind x preset actually runs (timm's `list_models()` pattern)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import random_images
from safetensors.torch import load_file, save_file

import im2text
from im2text.cli import EXIT_MODEL, build_parser, main
from im2text.families import (
    FAMILIES,
    CheckpointError,
    Family,
    family_for_config,
    family_for_folder,
)
from im2text.registry import list_models
from im2text.tasks import TASKS
from im2text.testing import TINY_KINDS

# The tiny kind that stands for each family with weights (engines ship their own).
KIND_OF = {
    "blip": "blip",
    "blip-vqa": "blip-vqa",
    "blip-itm": "blip-itm",
    "blip2": "blip2-opt",
    "instructblip": "instructblip",
    "vision-encoder-decoder": "vision-encoder-decoder",
    "git": "git",
    "llava": "llava",
    "idefics3": "idefics3",
    "paligemma": "paligemma",
    "qwen-vl": "qwen2.5-vl",
    "image-text-to-text": "gemma3",
    "florence2": "florence2",
    "got-ocr2": "got-ocr2",
    "frcnn": "frcnn",
    "visualbert": "visualbert-vqa",
    "visualbert-nlvr2": "visualbert-nlvr2",
    "visualbert-pre": "visualbert-pre",
    "clip": "clip",
    "vit": "vit",
}
ENGINES = {"rapidocr", "tesseract"}

# One small call per task, with what each needs.
RUN = {
    "caption": lambda m, ims: m.caption(ims, max_new_tokens=3, num_beams=1),
    "ask": lambda m, ims: m.ask(ims, "what is it?", max_new_tokens=3, num_beams=1),
    "read": lambda m, ims: m.read(ims, page=False, max_new_tokens=3, num_beams=1),
    "detect": lambda m, ims: m.detect(ims, max_new_tokens=9, num_beams=1),
    "match": lambda m, ims: m.match(ims, ["a cat", "a dog"]),
    "classify": lambda m, ims: m.classify(ims, None if m.family.key == "vit" else ["cat", "dog"]),
    "embed": lambda m, ims: m.embed_iter(im2text.images.expand_inputs(ims)),
}


def test_every_family_is_covered_here() -> None:
    assert set(FAMILIES) == set(KIND_OF) | ENGINES


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_family_declares_only_tasks_it_has_the_capability_for(key: str, tiny) -> None:
    fam = FAMILIES[key]
    assert fam.tasks and set(fam.tasks) <= set(TASKS), fam.tasks
    if key in ENGINES:
        return  # no checkpoint to build; their read capability is tested in test_ocr
    model = im2text.load(str(tiny(KIND_OF[key])))
    for task in fam.tasks:
        assert isinstance(model.family, TASKS[task].capability), (key, task)
        assert model.can(task)
    for task in set(TASKS) - set(fam.tasks):
        assert not model.can(task)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_tiny_kind_routes_loads_saves_and_runs(kind: str, tiny, tmp_path: Path) -> None:
    path = tiny(kind)
    own = family_for_folder(str(path))  # the region detector's own layout
    if own is not None:
        fam = own
    else:
        config = json.loads((path / "config.json").read_text())
        fam = family_for_config(config["model_type"], config.get("architectures"))
    model = im2text.load(str(path))
    assert type(model.family) is fam
    images = random_images(2)
    before = {t: list(RUN[t](model, images)) for t in fam.tasks}
    again = im2text.load(str(model.save(tmp_path / "copy")))  # save -> load round trip
    for task, results in before.items():
        assert all(r.ok for r in results), (task, results)
        after = list(RUN[task](again, images))
        assert [r.to_record("m") for r in after] == [r.to_record("m") for r in results]


@pytest.mark.parametrize("preset", [p.name for p in list_models()])
def test_every_preset_runs_its_tasks_on_a_tiny_checkpoint_of_its_family(preset: str, tiny) -> None:
    p = im2text.registry.get_preset(preset)
    assert p is not None and p.family in FAMILIES
    assert set(p.tasks) <= set(FAMILIES[p.family].tasks), (p.tasks, FAMILIES[p.family].tasks)
    if p.family in ENGINES:
        if p.family == "tesseract" and shutil.which("tesseract") is None:
            pytest.skip("tesseract binary not installed")
        model = im2text.load(preset)
    else:
        # The preset's own settings (generation defaults, prompt) on a tiny body of its family.
        tiny_model = im2text.load(str(tiny(KIND_OF[p.family])))
        model = im2text.Model(tiny_model.family, name=p.name, preset=p)
    for task in p.tasks:
        results = list(RUN[task](model, random_images(2)))
        assert len(results) == 2 and all(r.ok for r in results), (task, results)


# --- strict routing -------------------------------------------------------------------------------


def _dinov2(out: Path, head: bool) -> Path:
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2ForImageClassification,
        Dinov2Model,
    )

    torch.manual_seed(0)
    config = Dinov2Config(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    model = (Dinov2ForImageClassification if head else Dinov2Model)(config)
    model.save_pretrained(out)
    BitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(out)
    return out


def test_headless_checkpoint_is_refused_with_what_would_fit(tmp_path: Path) -> None:
    path = _dinov2(tmp_path / "dinov2", head=False)
    with pytest.raises(CheckpointError) as e:
        im2text.load(str(path))
    msg = str(e.value)
    assert "Dinov2Model" in msg and "dinov2" in msg  # what the checkpoint is
    assert "ForImageClassification" in msg and "classify" in msg  # what would fit
    images = tmp_path / "images"
    images.mkdir()
    random_images(1)[0].save(images / "a.png")
    assert main(["classify", str(images), "-m", str(path), "--no-progress"]) == EXIT_MODEL


def test_a_classifier_head_of_the_same_backbone_loads(tmp_path: Path) -> None:
    model = im2text.load(str(_dinov2(tmp_path / "dinov2-cls", head=True)))
    assert model.family.key == "vit"
    out = model.classify(random_images(1)[0], top_k=2)
    assert out.ok and len(out.labels) == 2


def test_missing_head_weights_are_refused_not_randomly_initialised(tiny, tmp_path: Path) -> None:
    path = tmp_path / "vit-no-head"
    shutil.copytree(tiny("vit"), path)
    weights = load_file(path / "model.safetensors")
    dropped = [k for k in weights if k.startswith("classifier.")]
    assert dropped
    save_file(
        {k: v for k, v in weights.items() if k not in dropped},
        path / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(CheckpointError, match="classifier"):
        im2text.load(str(path))


def test_config_without_a_head_is_refused_when_ambiguous(tiny, tmp_path: Path) -> None:
    path = tmp_path / "blip-no-arch"
    shutil.copytree(tiny("blip"), path)
    config = json.loads((path / "config.json").read_text())
    del config["architectures"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="architectures") as e:
        im2text.load(str(path))
    assert "BlipForQuestionAnswering" in str(e.value)  # names the heads it could be


def test_a_directory_whose_preset_names_another_family_is_refused(tiny, tmp_path: Path) -> None:
    path = tmp_path / "clip-says-blip"
    shutil.copytree(tiny("clip"), path)
    (path / "im2text.json").write_text(json.dumps({"preset": "blip-base"}))
    with pytest.raises(CheckpointError, match="blip-base"):
        im2text.load(str(path))


def test_unknown_model_type_is_refused() -> None:
    with pytest.raises(CheckpointError, match="unsupported model type 'bert'"):
        family_for_config("bert", ["BertModel"])


# --- the task table -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_row_drives_records_cli_and_server(task: str) -> None:
    from im2text.serve import _schemas as S

    spec = TASKS[task]
    failed = spec.result.failed("x.png", "broken", **({"question": "q"} if spec.pairs else {}))
    assert not failed.ok and failed.error == "broken"
    assert tuple(failed.to_record("m")) == spec.fields  # record keys, in CSV order
    record = S.RESPONSES[task].model_fields["results"].annotation.__args__[0]
    assert set(record.model_fields) == set(spec.fields)  # the server's records are the same
    request = S.REQUESTS[task].model_fields
    for p in spec.params:
        assert (p.name in request) == p.server, p.name
    assert set(spec.key_fields) <= set(spec.fields)
    # The CLI has the command, with a flag per parameter that has one.
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    cmd = sub.choices[task]  # type: ignore[attr-defined]
    dests = {a.dest for a in cmd._actions}
    assert {p.name for p in spec.params if p.flags} <= dests
    assert ("num_beams" in dests) == spec.generates


def test_families_use_no_hasattr_probes() -> None:
    src = Path(im2text.__file__).parent
    for sub in ("tasks", "model.py", "train/loop.py", "cli", "serve/_tasks.py", "serve/_params.py"):
        for f in [src / sub] if sub.endswith(".py") else (src / sub).rglob("*.py"):
            text = f.read_text()
            assert "hasattr(" not in text, f
            assert "attr-defined" not in text, f


def test_family_base_class_alone_has_no_capabilities() -> None:
    assert not any(isinstance(Family, t.capability) for t in TASKS.values())


# --- text encoding in chunks ------------------------------------------------------------------


def test_5000_zero_shot_labels_run_in_bounded_chunks(tiny) -> None:
    clip = im2text.load(str(tiny("clip")))
    text_model = clip.family.model.text_model
    sizes: list[int] = []
    hook = text_model.register_forward_hook(
        lambda m, a, kw, out: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        labels = [f"thing {i}" for i in range(5000)]
        out = clip.classify(random_images(1)[0], labels, templates="ensemble", top_k=3)
    finally:
        hook.remove()
    assert out.ok and len(out.labels) == 3
    assert sum(sizes) == 5000 * 7  # every label x template encoded once
    assert max(sizes) <= clip.family.text_batch_size  # never one giant forward pass


def test_chunked_text_encoding_equals_one_pass(tiny) -> None:
    for kind in ("clip", "blip-itm"):
        model = im2text.load(str(tiny(kind)))
        texts = [f"a photo of thing {i}" for i in range(11)]
        image = random_images(1)[0]
        whole = model.match(image, texts)
        model.family.text_batch_size = 3  # type: ignore[misc]
        chunked = model.match(image, texts)
        labels = model.classify(image, texts[:7], templates="ensemble", top_k=7)
        model.family.text_batch_size = 256  # type: ignore[misc]
        assert chunked.similarity == pytest.approx(whole.similarity, abs=1e-5)
        if whole.itm is not None:
            assert chunked.itm == pytest.approx(whole.itm, abs=1e-5)
        ref = model.classify(image, texts[:7], templates="ensemble", top_k=7)
        assert dict(labels.labels) == pytest.approx(dict(ref.labels), abs=1e-5)


# --- reproducible test material ---------------------------------------------------------------


def test_tiny_checkpoints_are_byte_identical_across_processes(tmp_path: Path) -> None:
    # Tokenizer trainers that break ties in hash order gave another vocabulary in every
    # process (and so learning runs that differed between two identical CI runs).
    import hashlib
    import subprocess
    import sys

    kinds = ["blip", "clip", "blip2-t5", "git"]
    code = "import sys; from im2text.testing import build_checkpoint\n" + "".join(
        f"build_checkpoint({k!r}, sys.argv[1])\n" for k in kinds
    )
    digests = []
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / run)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        files = sorted(p for p in (tmp_path / run).rglob("*") if p.is_file())
        digests.append(
            {
                str(f.relative_to(tmp_path / run)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in files
            }
        )
    assert digests[0] == digests[1]
    assert any(name.endswith("tokenizer.json") for name in digests[0])


def test_custom_sizes_are_cached_under_their_own_name(tmp_path: Path) -> None:
    from im2text.testing import build_checkpoint

    small = build_checkpoint("blip", tmp_path)
    custom = build_checkpoint("blip", tmp_path, hidden=48, layers=1, heads=2)
    assert (
        custom != small
        and build_checkpoint("blip", tmp_path, hidden=48, layers=1, heads=2) == custom
    )
    sizes = [
        json.loads((p / "config.json").read_text())["text_config"]["hidden_size"]
        for p in (small, custom)
    ]
    assert sizes == [32, 48]
