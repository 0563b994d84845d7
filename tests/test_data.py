"""Dataset readers: each format from tiny fixtures, clear errors with file and line, the split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import im2text.data as data
from im2text.data import (
    CaptionExample,
    DatasetError,
    VqaExample,
    load_dataset,
    read_coco_captions,
    read_csv,
    read_karpathy,
    read_vqa,
    split,
)


def png(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)
    return path


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three images: a.png, b.png, sub/c.png."""
    png(tmp_path / "a.png")
    png(tmp_path / "b.png", (0, 0, 255))
    png(tmp_path / "sub" / "c.png", (0, 255, 0))
    return tmp_path


def test_public_api() -> None:
    assert set(data.__all__) == {
        "FORMATS", "CaptionExample", "DatasetError", "VqaExample", "load_dataset",
        "read_coco_captions", "read_csv", "read_hf_dataset", "read_image_folder", "read_jsonl",
        "read_karpathy", "read_sidecar_captions", "read_vqa", "split",
    }  # fmt: skip


# --- formats ------------------------------------------------------------------------------------


def test_metadata_jsonl(folder: Path) -> None:
    write_lines(
        folder / "metadata.jsonl",
        [
            {"file_name": "a.png", "text": "a red square"},
            "",  # blank lines are fine
            {"file_name": "b.png", "caption": "a blue square"},
            {"file_name": "sub/c.png", "captions": ["green", "a green square"], "id": "c1"},
        ],
    )
    examples = load_dataset(folder)
    assert examples == [
        CaptionExample(folder / "a.png", ["a red square"], "a.png"),
        CaptionExample(folder / "b.png", ["a blue square"], "b.png"),
        CaptionExample(folder / "sub/c.png", ["green", "a green square"], "c1"),
    ]
    assert load_dataset(folder / "metadata.jsonl") == examples  # the file itself works too


def test_metadata_csv_and_any_csv(folder: Path) -> None:
    (folder / "metadata.csv").write_text(
        'file_name,text\na.png,"a red square, small"\nb.png,a blue square\n', encoding="utf-8"
    )
    examples = load_dataset(folder)
    assert [ex.captions for ex in examples] == [["a red square, small"], ["a blue square"]]

    other = folder / "lists" / "train.csv"
    other.parent.mkdir()
    other.write_text(
        'file_name,captions\nsub/c.png,"[""green"", ""a green square""]"\n', encoding="utf-8"
    )
    (ex,) = read_csv(other, image_root=folder)
    assert ex.image == folder / "sub/c.png" and ex.captions == ["green", "a green square"]


def test_sidecar_txt(folder: Path) -> None:
    (folder / "a.txt").write_text("a red square\n\nsecond caption\n", encoding="utf-8")
    (folder / "b.txt").write_text("a blue square", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("a green square\n", encoding="utf-8")
    examples = load_dataset(folder)
    assert [(ex.id, ex.captions) for ex in examples] == [
        ("a.png", ["a red square", "second caption"]),
        ("b.png", ["a blue square"]),
        ("sub/c.png", ["a green square"]),
    ]


def test_coco_captions(folder: Path) -> None:
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png"},
            {"id": 2, "file_name": "b.png"},
            {"id": 3, "file_name": "sub/c.png"},  # no captions: left out
        ],
        "annotations": [
            {"id": 10, "image_id": 2, "caption": "a blue square"},
            {"id": 11, "image_id": 1, "caption": "a red square "},
            {"id": 12, "image_id": 2, "caption": "blue"},
        ],
    }
    path = folder / "annotations" / "captions_val.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    examples = load_dataset(path, image_root=folder)
    assert examples == [
        CaptionExample(folder / "a.png", ["a red square"], "1"),
        CaptionExample(folder / "b.png", ["a blue square", "blue"], "2"),
    ]


def test_karpathy_splits(folder: Path) -> None:
    def img(name: str, split_name: str, cocoid: int) -> dict:
        sentences = [{"raw": f"{name} one", "tokens": []}, {"raw": f"{name} two", "tokens": []}]
        return {"filepath": ".", "filename": name, "split": split_name, "cocoid": cocoid,
                "sentences": sentences}  # fmt: skip

    doc = {
        "images": [img("a.png", "train", 1), img("b.png", "restval", 2), img("c.png", "test", 3)],
        "dataset": "coco",
    }
    (folder / "c.png").write_bytes((folder / "sub" / "c.png").read_bytes())
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps(doc))
    test = load_dataset(path)  # default split: test
    assert [(ex.id, ex.captions) for ex in test] == [("3", ["c.png one", "c.png two"])]
    assert [ex.id for ex in read_karpathy(path, split=("train", "restval"))] == ["1", "2"]
    assert len(read_karpathy(path, split=None)) == 3


