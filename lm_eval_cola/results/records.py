"""The contract between a run and its reports: one ``Record`` a searched sample.

A run appends one JSON Lines record a sample as soon as its search ends, so a run that
dies loses no finished sample and can resume. Everything a report needs (the findings,
whether the row is an oracle, the model's display name) is written here by the run:
reports read records and results files, never the reader's installed packages.

This module imports neither torch, transformers nor lm-eval.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

# 2: `schema` and `oracle` fields added; records without `schema` are version 1 and are
# read with `oracle = searcher != "none"` (what version 1 runs meant).
# 3: `nonfinite`, `evaluated_layers`, `chains` and `decoy` added; older records read with
# `nonfinite` and `evaluated_layers` None (not counted: unknown, not zero), no chains and
# no decoy; `pareto` was added within 3 (read as empty where absent).
SCHEMA_VERSION = 3


class RecordsError(UserError):
    """A records file that cannot be read or written."""


@dataclass
class Record:
    """One searched sample. ``responses`` are the raw lm-eval answers of the best chain, in
    the order of ``requests`` (the sample's distinct requests' arguments)."""

    task: str
    doc_id: int
    doc_hash: str
    model: str  # the model's display name (the embedded default model's name, or pretrained)
    searcher: str
    oracle: bool  # the gold answer chose the chain: accuracy is an upper bound
    settings: dict[str, Any]
    seed: int  # this sample's own seed
    num_layers: int
    full_correct: bool
    best_chain: str
    best_length: int
    best_correct: bool
    best_score: float
    evaluations: int  # distinct chains evaluated, the full chain included
    seconds: float  # this sample's own share of the run's search time
    responses: list[Any]
    request_type: str = ""  # "loglikelihood" or "generate_until"
    requests: list[Any] = field(default_factory=list)
    oracle_metric: str | None = None
    oracle_filter: str | None = None
    stopped_early: bool = False
    correct_chains: list[str] = field(default_factory=list)  # others, best-ranked first
    load_args: dict[str, Any] = field(default_factory=dict)  # how verify reloads the model
    version: str = ""  # lm-eval-cola's version
    # evaluated chains whose log-likelihoods were not all finite (judged wrong)
    nonfinite: int | None = None
    # whether the full chain's log-likelihoods were all finite (its verdict is lm-eval's
    # own either way); None: not recorded (older records)
    full_finite: bool | None = None
    evaluated_layers: int | None = None  # sum of the evaluated chains' lengths: the cost
    # record_chains=all: every evaluated chain, in evaluation order (see ``ChainEntry``)
    chains: list[dict[str, Any]] = field(default_factory=list)
    # control=decoy: the decoy search (see ``lm_eval_cola.search.decoy``): target, reached,
    # best_chain, best_length, evaluations, shortened, ...; a sample with no decoy has
    # {"target": None, "none": <reason>, "reached": False, "evaluations": 0}; None without
    # a control (and, before the reason was recorded, where the sample had no decoy)
    decoy: dict[str, Any] | None = None
    # the correct chains on the (shorter, higher score) Pareto front, shortest first; its
    # first is ``best_chain`` when the best is correct. Empty: none correct, or schema < 3
    pareto: list[str] = field(default_factory=list)
    # what the searcher noted of how the search went (``SearchResult.notes``), e.g. mcts
    # mode deep: {"root_scan": 56, "root_scan_exceeds_budget": true}. Empty: nothing noted,
    # or a record written before it existed (added within schema 3)
    search_notes: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, int]:
        return (self.task, self.doc_id)

    @property
    def depth_ratio(self) -> float:
        return self.best_length / self.num_layers

    @property
    def shortened(self) -> bool:
        """The best chain is right and shorter than the full chain: on a sample the full
        chain gets right, the "shorter when right" finding."""
        return bool(self.best_correct and self.best_length < self.num_layers)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON object; ValueError naming what is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        schema = int(data.get("schema", 1))
        if schema > SCHEMA_VERSION:
            raise ValueError(f"schema {schema} is newer than this lm-eval-cola reads "
                             f"({SCHEMA_VERSION}); upgrade lm-eval-cola")
        values = dict(data)
        if schema == 1:
            values.setdefault("oracle", values.get("searcher") != "none")
            values.setdefault("model", "")
            values.setdefault("best_score", float("nan"))
            values["schema"] = SCHEMA_VERSION
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        record = cls(**{k: v for k, v in values.items() if k in known})
        record.doc_id = int(record.doc_id)
        return record


@dataclass
class ChainEntry:
    """One evaluated chain of a sample (``Record.chains``, ``record_chains=all``): enough
    to recompute any finding without running the model again."""

    chain: str  # canonical chain text
    length: int
    answer: Any  # multiple choice: the metric's choice index; generation: filtered text
    correct: bool  # right by the oracle metric (the decoy's entries: answers the decoy)
    score: float  # the graded score the searcher was told
    finite: bool  # every log-likelihood finite

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_records(path: str | os.PathLike, repair: bool = False) -> list[Record]:
    """All complete records in ``path`` (none where it does not exist).

    A torn last line (a run killed mid-write: the start of a JSON line and no newline
    after it, see ``_torn``) is dropped with a warning, and cut from the file when
    ``repair`` is set so appends start on a clean line. Any other line that is not a
    record -- anywhere, the last included: a complete JSON line that is not a record,
    binary junk, text -- means the file is not (only) ours: a RecordsError naming the line,
    never skipped, and the file is left as it is (a resume must not drop or append to
    finished samples it cannot read).
    """
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise RecordsError(f"records file {str(path)!r} is a folder; allowed: a records file "
                           "(cola-records_*.jsonl)")
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[Record] = []
    offset = 0
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                value = json.loads(line.decode("utf-8"))  # ours is UTF-8: never guess
            except ValueError as err:  # not JSON, or bytes that are not UTF-8
                if number == len(lines) and _torn(line):  # the last line, no newline after
                    logger.warning("dropping a torn last line %d in %s", number, path)
                    if repair:
                        with open(path, "r+b") as handle:
                            handle.truncate(offset)
                    return records
                why = (f"not JSON: {err.msg}" if isinstance(err, json.JSONDecodeError)
                       else "not UTF-8 text")
                raise _not_a_record(path, number, why) from None
            try:
                records.append(Record.from_json(value))
            except (ValueError, TypeError) as err:  # complete JSON, but not a record
                raise _not_a_record(path, number, str(err)) from None
        offset += len(line) + 1
    if repair and records and not data.endswith(b"\n") and lines[-1].strip():
        # a write cut just before its newline: end the line, or the next append joins it
        with open(path, "ab") as handle:
            handle.write(b"\n")
    return records


def _torn(line: bytes) -> bool:
    """Whether ``line`` can be what a write cut short leaves of one of our records: the
    start of a JSON object, UTF-8 (but for a character cut in two at its end), and none of
    the control bytes ``RecordWriter``'s JSON never holds. Junk and text are not."""
    if not line.startswith(b'{"') or any(byte < 0x20 for byte in line):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(line, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _not_a_record(path: Path, number: int, why: str) -> RecordsError:
    return RecordsError(f"corrupt records file {str(path)!r}: line {number} is not a record "
                        f"({why}); move the file away or fix that line")


def latest_per_sample(records: list[Record]) -> list[Record]:
    """One record a sample, the last written: a sample searched again (its doc or its
    requests changed since an earlier run into the same file) supersedes the old one."""
    latest = {r.key: r for r in records}
    return [latest[k] for k in sorted(latest)]


class RecordWriter:
    """Appends one record a line and flushes it to disk at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = open_for_append(self.path)

    def write(self, record: Record) -> None:
        line = json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=False)
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def open_for_append(path: Path) -> Any:
    """``path`` opened for appending, or a one-line RecordsError saying why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by RecordWriter
    except OSError as err:
        raise RecordsError(
            f"cannot write records to {str(path)!r}: {err.strerror}; "
            "allowed: a writable folder (--output_path or records=)"
        ) from None


class NullWriter:
    """Where records go when the run keeps none (no --output_path and no records=)."""

    def write(self, record: Record) -> None:
        pass

    def close(self) -> None:
        pass
