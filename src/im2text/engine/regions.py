"""Box operations for region detectors, in plain torch: box deltas, NMS and RoI max pooling.

torchvision's compiled ops are used when they import (`nms`, `roi_pool`); the plain versions
here follow their semantics exactly (NMS suppresses IoU strictly above the threshold, areas
without +1; RoIPool rounds box corners to the feature grid half away from zero, gives each of
its bins floor/ceil edges, and pools an empty bin to 0), so both give the same outputs.
"""

from __future__ import annotations

import math

import torch


def _torchvision_ops():  # type: ignore[no-untyped-def]
    try:
        from torchvision import ops

        ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # the compiled kernel loads
        return ops
    except Exception:  # not installed, or built for another torch (CUDA wheels here)
        return None


TORCHVISION = _torchvision_ops()


def apply_deltas(
    deltas: torch.Tensor,
    boxes: torch.Tensor,
    weights: tuple[float, float, float, float],
    scale_clamp: float = math.log(1000.0 / 16),
) -> torch.Tensor:
    """(N, 4k) deltas (dx, dy, dw, dh per box) applied to (N, 4) boxes -> (N, 4k) boxes: the
    centre moves by dx * width, the size scales by exp(dw) (clamped: at most 16 px -> 1000 px)."""
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=scale_clamp)
    dh = (deltas[:, 3::4] / wh).clamp(max=scale_clamp)
    cx = dx * widths[:, None] + ctr_x[:, None]
    cy = dy * heights[:, None] + ctr_y[:, None]
    w, h = torch.exp(dw) * widths[:, None], torch.exp(dh) * heights[:, None]
    out = torch.empty_like(deltas)
    out[:, 0::4], out[:, 1::4] = cx - 0.5 * w, cy - 0.5 * h
    out[:, 2::4], out[:, 3::4] = cx + 0.5 * w, cy + 0.5 * h
    return out


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """(N, 4) boxes clamped into the image, in place; returns them."""
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes


def box_iou(one: torch.Tensor, many: torch.Tensor) -> torch.Tensor:
    """IoU of a (4,) box with (N, 4) boxes (areas without +1, as torchvision)."""
    lt = torch.maximum(one[:2], many[:, :2])
    rb = torch.minimum(one[2:], many[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (one[2] - one[0]) * (one[3] - one[1])
    areas = (many[:, 2] - many[:, 0]) * (many[:, 3] - many[:, 1])
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the boxes kept, best score first: a box is dropped when its IoU with a kept,
    better-scoring box is above `threshold`."""
    if TORCHVISION is not None:
        return TORCHVISION.nms(boxes.float(), scores.float(), threshold)
    return nms_plain(boxes, scores, threshold)


def nms_plain(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    order = scores.argsort(descending=True, stable=True)
    boxes = boxes[order].float()
    alive = torch.ones(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = alive[i + 1 :]
        rest &= box_iou(boxes[i], boxes[i + 1 :]) <= threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float
) -> torch.Tensor:
    """NMS within each group only (boxes of different groups never suppress each other)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    offsets = groups.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, threshold)


def roi_pool(
    features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    """Max-pool each RoI of (K, 5) `rois` (batch index, x0, y0, x1, y1 in image pixels) from
    (N, C, H, W) `features` into (K, C, output_size, output_size)."""
    if TORCHVISION is not None:
        return TORCHVISION.roi_pool(features, rois, output_size, spatial_scale)
    return roi_pool_plain(features, rois, output_size, spatial_scale)


def roi_pool_plain(
    features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    _, channels, height, width = features.shape
    out = features.new_zeros(len(rois), channels, output_size, output_size)
    # Corners on the feature grid, rounded half away from zero (C's round).
    corners = rois[:, 1:] * spatial_scale
    corners = torch.sign(corners) * torch.floor(corners.abs() + 0.5)
    bins = torch.arange(output_size, dtype=torch.float64)
    for k in range(len(rois)):
        x0, y0, x1, y1 = (int(v) for v in corners[k].tolist())
        size_w = max(x1 - x0 + 1, 1) / output_size
        size_h = max(y1 - y0 + 1, 1) / output_size
        hs = (torch.floor(bins * size_h) + y0).clamp(0, height).long()
        he = (torch.ceil((bins + 1) * size_h) + y0).clamp(0, height).long()
        ws = (torch.floor(bins * size_w) + x0).clamp(0, width).long()
        we = (torch.ceil((bins + 1) * size_w) + x0).clamp(0, width).long()
        top, bottom = int(hs.min()), int(he.max())
        left, right = int(ws.min()), int(we.max())
        if bottom <= top or right <= left:
            continue  # the whole RoI lies outside the map: zeros
        crop = features[int(rois[k, 0]), :, top:bottom, left:right]  # (C, h, w)
        rows = torch.arange(top, bottom)
        cols = torch.arange(left, right)
        in_row = (rows[None, :] >= hs[:, None]) & (rows[None, :] < he[:, None])  # (P, h)
        in_col = (cols[None, :] >= ws[:, None]) & (cols[None, :] < we[:, None])  # (P, w)
        lowest = torch.finfo(crop.dtype).min
        # Max over each bin's columns, then over its rows; empty bins stay 0.
        by_col = crop[:, :, None, :].masked_fill(~in_col[None, None], lowest).amax(-1)  # C,h,P
        pooled = by_col[:, None].masked_fill(~in_row[None, :, :, None], lowest).amax(2)  # C,P,P
        empty = ~(in_row.any(1)[:, None] & in_col.any(1)[None, :])
        out[k] = pooled.masked_fill(empty[None], 0.0)
    return out
