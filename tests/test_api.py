"""The public API: exports, presets, loading (incl. offline fail-fast), inputs and settings."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLES, random_images

import im2text
from im2text.engine.device import resolve_device, resolve_dtype
from im2text.families import FAMILIES

REQUIRED_PRESETS = {
    "blip-base",
    "blip-large",
    "blip2-opt-2.7b",
    "blip2-flan-t5-xl",
    "instructblip-flan-t5-xl",
    "vit-gpt2",
    "git-base",
    "git-large",
}


def test_public_api_is_what_we_mean_to_export() -> None:
    assert set(im2text.__all__) == {
        "TASKS",
        "Answer",
        "Candidate",
        "Caption",
        "CheckpointError",
        "Classification",
        "Detection",
        "Embedding",
        "EngineConfig",
        "JobSummary",
        "Line",
        "Match",
        "Reading",
        "Region",
        "GenerationSettings",
        "ImageError",
        "LoadSettings",
        "Model",
        "ModelNotAvailableError",
        "ModelTooLargeError",
        "Preset",
        "__version__",
        "download",
        "list_models",
        "load",
        "run_job",
    }
    for name in im2text.__all__:
        assert hasattr(im2text, name)


def test_presets_are_complete_data() -> None:
    presets = {p.name: p for p in im2text.list_models()}
    assert set(presets) >= REQUIRED_PRESETS
    for p in presets.values():
        assert p.family in FAMILIES, p
        assert p.tasks and p.description
        assert set(p.tasks) <= set(FAMILIES[p.family].tasks), p  # it can do what it says
        assert "/" in p.hub_id or not FAMILIES[p.family].needs_weights
        im2text.GenerationSettings().merged(**p.generation)  # every preset's settings are valid
    assert presets["blip-base"].hub_id == "Salesforce/blip-image-captioning-base"
    assert presets["vit-gpt2"].hub_id == "nlpconnect/vit-gpt2-image-captioning"
    assert presets["git-large"].hub_id == "microsoft/git-large-coco"
    assert all("ask" in p.tasks for p in im2text.list_models(task="ask"))


def test_offline_preset_fails_fast_with_a_hint() -> None:
    t0 = time.monotonic()
    with pytest.raises(im2text.ModelNotAvailableError) as e:
        im2text.load("blip-large")
    assert time.monotonic() - t0 < 10
    msg = str(e.value)
    assert "blip-large" in msg and "Salesforce/blip-image-captioning-large" in msg
    assert "im2text download blip-large --to DIR" in msg and "\n" not in msg


def test_offline_unknown_hub_id_fails_fast() -> None:
    with pytest.raises(im2text.ModelNotAvailableError, match="someone/some-model"):
        im2text.load("someone/some-model")


def test_bad_model_names() -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        im2text.load("./no/such/dir")
    with pytest.raises(ValueError, match="neither a preset"):
        im2text.load("not a model")


def test_single_input_returns_one_caption_and_raises_on_bad(tiny) -> None:
    model = im2text.load(str(tiny("blip")))
    cap = model.caption(EXAMPLES / "cat.jpg", max_new_tokens=4)
    assert isinstance(cap, im2text.Caption) and cap.source == str(EXAMPLES / "cat.jpg")
    with pytest.raises(im2text.ImageError, match="not an image"):
        model.caption(b"this is not an image")


def test_mixed_batch_keeps_going_in_order(tiny) -> None:
    model = im2text.load(str(tiny("git")), batch_size=2)
    buf = io.BytesIO()
    random_images(1)[0].save(buf, format="PNG")
    inputs = [buf.getvalue(), b"", EXAMPLES / "coffee.jpg", "/no/such.jpg", *random_images(2)]
    caps = model.caption(inputs, max_new_tokens=4)
    assert [c.ok for c in caps] == [True, False, True, False, True, True]
    assert "empty" in caps[1].error and "not found" in caps[3].error
    assert caps[2].source.endswith("coffee.jpg")


def test_directory_input(tiny) -> None:
    model = im2text.load(str(tiny("vision-encoder-decoder")))
    caps = model.caption(EXAMPLES, max_new_tokens=3)
    assert sorted(Path(c.source).name for c in caps) == sorted(
        p.name for p in EXAMPLES.glob("*.jpg")
    )


def test_download_local_dir_roundtrip(tiny, tmp_path: Path) -> None:
    out = im2text.download(str(tiny("blip")), tmp_path / "copy")
    assert (out / "model.safetensors").exists() and (out / "im2text.json").exists()
    a = im2text.load(str(tiny("blip"))).caption(random_images(2), max_new_tokens=5)
    b = im2text.load(str(out)).caption(random_images(2), max_new_tokens=5)
    assert [c.text for c in a] == [c.text for c in b]


def test_saved_preset_metadata_restores_defaults(tiny, tmp_path: Path) -> None:
    model = im2text.load(str(tiny("blip")))
    model.preset = im2text.Preset(name="blip-base", family="blip", hub_id="x/y", tasks=("caption",))
    model.save(tmp_path / "m")
    reloaded = im2text.load(str(tmp_path / "m"))
    assert reloaded.preset is not None and reloaded.preset.name == "blip-base"
    assert reloaded.generation.num_beams == 3  # the registry's blip-base settings


def test_generation_settings_validation() -> None:
    g = im2text.GenerationSettings()
    with pytest.raises(ValueError, match="num_beams"):
        g.merged(num_return_sequences=3, num_beams=2)
    with pytest.raises(TypeError, match="unknown generation setting"):
        g.merged(beams=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        g.merged(max_new_tokens=0)
    assert g.merged(do_sample=True, num_return_sequences=4).num_return_sequences == 4


def test_device_and_dtype_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_bfloat16_load_runs(tiny) -> None:
    model = im2text.load(str(tiny("blip")), dtype="bfloat16")
    assert next(model.family.model.parameters()).dtype == torch.bfloat16
    assert model.caption(random_images(1)[0], max_new_tokens=3).ok


def test_overlong_prompt_is_refused(tiny) -> None:
    model = im2text.load(str(tiny("blip")))
    with pytest.raises(ValueError, match="too long"):
        model.caption(random_images(1), prompt="word " * 500)
