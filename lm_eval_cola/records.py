"""Per-sample search records: one JSON Lines record a sample, appended as soon as its
search ends, so a run that dies loses no finished sample and can resume."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonlines

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

# Fields every complete record has; a record missing one is not complete.
REQUIRED_FIELDS = (
    "task", "doc_id", "doc_hash", "searcher", "settings", "seed", "full_correct", "best_chain",
    "best_length", "best_correct", "num_layers", "evaluations", "seconds", "responses",
)


class RecordsError(UserError):
    """A records file that cannot be read or written."""


def sample_key(record: dict[str, Any]) -> tuple[str, int]:
    return (str(record["task"]), int(record["doc_id"]))


def read_records(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records in ``path``.

    A torn last line (a run killed mid-write) is dropped with a warning, and cut from the
    file when ``repair`` is set so appends start on a clean line. A bad line anywhere
    else means the file is corrupt: that is an error, never silently skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    offset = 0
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        if line.strip():
            try:
                record = json.loads(line)
                missing = [f for f in REQUIRED_FIELDS if f not in record]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
            except ValueError as err:
                if not is_last:
                    raise RecordsError(
                        f"corrupt records file {str(path)!r}: line {number} is not a complete "
                        f"record ({err}); move the file away or fix that line"
                    ) from None
                logger.warning("dropping a torn last line %d in %s", number, path)
                if repair:
                    with open(path, "r+b") as handle:
                        handle.truncate(offset)
                break
            records.append(record)
        offset += len(line) + 1
    return records


def latest_per_sample(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record a sample, the last written: a sample searched again (its doc or its
    requests changed since an earlier run into the same file) supersedes the old one."""
    latest = {sample_key(r): r for r in records}
    return [latest[k] for k in sorted(latest)]


class RecordWriter:
    """Appends one record a line and flushes it to disk at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise RecordsError(
                f"cannot write records to {str(self.path)!r}: {err.strerror}; "
                "allowed: a writable folder (--output_path or records=)"
            ) from None
        self._writer = jsonlines.Writer(self._handle, compact=True, sort_keys=False)

    def write(self, record: dict[str, Any]) -> None:
        self._writer.write(record)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._writer.close()
        self._handle.close()


def iter_record_files(directory: str | os.PathLike) -> Iterator[Path]:
    yield from sorted(Path(directory).rglob("cola-records_*.jsonl"))