def test_vqa_questions_and_annotations(tmp_path: Path) -> None:
    png(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    png(tmp_path / "val2014" / "COCO_val2014_000000000007.jpg")
    questions = {
        "data_subtype": "val2014",
        "questions": [
            {"question_id": 420, "image_id": 42, "question": "What color is it?"},
            {"question_id": 421, "image_id": 42, "question": "How many squares?"},
            {"question_id": 70, "image_id": 7, "question": "Is it red?"},
        ],
    }
    answers = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["red"] * 9 + ["pink"])]
    annotations = {
        "annotations": [
            {"question_id": 420, "image_id": 42, "answers": answers, "answer_type": "other",
             "question_type": "what color is the"},
            {"question_id": 421, "image_id": 42, "answers": [{"answer": "1"}] * 10,
             "answer_type": "number", "question_type": "how many"},
            {"question_id": 70, "image_id": 7, "answers": [{"answer": "yes"}] * 10,
             "answer_type": "yes/no", "question_type": "is it"},
        ]
    }  # fmt: skip
    qpath = tmp_path / "questions.json"
    apath = tmp_path / "annotations.json"
    qpath.write_text(json.dumps(questions))
    apath.write_text(json.dumps(annotations))
    examples = load_dataset(qpath, task="vqa", annotations=apath, image_root=tmp_path / "val2014")
    assert examples[0] == VqaExample(
        tmp_path / "val2014" / "COCO_val2014_000000000042.jpg",
        "What color is it?",
        ["red"] * 9 + ["pink"],
        "420",
        "other",
        "what color is the",
    )
    assert [ex.id for ex in examples] == ["420", "421", "70"]
    # Unannotated (test-dev style), and a custom file name pattern.
    png(tmp_path / "imgs" / "7.png")
    png(tmp_path / "imgs" / "42.png")
    bare = read_vqa(qpath, image_root=tmp_path / "imgs", image_pattern="{image_id}.png")
    assert bare[2].image == tmp_path / "imgs" / "7.png" and bare[2].answers == []


def test_vqa_jsonl(folder: Path) -> None:
    write_lines(
        folder / "metadata.jsonl",
        [
            {"file_name": "a.png", "question": "What color?", "answers": ["red", "red"],
             "question_id": "q1", "answer_type": "other"},
            {"file_name": "a.png", "question": "Is it square?", "answer": "yes"},
        ],
    )  # fmt: skip
    examples = load_dataset(folder, task="vqa")
    assert [(ex.question_id, ex.answers) for ex in examples] == [
        ("q1", ["red", "red"]),
        ("2", ["yes"]),  # no question_id: the line number
    ]


def test_hf_save_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (8, 6), c) for c in ("red", "blue")]
    ds = datasets.Dataset.from_dict(
        {"image": images, "text": ["a red square", "a blue square"]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "caps"))
    examples = load_dataset(tmp_path / "caps")
    assert [(ex.id, ex.captions) for ex in examples] == [
        ("0", ["a red square"]),
        ("1", ["a blue square"]),
    ]
    assert isinstance(examples[0].image, Image.Image) and examples[0].image.size == (8, 6)

    vqa = datasets.DatasetDict(
        {
            "validation": datasets.Dataset.from_dict(
                {"image": images, "question": ["Color?", "Color?"], "question_id": [5, 6],
                 "answers": [[{"answer": "red"}], [{"answer": "blue"}]]},
                features=datasets.Features({
                    "image": datasets.Image(), "question": datasets.Value("string"),
                    "question_id": datasets.Value("int64"),
                    "answers": [{"answer": datasets.Value("string")}],
                }),
            )
        }
    )  # fmt: skip
    vqa.save_to_disk(str(tmp_path / "vqa"))
    out = load_dataset(tmp_path / "vqa", task="vqa")
    assert [(ex.question_id, ex.answers) for ex in out] == [("5", ["red"]), ("6", ["blue"])]


def test_hf_missing_dependency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_datasets(name: str, *args: object, **kwargs: object) -> object:
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match=r"im2text\[data\]"):
        data.read_hf_dataset(tmp_path)


# --- errors name the file and line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"file_name": "a.png", "text": "ok"}, {"file_name": "nope.png", "text": "x"}],
         r"metadata\.jsonl:2: image not found: .*nope\.png"),
        ([{"file_name": "a.png", "text": "ok"}, {"file_name": "b.png", "text": "  "}],
         r"metadata\.jsonl:2: empty caption"),
        ([{"file_name": "a.png", "captions": ["ok", ""]}], r"metadata\.jsonl:1: empty caption"),
        ([{"file_name": "a.png", "text": "ok"}, '{"file_name": "b.png", "text": }'],
         r"metadata\.jsonl:2: invalid JSON"),
        ([["a.png", "a caption"]], r"metadata\.jsonl:1: expected a JSON object, got list"),
        ([{"text": "no file"}], r"metadata\.jsonl:1: missing 'file_name'"),
        ([{"file_name": "a.png"}], r"metadata\.jsonl:1: no caption field"),
        ([{"file_name": "a.png", "captions": [1, 2]}], r"metadata\.jsonl:1: captions must be"),
        ([{"file_name": "a.png", "text": "x"}, {"file_name": "b.png", "text": "y"},
          {"file_name": "a.png", "text": "z"}],
         r"metadata\.jsonl:3: duplicate id 'a\.png' \(first at line 1\)"),
    ],
)  # fmt: skip
def test_jsonl_errors(folder: Path, rows: list[object], message: str) -> None:
    write_lines(folder / "metadata.jsonl", rows)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(folder)
    assert info.value.source.endswith("metadata.jsonl")


