"""Reading a records file: a torn last line (a run killed mid-write) is dropped, and cut
on resume; anything else that is not a record -- junk, text, a complete JSON line that is
not a record, a line cut short but ended -- is a one-line error that leaves the file as
it was, wherever it is in the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_eval_cola.errors import UserError
from lm_eval_cola.results.records import Record, RecordWriter, read_records
from tests.support.record_rows import RECORD as RECORD_ROW

pytestmark = pytest.mark.quick

RECORD = {**RECORD_ROW, "model": "tiny \u00e9t\u00e9"}  # non-ASCII, as written


def line(**changes) -> bytes:
    text = json.dumps({**RECORD, **changes}, separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "cola-records_x.jsonl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("inside_a_character", [False, True], ids=["ascii", "mid-character"])
def test_a_torn_last_line_is_dropped_and_cut_on_resume(tmp_path, caplog, inside_a_character):
    whole = line(doc_id=1)
    # the cut falls between the two bytes of an "\u00e9", or among ASCII bytes
    cut = whole.index("\u00e9".encode()) + 1 if inside_a_character else 30
    path = write(tmp_path, line() + whole[:cut])
    assert [r.doc_id for r in read_records(path)] == [0]
    assert "dropping a torn last line 2" in caplog.text
    assert path.read_bytes() == line() + whole[:cut]  # read only: left as it is
    assert [r.doc_id for r in read_records(path, repair=True)] == [0]
    assert path.read_bytes() == line()


@pytest.mark.parametrize(
    ("last", "why"),
    [
        (b'{"a": 1}\n', "missing task"),  # a complete JSON line, not a record
        (b'{"a": 1}', "missing task"),  # the same without its newline: still not torn
        (b"\x00\x9f\xfe\x13\xc3(junk", "not UTF-8 text"),  # binary junk, no newline
        (b"hello\n", "not JSON"),
        (b"x", "not JSON"),
        (line(doc_id=1)[:40] + b"\n", "not JSON"),  # cut short, then a newline: not ours
        (b"[1, 2]\n", "not a JSON object"),
    ],
    ids=["json-not-record", "json-not-record-no-newline", "binary-junk", "text", "one-letter",
         "cut-then-ended", "json-list"],
)
@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_line_that_is_not_a_record_is_one_line_and_the_file_is_kept(tmp_path, last, why,
                                                                     where):
    data = line() + last if where == "last" else line() + last.rstrip(b"\n") + b"\n" + line()
    path = write(tmp_path, data)
    for repair in (False, True):
        with pytest.raises(UserError) as caught:
            read_records(path, repair=repair)
        message = str(caught.value)
        assert "\n" not in message
        assert f"{str(path)!r}: line 2 is not a record" in message and why in message
        assert path.read_bytes() == data


def test_a_text_file_given_as_records_is_not_truncated(tmp_path):
    """``search --records notes.txt`` used to drop the lone line as torn and cut the file
    to nothing before writing records into it."""
    path = write(tmp_path, b"my notes\n")
    with pytest.raises(UserError, match="line 1 is not a record"):
        read_records(path, repair=True)
    assert path.read_bytes() == b"my notes\n"


def test_a_record_cut_just_before_its_newline_gets_one_on_resume(tmp_path):
    path = write(tmp_path, line() + line(doc_id=1).rstrip(b"\n"))
    assert [r.doc_id for r in read_records(path, repair=True)] == [0, 1]
    writer = RecordWriter(path)
    writer.write(Record.from_json({**RECORD, "doc_id": 2}))
    writer.close()
    assert [r.doc_id for r in read_records(path)] == [0, 1, 2]


def test_empty_missing_and_folder(tmp_path):
    assert read_records(write(tmp_path, b"")) == []
    assert read_records(tmp_path / "none.jsonl") == []
    with pytest.raises(UserError, match="is a folder; allowed: a records file"):
        read_records(tmp_path)
