"""Synthetic data for learning tests, demos and benchmarks: coloured shapes with exact captions,
and easy-vqa questions as JSONL, all generated offline and reproducible from a seed."""

from __future__ import annotations

import json
from pathlib import Path

COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
SIZES = ("small", "large")


def shape_corpus() -> list[str]:
    """Sentences covering the synthetic shapes captions and some general captioning words."""
    lines = [f"a {s} {c} {sh}" for s in SIZES for c in COLORS for sh in SHAPES]
    lines += [f"a {c} {sh} on a gray background" for c in COLORS for sh in SHAPES]
    lines += [
        "a photo of a cat sitting on a couch",
        "a picture of a dog running in the park",
        "two people standing next to a train",
        "what is in the image ? the answer is yes no one two three",
        "question : answer : describe the image in detail . a short description",
        "an astronaut in space , a coffee cup on a table , a man riding a horse",
        # easy-vqa's questions and answers, so every answer is one token (a word the tiny
        # vocabularies lacked was spelt letter by letter and cut off by a short answer cap).
        "what color is the shape ? what shape is in the image ? does the image contain a "
        "rectangle ? is there not a brown , teal or gray circle present ? yes no",
    ]
    return lines


CORPUS = shape_corpus()


_RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 170),
    "orange": (245, 140, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}


def shape_image(color: str, shape: str, size: str, *, image_size: int = 64, rng=None):
    """One shape of a colour and size at a random place on a gray background (PIL RGB image)."""
    import random

    from PIL import Image, ImageDraw

    rng = rng or random.Random()
    img = Image.new("RGB", (image_size, image_size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    r = image_size * (0.34 if size == "large" else 0.2) * rng.uniform(0.9, 1.1)
    cx = rng.uniform(r + 1, image_size - r - 1)
    cy = rng.uniform(r + 1, image_size - r - 1)
    fill = _RGB[color]
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "star":
        import math

        pts = [
            (cx + rad * math.sin(k * math.pi / 5), cy - rad * math.cos(k * math.pi / 5))
            for k, rad in zip(range(10), [r, r * 0.4] * 5, strict=True)
        ]
        draw.polygon(pts, fill=fill)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return img


def shape_dataset(n: int, *, seed: int = 0, image_size: int = 64):
    """`n` (image, caption) pairs: "a {size} {color} {shape}", uniformly drawn."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c, s, z = rng.choice(COLORS), rng.choice(SHAPES), rng.choice(SIZES)
        out.append((shape_image(c, s, z, image_size=image_size, rng=rng), f"a {z} {c} {s}"))
    return out


def shape_folder(root: str | Path, n: int, *, seed: int, image_size: int = 64) -> Path:
    """Write `n` shape images + `metadata.jsonl` (the image-folder training format) to `root`."""
    root = Path(root)
    root.mkdir(parents=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i, (img, cap) in enumerate(shape_dataset(n, seed=seed, image_size=image_size)):
            img.save(root / f"{i:05d}.png")
            f.write(json.dumps({"file_name": f"{i:05d}.png", "text": cap}) + "\n")
    return root


def easy_vqa_jsonl(path: str | Path, split: str, start: int, stop: int) -> Path:
    """Questions `start:stop` of easy-vqa's `split` ("train" / "test") as VQA JSONL
    (`file_name`, `question`, `answers`, `question_id`); needs the `easy-vqa` package."""
    import easy_vqa

    questions, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    path = Path(path)
    with open(path, "w") as f:
        for i in range(start, min(stop, len(questions))):
            row = {
                "file_name": paths[image_ids[i]],
                "question": questions[i],
                "answers": [answers[i]],
                "question_id": f"{split}-{i}",
            }
            f.write(json.dumps(row) + "\n")
    return path
