"""Build the scene-text benchmark: real photos with words rendered onto them, plus truth.json.

The photos are scikit-image's sample data (inside its wheel) and OpenCV's sample images (Debian
`opencv-doc`, examples/data); the words are drawn with the DejaVu and Liberation fonts. Each
image belongs to one category of difficulty (sign, overlay, rotated, perspective, blur, jpeg,
low-contrast, tight crop, accented, glued word pairs). The output is committed, so running the
benchmark needs none of the above; this script documents (and can redo) how it was made:

    pip install scikit-image && apt-get install opencv-doc fonts-dejavu fonts-liberation
    python benchmarks/scene_text/make.py [--opencv-data DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).parent
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation")]
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSansMono-Bold.ttf", "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf", "LiberationSansNarrow-Bold.ttf",
    "LiberationMono-Bold.ttf", "LiberationSerif-Bold.ttf",
]  # fmt: skip
SKIMAGE = ["coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
           "brick.png", "grass.png", "gravel.png", "camera.png", "hubble_deep_field.jpg",
           "coins.png", "retina.jpg"]  # fmt: skip
OPENCV = ["building.jpg", "fruits.jpg", "baboon.jpg", "home.jpg",
          "aero1.jpg", "leuvenA.jpg", "starry_night.jpg", "butterfly.jpg", "orange.jpg",
          "apple.jpg", "squirrel_cls.jpg", "lena.jpg", "graf1.png", "pic2.png"]  # fmt: skip
WORDS = [
    "open",
    "closed",
    "exit",
    "entrance",
    "parking",
    "sale",
    "coffee",
    "bakery",
    "pharmacy",
    "hotel",
    "station",
    "street",
    "avenue",
    "market",
    "garden",
    "museum",
    "library",
    "school",
    "police",
    "taxi",
    "bus",
    "stop",
    "hospital",
    "bank",
    "books",
    "fresh",
    "bread",
    "pizza",
    "burger",
    "kitchen",
    "restaurant",
    "welcome",
    "office",
    "toilets",
    "lift",
    "stairs",
    "danger",
    "caution",
    "private",
    "keep",
    "out",
    "push",
    "pull",
    "north",
    "south",
    "east",
    "west",
    "city",
    "centre",
    "airport",
    "platform",
    "tickets",
    "information",
    "repairs",
    "bicycle",
    "flowers",
    "butcher",
    "grocery",
    "laundry",
    "cinema",
    "theatre",
    "gallery",
    "galleries",
    "music",
    "records",
    "vintage",
    "clothing",
    "shoes",
    "jewellery",
    "bridge",
    "river",
    "harbour",
    "tunnel",
    "square",
    "castle",
    "church",
    "tower",
    "park",
    "zoo",
    "beach",
    "hours",
    "daily",
    "special",
    "offer",
    "free",
    "delivery",
    "wine",
    "cheese",
    "tea",
    "juice",
    "fruit",
    "organic",
    "local",
    "craft",
    "beer",
    "dental",
    "clinic",
    "studio",
    "salon",
    "barber",
    "hardware",
    "paint",
    "tools",
    "garage",
    "motors",
    "service",
]
NUMBERS = ["24", "7", "10", "42", "2025", "99", "50", "365", "1900", "12", "8"]
ACCENTED = ["Café", "Crème", "Résumé", "Jalapeño", "Zürich", "Naïve", "Señor", "Brûlée",
            "Piñata", "Façade", "Fiancée", "Entrée", "Soufflé", "Déjà"]  # fmt: skip
GLUED = [("NO", "PARKING"), ("FRESH", "BREAD"), ("BUS", "STOP"), ("KEEP", "OUT"),
         ("FREE", "WIFI"), ("OPEN", "DAILY"), ("ICE", "CREAM"), ("BOOK", "SHOP"),
         ("CAR", "WASH"), ("NO", "ENTRY"), ("HOT", "DOGS"), ("GIFT", "SHOP")]  # fmt: skip
GLUED += [("BOOK", "SHOP"), ("COFFEE", "BAR"), ("PET", "SHOP"), ("POST", "OFFICE"),
          ("FISH", "MARKET"), ("TOWN", "HALL")]  # fmt: skip
CATEGORIES = {  # name: images
    "sign": 10, "multiline": 10, "small": 10, "overlay": 10, "rotated": 10, "perspective": 10,
    "blur": 10, "jpeg": 10, "low_contrast": 10, "tight_crop": 12, "accented": 10, "glued": 12,
}  # fmt: skip


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    for d in FONT_DIRS:
        if (d / name).exists():
            return ImageFont.truetype(str(d / name), size)
    raise FileNotFoundError(
        f"font {name} not found (apt-get install fonts-dejavu fonts-liberation)"
    )


def photos(opencv_data: Path) -> list[Image.Image]:
    import skimage.data

    data = Path(skimage.data.__file__).parent
    out = [Image.open(data / name).convert("RGB") for name in SKIMAGE]
    for name in OPENCV:
        if (opencv_data / name).exists():
            out.append(Image.open(opencv_data / name).convert("RGB"))
    return out


def fit(img: Image.Image, rng: random.Random) -> Image.Image:
    side = rng.randint(480, 720)
    s = side / max(img.size)
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)


def phrase(rng: random.Random) -> list[str]:
    n = rng.choice([1, 1, 2, 2, 2, 3])
    words = rng.sample(WORDS, n)
    if rng.random() < 0.2:
        words.append(rng.choice(NUMBERS))
    case = rng.choice(["upper", "upper", "title", "lower"])
    return [w.upper() if case == "upper" else w.title() if case == "title" else w for w in words]


def colors(rng: random.Random, contrast: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(text, background) colours whose luminance differs by about `contrast` (0-255)."""
    base = rng.randint(0, 255 - int(contrast)) if contrast < 255 else 0
    dark, light = base, base + int(contrast)
    tint = [rng.randint(-25, 25) for _ in range(3)]
    d = tuple(int(np.clip(dark + t, 0, 255)) for t in tint)
    li = tuple(int(np.clip(light + t, 0, 255)) for t in tint)
    return (d, li) if rng.random() < 0.5 else (li, d)