def test_csv_errors(folder: Path) -> None:
    path = folder / "metadata.csv"
    path.write_text("file_name,text\na.png,ok\nb.png,x,extra\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"metadata\.csv:3: bad row: expected 2 columns, got 3"):
        load_dataset(folder)
    path.write_text("file_name,text\na.png,ok\nb.png,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"metadata\.csv:3: empty caption"):
        load_dataset(folder)
    path.write_text("image,text\na.png,ok\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"metadata\.csv:1: header row must name a 'file_name'"):
        load_dataset(folder)


def test_empty_datasets_are_errors(folder: Path, tmp_path: Path) -> None:
    (folder / "metadata.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"no examples in .*metadata\.jsonl"):
        load_dataset(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"no examples in .*empty: no images"):
        load_dataset(empty)
    only_images = tmp_path / "only"
    png(only_images / "x.png")
    with pytest.raises(DatasetError, match=r"1 image\(s\) but no metadata"):
        load_dataset(only_images)


def test_sidecar_errors(folder: Path) -> None:
    (folder / "a.txt").write_text("a red square", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"b\.txt: missing caption file for b\.png"):
        load_dataset(folder)
    (folder / "b.txt").write_text("\n  \n", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("green", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"b\.txt:1: empty caption"):
        load_dataset(folder)


def test_coco_errors(folder: Path) -> None:
    path = folder / "captions.json"

    def check(doc: object, message: str) -> None:
        path.write_text(json.dumps(doc, indent=1))
        with pytest.raises(DatasetError, match=message):
            read_coco_captions(path)

    images = [{"id": 1, "file_name": "a.png"}]
    check({"images": images, "annotations": [{"image_id": 1, "caption": ""}]},
          r"captions\.json: annotations\[0\]: empty caption")  # fmt: skip
    check({"images": images, "annotations": [{"image_id": 9, "caption": "x"}]},
          r"annotations\[0\]: image_id 9 is not in 'images'")  # fmt: skip
    check({"images": images * 2, "annotations": []}, r"images\[1\]: duplicate image id '1'")
    check({"images": [{"id": 1, "file_name": "gone.png"}],
           "annotations": [{"image_id": 1, "caption": "x"}]},
          r"images\[0\]: image not found")  # fmt: skip
    check({"images": images, "annotations": []}, r"no examples in .*captions\.json")
    check(["not", "an", "object"], r"expected a JSON object with 'images'")
    path.write_text('{\n "images": [],\n "annotations": [,]\n}')
    with pytest.raises(DatasetError, match=r"captions\.json:3: invalid JSON"):
        read_coco_captions(path)


def test_karpathy_and_vqa_errors(folder: Path) -> None:
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps({"images": [{"filename": "a.png", "split": "val",
                                            "sentences": [{"raw": "x"}]}]}))  # fmt: skip
    with pytest.raises(
        DatasetError, match=r"no examples in .*split 'tset' \(splits present: val\)"
    ):
        read_karpathy(path, split="tset")

    qpath = folder / "q.json"
    apath = folder / "a.json"
    qpath.write_text(
        json.dumps({"questions": [{"question_id": 1, "image_id": 1, "question": "Q?"}]})
    )
    apath.write_text(json.dumps({"annotations": [{"question_id": 2, "answers": []}]}))
    with pytest.raises(DatasetError, match=r"a\.json: no annotation for question_id 1"):
        read_vqa(qpath, apath, image_root=folder, image_pattern="a.png")
    with pytest.raises(DatasetError, match="pass the questions file"):
        load_dataset(apath, task="vqa")
    with pytest.raises(DatasetError, match="use task='vqa'"):
        load_dataset(qpath)


# --- split ---------------------------------------------------------------------------------------


def test_split_is_seeded_and_disjoint_by_image(tmp_path: Path) -> None:
    examples = []
    for i in range(20):
        image = png(tmp_path / f"{i}.png")
        for j in range(3):  # three questions per image
            examples.append(VqaExample(image, f"q{j}?", ["a"], f"{i}-{j}"))
    train, val = split(examples, val_fraction=0.25, seed=0)
    again = split(examples, val_fraction=0.25, seed=0)
    assert (train, val) == again
    assert {ex.image for ex in train}.isdisjoint({ex.image for ex in val})
    assert len({ex.image for ex in val}) == 5  # ceil(0.25 * 20) images
    assert len(train) + len(val) == len(examples)
    assert [ex for ex in examples if ex in val] == val  # input order kept
    assert split(examples, val_fraction=0.25, seed=1)[1] != val


def test_split_in_memory_images_and_errors() -> None:
    images = [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(10)]
    examples = [CaptionExample(img, ["x"], str(i)) for i, img in enumerate(images)]
    train, val = split(examples, val_fraction=0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert split(examples, val_fraction=0.2, seed=3) == (train, val)
    with pytest.raises(ValueError, match="val_fraction"):
        split(examples, val_fraction=1.0)
    with pytest.raises(ValueError, match="cannot split 1 image"):
        split(examples[:1])
