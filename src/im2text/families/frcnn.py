"""The Visual Genome Faster R-CNN (bottom-up attention, `unc-nlp/frcnn-vg-finetuned`): a ResNet
C4 backbone, an RPN, RoI heads with res5, 1,600 object and 400 attribute classes. It finds the
regions VisualBERT and LXMERT read (36 by default, 2,048 features each) and labels them
("red car").

Written here after the reference demo code in transformers' research projects (lxmert /
visual_bert `modeling_frcnn.py`, `processing_image.py`), with its module tree and config keys,
so its checkpoint (`config.yaml` + `pytorch_model.bin`) loads unchanged. Unlike the reference it
needs no compiled torchvision ops (plain-torch NMS / RoIPool in `engine/regions.py`, the same
results) and always returns the regions asked for: when too few survive NMS, the best-scoring
suppressed ones fill up (the reference crashes then).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from im2text.engine import regions as R
from im2text.families.base import CheckpointError, Family
from im2text.results import Region

if TYPE_CHECKING:
    from PIL import Image

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "pytorch_model.bin"
OBJECTS_FILE = "objects_vocab.txt"  # one label per line (index 0 = first class), optional
ATTRIBUTES_FILE = "attributes_vocab.txt"


class Cfg(dict):
    """The YAML config as attributes (`cfg.RESNETS.DEPTH`), as the reference reads it."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(f"config.yaml has no {key!r}") from None
        return Cfg(value) if isinstance(value, dict) else value


def read_config(path: str | Path) -> Cfg:
    import yaml

    return Cfg(yaml.safe_load(Path(path).read_text()))


# --- the module tree (names as in the reference checkpoint) ------------------------------------


class ConvNorm(nn.Conv2d):
    """A conv with its norm as a child named `norm` (detectron2's Conv2d)."""

    def __init__(self, *args: Any, norm: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.norm = nn.BatchNorm2d(self.out_channels) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.norm(x) if self.norm is not None else x


class Stem(nn.Module):
    def __init__(self, out_channels: int, caffe_maxpool: bool):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.caffe_maxpool = caffe_maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        if self.caffe_maxpool:  # Caffe's pooling: no padding, the last window may overhang
            return nn.functional.max_pool2d(x, 3, 2, 0, ceil_mode=True)
        return nn.functional.max_pool2d(x, 3, 2, 1)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int, stride: int, groups: int,
                 stride_in_1x1: bool, dilation: int = 1):  # fmt: skip
        super().__init__()
        self.shortcut = (
            ConvNorm(cin, cout, kernel_size=1, stride=stride, bias=False) if cin != cout else None
        )
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(cin, mid, kernel_size=1, stride=s1, bias=False)
        self.conv2 = ConvNorm(mid, mid, kernel_size=3, stride=s3, padding=dilation,
                              dilation=dilation, groups=groups, bias=False)  # fmt: skip
        self.conv3 = ConvNorm(mid, cout, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv1(x))
        out = torch.relu(self.conv2(out))
        out = self.conv3(out)
        return torch.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