def text_layer(words: list[str], f: ImageFont.FreeTypeFont, fill, gap: float | None = None):
    """RGBA image of the words on one line; `gap` (in em) overrides the space width."""
    space = f.getlength(" ") if gap is None else gap * f.size
    widths = [f.getlength(w) for w in words]
    asc, desc = f.getmetrics()
    w = int(sum(widths) + space * (len(words) - 1)) + 4
    layer = Image.new("RGBA", (w, asc + desc + 4), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x = 2.0
    for word, width in zip(words, widths, strict=True):
        draw.text((x, 2), word, font=f, fill=fill)
        x += width + space
    return layer


def perspective(layer: Image.Image, rng: random.Random) -> Image.Image:
    w, h = layer.size
    pad = int(0.25 * h) + 4
    big = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
    big.paste(layer, (pad, pad))
    w2, h2 = big.size
    k = rng.uniform(0.1, 0.22)
    dst = [(0, 0), (w2, 0), (w2, h2), (0, h2)]
    # Shrink one side: a sign seen from off-axis.
    if rng.random() < 0.5:
        src = [(0, -k * h2), (w2, 0), (w2, h2), (0, h2 + k * h2)]
    else:
        src = [(0, 0), (w2, -k * h2), (w2, h2 + k * h2), (0, h2)]
    coeffs = _perspective_coeffs(dst, src)
    return big.transform(big.size, Image.PERSPECTIVE, coeffs, Image.BICUBIC)


def _perspective_coeffs(dst, src) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=float)
    b = np.array([c for p in src for c in p], dtype=float)
    return np.linalg.solve(a, b).tolist()


def place(photo: Image.Image, layer: Image.Image, rng: random.Random, plate=None) -> Image.Image:
    """Paste the text layer (on a plate of colour `plate` if given) somewhere inside the photo."""
    img = photo.convert("RGBA")
    if plate is not None:
        m = int(0.3 * layer.height)
        board = Image.new("RGBA", (layer.width + 2 * m, layer.height + 2 * m), (*plate, 255))
        board.alpha_composite(layer, (m, m))
        layer = board
    if layer.width > img.width - 8:  # shrink the text to fit
        s = (img.width - 8) / layer.width
        layer = layer.resize((int(layer.width * s), max(1, int(layer.height * s))), Image.LANCZOS)
    x = rng.randint(4, max(4, img.width - layer.width - 4))
    y = rng.randint(4, max(4, img.height - layer.height - 4))
    img.alpha_composite(layer, (x, y))
    return img.convert("RGB")


def shadowed(words, f, fill, rng):
    layer = text_layer(words, f, fill)
    shade = (0, 0, 0, 200) if sum(fill[:3]) > 380 else (255, 255, 255, 200)
    shadow = text_layer(words, f, shade).filter(ImageFilter.GaussianBlur(2))
    out = Image.new("RGBA", (layer.width + 3, layer.height + 3), (0, 0, 0, 0))
    out.alpha_composite(shadow, (3, 3))
    out.alpha_composite(layer, (0, 0))
    return out


