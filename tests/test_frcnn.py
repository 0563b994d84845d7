"""The Visual Genome region detector: the reference checkpoint's module tree, plain-torch NMS and
RoIPool against hand-computed cases (and torchvision's, where it imports), always the regions
asked for, labelled regions through `detect`, batched == one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import random_images

import im2text
from im2text.engine import regions as R
from im2text.families.frcnn import Cfg, GeneralizedRCNN, _select
from im2text.testing.checkpoints import frcnn_vg_config

DATA = Path(__file__).parent / "data"


def test_module_tree_equals_the_reference_checkpoints() -> None:
    """Every tensor name and shape of the reference model built from the real config (ResNet-101
    C4, 1,600 + 400 classes): the real `pytorch_model.bin` loads unchanged."""
    expected = json.loads((DATA / "frcnn_vg_reference_keys.json").read_text())
    with torch.device("meta"):
        model = GeneralizedRCNN(Cfg(frcnn_vg_config()))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    assert len(ours) == 640


def test_nms_hand_computed() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(3, 0) = 90 / 100 = 0.9; IoU(3, 1) = 72 / 118 = 0.61; IoU(0, 1) = 81 / 119 = 0.68
    assert R.nms_plain(boxes, scores, 0.5).tolist() == [3, 2]
    assert R.nms_plain(boxes, scores, 0.65).tolist() == [3, 1, 2]
    assert R.nms_plain(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    # Strictly above the threshold is suppressed (0.9 is kept at 0.9).
    assert R.nms_plain(boxes[[3, 0]], scores[[3, 0]], 0.9).tolist() == [0, 1]
    groups = torch.tensor([0, 0, 0, 1])  # box 3 in its own group suppresses nothing
    assert R.batched_nms(boxes, scores, groups, 0.5).tolist() == [3, 0, 2]


def test_roi_pool_hand_computed() -> None:
    feat = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)  # value = 8 * row + col
    rois = torch.tensor([[0, 0, 0, 3, 3], [0, 2, 4, 7, 7], [0, 0, 0, 0, 0], [0, 20, 20, 30, 30.0]])
    out = R.roi_pool_plain(feat, rois, 2, 1.0)
    # RoI 0: rows/cols 0-3 in 2x2 bins -> maxima at (1,1), (1,3), (3,1), (3,3)
    assert out[0, 0].tolist() == [[9, 11], [25, 27]]
    # RoI 1: cols 2-7 (3 per bin), rows 4-7 (2 per bin)
    assert out[1, 0].tolist() == [[44, 47], [60, 63]]
    # RoI 2: one pixel: each bin is that pixel (floor/ceil edges)
    assert out[2, 0].tolist() == [[0, 0], [0, 0]]
    # Outside the map: zeros
    assert out[3].abs().sum() == 0
    # Scale 0.5 rounds half away from zero: x 3 -> 1.5 -> 2
    half = R.roi_pool_plain(feat, torch.tensor([[0, 0, 0, 3, 3.0]]), 1, 0.5)
    assert half[0, 0, 0, 0] == 8 * 2 + 2


@pytest.mark.skipif(R.TORCHVISION is None, reason="torchvision's compiled ops do not load here")
def test_plain_ops_equal_torchvision() -> None:  # pragma: no cover - needs a matching torchvision
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 30 + 1], 1)
    scores = torch.rand(200, generator=g)
    assert torch.equal(R.nms_plain(boxes, scores, 0.5), R.TORCHVISION.nms(boxes, scores, 0.5))
    feat = torch.randn(2, 4, 20, 20, generator=g)
    rois = torch.cat([torch.randint(0, 2, (50, 1)).float(), boxes[:50]], 1)
    assert torch.allclose(R.roi_pool_plain(feat, rois, 7, 0.25),
                          R.TORCHVISION.roi_pool(feat, rois, 7, 0.25))  # fmt: skip


def test_always_the_regions_asked_for() -> None:
    """Few boxes survive NMS (the reference crashes then): the suppressed ones fill up, best
    first; fewer proposals than asked repeat the best."""
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10.2, 10], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    keep = _select(boxes, scores, [0.2, 0.5], 4)
    assert keep.tolist() == [0, 3, 1, 2]  # NMS kept 0 and 3; then the suppressed, best first
    assert _select(boxes, scores, [0.2], 6).tolist() == [0, 3, 1, 2, 0, 3]
    assert _select(boxes, scores, [0.2], 2).tolist() == [0, 3]


@pytest.fixture(scope="module")
def detector(tiny) -> im2text.Model:
    return im2text.load(str(tiny("frcnn")))


def test_detector_loads_and_labels_regions(detector: im2text.Model, tmp_path: Path) -> None:
    assert detector.family.key == "frcnn" and detector.tasks == ("detect",)
    imgs = random_images(2, seed=4, size=(120, 80))
    found = detector.detect(imgs)
    for det, im in zip(found, imgs, strict=True):
        assert det.ok and len(det.regions) == 36
        scores = [g.score for g in det.regions]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
        for g in det.regions:
            x0, y0, x1, y1 = g.box
            assert 0 <= x0 <= x1 <= im.width and 0 <= y0 <= y1 <= im.height
            *attr, obj = g.label.split(" ")
            assert obj in detector.family.objects and len(attr) <= 1
    regions = detector.family.regions(imgs)
    assert regions[0]["features"].shape == (36, 256)  # res5 width of the tiny detector
    # Batched equals one at a time (same-size images: no padding between them).
    single = detector.family.regions(imgs[:1])[0]
    assert torch.allclose(single["features"], regions[0]["features"], atol=1e-4)
    assert torch.allclose(single["boxes"], regions[0]["boxes"], atol=1e-3)
    # Saved in the same layout, it loads back and finds the same regions.
    again = im2text.load(str(detector.save(tmp_path / "copy")))
    assert [g.label for g in again.detect(imgs[0]).regions] == [g.label for g in found[0].regions]


def test_bad_images_fail_alone(detector: im2text.Model, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    good = random_images(1, seed=5)[0]
    out = detector.detect([good, str(broken), good])
    assert out[0].ok and out[2].ok and not out[1].ok
    assert [g.label for g in out[0].regions] == [g.label for g in out[2].regions]


def test_cli_detect_bulk_and_tag_sidecars(detector: im2text.Model, tiny, tmp_path: Path) -> None:
    """`im2text detect` over a folder: a record per image (resumable), and with --sidecar the
    regions' labels as tags in photo.txt beside each photo (a caption dataset)."""
    from im2text.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, im in enumerate(random_images(3, seed=20, size=(80, 64))):
        im.save(folder / f"p{i}.png")
    out = tmp_path / "regions.jsonl"
    assert main(["detect", str(folder), "-m", str(tiny("frcnn")), "-o", str(out)]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 3 and all(len(r["regions"]) == 36 and r["labels"] for r in records)
    assert main(["detect", str(folder), "-m", str(tiny("frcnn")), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3  # resumed: nothing twice
    assert main(["detect", str(folder), "-m", str(tiny("frcnn")), "--sidecar"]) == 0
    for i in range(3):
        tags = (folder / f"p{i}.txt").read_text().strip()
        expected = detector.detect(str(folder / f"p{i}.png")).labels
        assert tags == ", ".join(expected)
