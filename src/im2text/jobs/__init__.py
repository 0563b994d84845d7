"""Resumable bulk runs: record files that survive kills, sidecar captions."""

from im2text.jobs.records import RecordWriter, write_sidecar

__all__ = ["RecordWriter", "write_sidecar"]