def make_one(
    category: str, photo: Image.Image, rng: random.Random
) -> tuple[Image.Image, list[str]]:
    f = font(rng.choice(FONTS), rng.randint(22, 64))
    words = phrase(rng)
    text, plate = colors(rng, rng.uniform(150, 230))
    photo = fit(photo, rng)
    if category == "sign":
        return place(photo, text_layer(words, f, (*text, 255)), rng, plate), words
    if category == "multiline":
        lines = [phrase(rng) for _ in range(rng.randint(2, 3))]
        layers = [text_layer(ln, f, (*text, 255)) for ln in lines]
        m = int(0.3 * f.size)
        board = Image.new(
            "RGBA",
            (max(la.width for la in layers) + 2 * m, sum(la.height for la in layers) + 2 * m),
            (*plate, 255),
        )
        y = m
        for la in layers:
            board.alpha_composite(la, (m, y))
            y += la.height
        return place(photo, board, rng), [w for ln in lines for w in ln]
    if category == "small":  # text 11-16 px high on a sign in a large photo
        return place(photo, text_layer(words, font(rng.choice(FONTS), rng.randint(11, 16)),
                                       (*text, 255)), rng, plate), words  # fmt: skip
    if category == "overlay":
        fill = rng.choice([(255, 255, 255), (255, 230, 40), (20, 20, 20)])
        return place(photo, shadowed(words, f, (*fill, 255), rng), rng), words
    if category == "rotated":
        angle = rng.choice([-1, 1]) * rng.uniform(6, 20)
        layer = text_layer(words, f, (*text, 255))
        board = Image.new("RGBA", (layer.width + 24, layer.height + 24), (*plate, 255))
        board.alpha_composite(layer, (12, 12))
        return place(photo, board.rotate(angle, Image.BICUBIC, expand=True), rng), words
    if category == "perspective":
        layer = text_layer(words, f, (*text, 255))
        board = Image.new("RGBA", (layer.width + 24, layer.height + 24), (*plate, 255))
        board.alpha_composite(layer, (12, 12))
        return place(photo, perspective(board, rng), rng), words
    if category == "blur":
        img = place(photo, text_layer(words, f, (*text, 255)), rng, plate)
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 3.5))), words
    if category == "jpeg":
        import io

        img = place(photo, text_layer(words, f, (*text, 255)), rng, plate)
        small = img.resize((img.width // 2, img.height // 2), Image.BILINEAR)
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=rng.randint(6, 12))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), words
    if category == "low_contrast":
        text, plate = colors(rng, rng.uniform(20, 40))
        return place(photo, text_layer(words, f, (*text, 255)), rng, plate), words
    if category == "tight_crop":
        # A crop of a sign holding one word, 1-3 px of margin: what a detector upstream hands on.
        word = [rng.choice(words)]
        small = font(rng.choice(FONTS), rng.randint(14, 34))
        layer = text_layer(word, small, (*text, 255))
        bbox = layer.getbbox() or (0, 0, layer.width, layer.height)
        m = rng.randint(1, 3)
        board = Image.new("RGB", (bbox[2] - bbox[0] + 2 * m, bbox[3] - bbox[1] + 2 * m), plate)
        board.paste(layer.crop(bbox), (m, m), layer.crop(bbox))
        return board, word
    if category == "accented":
        words = rng.sample(ACCENTED, 1) + rng.sample([w.title() for w in WORDS], 1)
        rng.shuffle(words)
        return place(photo, text_layer(words, f, (*text, 255)), rng, plate), words
    if category == "glued":
        pair = list(rng.choice(GLUED))
        if rng.random() < 0.4:
            pair = [w.title() for w in pair]
        bold = font(rng.choice([n for n in FONTS if "Bold" in n]), rng.randint(36, 64))
        layer = text_layer(pair, bold, (*text, 255), gap=rng.uniform(0.05, 0.12))
        return place(photo, layer, rng, plate), pair
    raise ValueError(category)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opencv-data", type=Path,
                    default=Path("/usr/share/doc/opencv-doc/examples/data"))  # fmt: skip
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pics = photos(args.opencv_data)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    truth = []
    i = 0
    for category, n in CATEGORIES.items():
        for _ in range(n):
            img, words = make_one(category, rng.choice(pics), rng)
            name = f"{i:03d}_{category}.jpg"
            img.save(args.out / "images" / name, quality=85)
            truth.append({"file": name, "category": category, "words": words})
            i += 1
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(truth)} images, {sum(len(t['words']) for t in truth)} words -> {args.out}")


if __name__ == "__main__":
    main()
