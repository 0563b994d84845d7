"""The null captioner (benchmarks/bulk_overhead.py): the bulk path without a model's time."""

from __future__ import annotations

from pathlib import Path

from conftest import random_images

from im2text.images import ImageSource
from im2text.jobs.records import RecordWriter
from im2text.tasks import TASKS
from im2text.testing.null import null_model


def test_null_model_runs_the_bulk_path_with_per_item_errors(tmp_path: Path) -> None:
    files = []
    for i, im in enumerate(random_images(5, size=(64, 48))):
        files.append(tmp_path / f"{i}.jpg")
        im.save(files[-1])
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    files.append(tmp_path / "bad.jpg")
    model = null_model(32, batch_size=4)
    assert model.can("caption")
    sources = [ImageSource(f"k{i}", files[i % len(files)]) for i in range(60)]
    out = tmp_path / "out.jsonl"
    with RecordWriter(out, fields=TASKS["caption"].fields) as writer:
        caps = list(model.stream("caption", sources))
        for cap in caps:
            writer.write(cap.to_record(model.name))
    assert [c.source for c in caps] == [s.key for s in sources]  # one result an input, in order
    assert sum(not c.ok for c in caps) == 10  # every 6th is the bad file
    assert len(out.read_text().splitlines()) == 60