def _stage(
    n: int, cin: int, cout: int, mid: int, stride: int, r: Cfg, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(*(
        Bottleneck(cin if i == 0 else cout, cout, mid, stride if i == 0 else 1,
                   r.NUM_GROUPS, r.STRIDE_IN_1X1, dilation)
        for i in range(n)
    ))  # fmt: skip


class Backbone(nn.Module):
    """ResNet up to the last stage named in RESNETS.OUT_FEATURES (res4 for C4): stride 16."""

    def __init__(self, cfg: Cfg):
        super().__init__()
        r = cfg.RESNETS
        self.stem = Stem(r.STEM_OUT_CHANNELS, cfg.MODEL.MAX_POOL)
        blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[r.DEPTH]
        last = max(int(f[-1]) for f in r.OUT_FEATURES)
        cin, cout = r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
        mid = r.NUM_GROUPS * r.WIDTH_PER_GROUP
        self.out_features = list(r.OUT_FEATURES)
        for i, stage in enumerate(range(2, last + 1)):
            self.add_module(f"res{stage}", _stage(blocks[i], cin, cout, mid, 1 if i == 0 else 2, r))
            cin, cout, mid = cout, cout * 2, mid * 2
        self.channels = cin
        self.stride = 4 * 2 ** (last - 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for name, stage in self.named_children():
            if name.startswith("res"):
                x = stage(x)
                if name in self.out_features:
                    out[name] = x
        return out


class AnchorGenerator(nn.Module):
    def __init__(self, cfg: Cfg, stride: int):
        super().__init__()
        a = cfg.ANCHOR_GENERATOR
        self.stride, self.offset = stride, a.OFFSET
        cells = []
        for size in a.SIZES[0]:
            for ratio in a.ASPECT_RATIOS[0]:
                w = math.sqrt(size**2.0 / ratio)
                h = ratio * w
                cells.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        # A parameter list, as in the reference: its state dict carries the cell anchors.
        self.cell_anchors = nn.ParameterList([nn.Parameter(torch.tensor(cells))])

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(height * width * A, 4) anchors, row-major over the grid, A per position."""
        s = self.stride
        xs = torch.arange(self.offset * s, width * s, step=s, dtype=torch.float32)
        ys = torch.arange(self.offset * s, height * s, step=s, dtype=torch.float32)
        sy, sx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([sx.reshape(-1), sy.reshape(-1)] * 2, dim=1)
        cells = self.cell_anchors[0].detach().to(shifts)
        return (shifts[:, None, :] + cells[None]).reshape(-1, 4)


class RPNHead(nn.Module):
    def __init__(self, channels: int, hidden: int, anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.objectness_logits = nn.Conv2d(hidden, anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(hidden, anchors * 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.relu(self.conv(x))
        return self.objectness_logits(t), self.anchor_deltas(t)


class RPN(nn.Module):
    def __init__(self, cfg: Cfg, channels: int, stride: int):
        super().__init__()
        self.cfg = cfg.RPN
        self.min_size = cfg.PROPOSAL_GENERATOR.MIN_SIZE
        hidden = cfg.PROPOSAL_GENERATOR.HIDDEN_CHANNELS
        self.anchor_generator = AnchorGenerator(cfg, stride)
        count = len(self.anchor_generator.cell_anchors[0])
        self.rpn_head = RPNHead(channels, channels if hidden == -1 else hidden, count)

    def forward(self, feature: torch.Tensor, sizes: torch.Tensor) -> list[torch.Tensor]:
        """Per image: proposal boxes (at most POST_NMS_TOPK_TEST), best objectness first."""
        n, _, h, w = feature.shape
        logits, deltas = self.rpn_head(feature)
        anchors = self.anchor_generator(h, w)  # (h*w*A, 4)
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1)  # (N, h*w*A)
        deltas = deltas.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        out = []
        for i in range(n):
            boxes = R.apply_deltas(deltas[i], anchors, tuple(self.cfg.BBOX_REG_WEIGHTS))
            scores, order = logits[i].sort(descending=True)
            top = order[: self.cfg.PRE_NMS_TOPK_TEST]
            boxes, scores = boxes[top], scores[: len(top)]
            R.clip_boxes(boxes, float(sizes[i, 0]), float(sizes[i, 1]))
            size = boxes[:, 2:] - boxes[:, :2]
            ok = (size > self.min_size).all(1)
            boxes, scores = boxes[ok], scores[ok]
            keep = R.nms(boxes, scores, self.cfg.NMS_THRESH)[: self.cfg.POST_NMS_TOPK_TEST]
            out.append(boxes[keep])
        return out


class BoxPredictor(nn.Module):
    """Class scores, per-class box deltas and (VG) attribute scores from pooled features."""

    def __init__(self, channels: int, classes: int, attributes: int, agnostic: bool):
        super().__init__()
        self.cls_score = nn.Linear(channels, classes + 1)
        self.bbox_pred = nn.Linear(channels, (1 if agnostic else classes) * 4)
        self.cls_embedding = nn.Embedding(classes + 1, channels // 8)
        self.fc_attr = nn.Linear(channels + channels // 8, channels // 4)
        self.attr_score = nn.Linear(channels // 4, attributes + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = self.cls_score(x)
        # Attributes are predicted given the most likely class (background included).
        emb = self.cls_embedding(scores.argmax(-1))
        attrs = self.attr_score(torch.relu(self.fc_attr(torch.cat([x, emb], -1))))
        return scores, attrs, self.bbox_pred(x)


class RoIHeads(nn.Module):
    def __init__(self, cfg: Cfg, channels: int, stride: int):
        super().__init__()
        m = cfg
        self.resolution = m.ROI_BOX_HEAD.POOLER_RESOLUTION
        self.scale = 1.0 / stride
        out = m.RESNETS.RES2_OUT_CHANNELS * 8
        mid = m.RESNETS.NUM_GROUPS * m.RESNETS.WIDTH_PER_GROUP * 8
        # VG (RES5HALVE false): res5 keeps the pooled resolution (stride 1) and dilates its
        # 3x3 convs by 2 instead.
        halve = m.ROI_BOX_HEAD.RES5HALVE
        self.res5 = _stage(3, out // 2, out, mid, 2 if halve else 1, m.RESNETS, 1 if halve else 2)
        self.box_predictor = BoxPredictor(out, m.ROI_HEADS.NUM_CLASSES,
                                          m.ROI_BOX_HEAD.NUM_ATTRS,
                                          m.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG)  # fmt: skip

    def forward(self, feature: torch.Tensor, boxes: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1)
                          for i, b in enumerate(boxes)])  # fmt: skip
        pooled = R.roi_pool(feature, rois.to(feature), self.resolution, self.scale)
        feats = self.res5(pooled).mean(dim=(2, 3))  # (K, 2048)
        return (*self.box_predictor(feats), feats)


class GeneralizedRCNN(nn.Module):
    """The detector: `backbone`, `proposal_generator`, `roi_heads` (the checkpoint's names)."""

    def __init__(self, cfg: Cfg):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        ch, stride = self.backbone.channels, self.backbone.stride
        self.proposal_generator = RPN(cfg, ch, stride)
        self.roi_heads = RoIHeads(cfg, ch, stride)

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, sizes: torch.Tensor, scales: torch.Tensor, count: int
    ) -> list[dict[str, torch.Tensor]]:
        """Per image, `count` regions: boxes in the original image's pixels, object and
        attribute ids and probabilities, and the 2,048-d pooled features VisualBERT reads."""
        feature = next(iter(self.backbone(images).values()))
        proposals = self.proposal_generator(feature, sizes)
        obj, attr, deltas, feats = self.roi_heads(feature, proposals)
        m = self.cfg
        out = []
        start = 0
        for i, props in enumerate(proposals):
            k = slice(start, start + len(props))
            start += len(props)
            boxes = R.apply_deltas(deltas[k], props, tuple(m.ROI_BOX_HEAD.BBOX_REG_WEIGHTS))
            probs = obj[k].softmax(-1)[:, :-1]  # the last class is background
            attr_probs, attr_ids = attr[k][:, :-1].softmax(-1).max(-1)
            best, classes = probs.max(1)
            per_class = boxes.view(len(props), -1, 4)
            idx = classes if per_class.shape[1] > 1 else torch.zeros_like(classes)
            chosen = R.clip_boxes(per_class[torch.arange(len(props)), idx].clone(),
                                  float(sizes[i, 0]), float(sizes[i, 1]))  # fmt: skip
            keep = _select(chosen, best, m.ROI_HEADS.NMS_THRESH_TEST, count)
            chosen = chosen[keep] * scales[i].flip(0).repeat(2)  # back to the original pixels
            out.append({"boxes": chosen, "obj_ids": classes[keep], "obj_probs": best[keep],
                        "attr_ids": attr_ids[keep], "attr_probs": attr_probs[keep],
                        "features": feats[k][keep]})  # fmt: skip
        return out


def _select(boxes: torch.Tensor, scores: torch.Tensor, thresholds: Any, count: int) -> torch.Tensor:
    """`count` detections: NMS at the first threshold leaving at least `count` (the reference
    tries them in order); short of that, the boxes NMS kept, then the best it suppressed, then
    (fewer proposals than `count`) the best ones again."""
    thresholds = thresholds if isinstance(thresholds, list) else [thresholds]
    keep = torch.empty(0, dtype=torch.long)
    for t in thresholds:
        keep = R.nms(boxes, scores, t)
        if len(keep) >= count:
            return keep[:count]
    rest = [i for i in scores.argsort(descending=True).tolist() if i not in set(keep.tolist())]
    keep = torch.cat([keep, torch.tensor(rest, dtype=torch.long)])
    if len(keep) == 0:
        raise ValueError("the detector found no proposals in this image")
    return keep[torch.arange(count) % len(keep)]


# --- preprocessing ----------------------------------------------------------------------------


def preprocess(
    images: list[Image.Image], cfg: Cfg
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As the reference: BGR float pixels, the short side resized to INPUT.MIN_SIZE_TEST (the
    long side at most MAX_SIZE_TEST; bilinear), minus the pixel means over the stds, padded
    with PAD_VALUE to the batch's largest. Returns images (N, 3, H, W), sizes (N, 2) h, w
    after resizing, and the (y, x) scales back to the original pixels."""
    import numpy as np

    short, longest = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    tensors, sizes, raws = [], [], []
    for im in images:
        arr = np.asarray(im.convert("RGB"))
        if cfg.INPUT.FORMAT == "BGR":
            arr = arr[:, :, ::-1]
        x = torch.from_numpy(arr.copy()).float().permute(2, 0, 1)  # (3, h, w)
        h, w = x.shape[1:]
        scale = short / min(h, w)
        nh, nw = (short, scale * w) if h < w else (scale * h, short)
        if max(nh, nw) > longest:
            shrink = longest / max(nh, nw)
            nh, nw = nh * shrink, nw * shrink
        nh, nw = int(nh + 0.5), int(nw + 0.5)
        x = nn.functional.interpolate(x[None], (nh, nw), mode="bilinear", align_corners=False)[0]
        tensors.append((x - mean) / std)
        sizes.append((nh, nw))
        raws.append((h, w))
    height = max(s[0] for s in sizes)
    width = max(s[1] for s in sizes)
    batch = torch.stack([
        nn.functional.pad(t, [0, width - t.shape[2], 0, height - t.shape[1]],
                          value=float(cfg.PAD_VALUE))
        for t in tensors
    ])  # fmt: skip
    size_t = torch.tensor(sizes)
    return batch, size_t, torch.tensor(raws, dtype=torch.float32) / size_t


# --- the family ---------------------------------------------------------------------------------


class FrcnnDetector(Family):
    """Regions with attribute + object labels ("red car"), and the features VisualBERT reads."""

    key = "frcnn"
    model_types = ()  # not a transformers config: a folder with config.yaml + the weights
    own_layout = True
    model_class = "GeneralizedRCNN"
    needs_tokenizer = False
    tasks: ClassVar[tuple[str, ...]] = ("detect",)

    def __init__(self, model: GeneralizedRCNN, labels: tuple[list[str], list[str]],
                 device: torch.device, dtype: torch.dtype):  # fmt: skip
        super().__init__(model, None, device, dtype)
        self.objects, self.attributes = labels
        self.count = int(model.cfg.get("MAX_DETECTIONS", 36))

    @classmethod
    def is_checkpoint(cls, folder: str | Path) -> bool:
        return (Path(folder) / CONFIG_FILE).is_file()

    @classmethod
    def from_pretrained(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any
    ) -> FrcnnDetector:
        folder = Path(source)
        if not folder.is_dir():  # a Hub id: its two files (and label files, if it has them)
            from huggingface_hub import hf_hub_download

            kw = {k: v for k, v in hub.items() if k in ("revision", "local_files_only")}
            cfg_path = Path(hf_hub_download(source, CONFIG_FILE, **kw))
            hf_hub_download(source, WEIGHTS_FILE, **kw)
            folder = cfg_path.parent
        cfg = read_config(folder / CONFIG_FILE)
        model = GeneralizedRCNN(cfg)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{source} has no {WEIGHTS_FILE}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        # Caffe2-era names: gamma / beta for the norms' weight / bias (the reference renames).
        state = {k.replace("gamma", "weight").replace("beta", "bias"): v for k, v in state.items()}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            extra = result.unexpected_keys
            raise CheckpointError(
                f"{source} does not match the detector its config.yaml describes: "
                f"{len(missing)} missing ({', '.join(missing[:3])}), "
                f"{len(extra)} unexpected ({', '.join(extra[:3])})"
            )
        model.to(device).eval()
        return cls(model, _labels(folder, cfg), device, dtype)

    def save_pretrained(self, directory: str) -> None:
        import yaml

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(yaml.safe_dump(dict(self.model.cfg)))
        torch.save(self.model.state_dict(), out / WEIGHTS_FILE)
        (out / OBJECTS_FILE).write_text("\n".join(self.objects) + "\n")
        (out / ATTRIBUTES_FILE).write_text("\n".join(self.attributes) + "\n")

    @property
    def image_size(self) -> int | None:
        return int(self.model.cfg.INPUT.MIN_SIZE_TEST)

    def regions(self, images: list[Image.Image], count: int | None = None) -> list[dict]:
        """Per image: `count` (default MAX_DETECTIONS) regions' boxes, ids, probabilities and
        features (what VisualBERT reads)."""
        batch, sizes, scales = preprocess(images, self.model.cfg)
        out = self.model(batch.to(self.device), sizes, scales, count or self.count)
        return [{k: v.cpu() for k, v in r.items()} for r in out]

    def detect(self, images: list[Image.Image], settings: Any = None) -> list[list[Region]]:
        """Labelled regions scored by their object's probability: "attribute object" when the
        attribute is likely (probability above 0.1, the demo's rule), else the object alone."""
        found = []
        for r in self.regions(images):
            rows = []
            for box, oid, op, aid, ap in zip(r["boxes"].tolist(), r["obj_ids"].tolist(),
                                              r["obj_probs"].tolist(), r["attr_ids"].tolist(),
                                              r["attr_probs"].tolist(), strict=True):  # fmt: skip
                label = self.objects[oid]
                if ap > 0.1:
                    label = f"{self.attributes[aid]} {label}"
                rows.append(Region(label, (box[0], box[1], box[2], box[3]), float(op)))
            found.append(rows)
        return found


def _labels(folder: Path, cfg: Cfg) -> tuple[list[str], list[str]]:
    """Object and attribute names from the folder's vocab files (Visual Genome's, one per line;
    a line "a,b" names synonyms: the first is used), else numbered names."""

    def read(name: str, n: int, prefix: str) -> list[str]:
        path = folder / name
        if path.is_file():
            names = [ln.split(",")[0].strip() for ln in path.read_text().splitlines() if ln.strip()]
            if len(names) == n:
                return names
        return [f"{prefix}{i}" for i in range(n)]

    m = cfg
    return (read(OBJECTS_FILE, m.ROI_HEADS.NUM_CLASSES, "object"),
            read(ATTRIBUTES_FILE, m.ROI_BOX_HEAD.NUM_ATTRS, "attribute"))  # fmt: skip
