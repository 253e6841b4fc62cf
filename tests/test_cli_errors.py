"""``lm-eval-cola`` subcommands on bad input: exit non-zero with one ``error:`` line, no
traceback, existing files left as they were. ``verify`` never passes having checked
nothing (an empty file, a line that is not a record), and a record whose doc is not the
data's is one line naming the task and doc."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lm_eval_cola.cli import main
from tests.support.record_rows import RECORD as RECORD_ROW

pytestmark = pytest.mark.quick

RECORD = {**RECORD_ROW, "request_type": "loglikelihood"}


def fails_with_one_line(capsys, argv: list[str], *needles: str) -> str:
    """``main(argv)`` exits 2 with exactly one ``error:`` line holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def keep(*paths: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in paths}


# ----------------------------------------------------------------------------- verify


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        (b"", ["holds no records", "nothing to verify"]),
        (b'{"a": 1}\n', ["line 1 is not a record", "missing task"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00junk", ["line 1 is not a record", "not UTF-8 text"]),
        (b"\x00\x9f\xfe\xc3(", ["line 1 is not a record", "not UTF-8 text"]),
        (b'{"task": "arc_chal', ["holds no records"]),  # only a torn line: nothing either
    ],
    ids=["empty", "json-not-record", "binary", "binary-one-line", "only-torn"],
)
def test_verify_fails_when_it_checked_nothing(tmp_path, capsys, data, needles):
    path = tmp_path / "cola-records_x.jsonl"
    path.write_bytes(data)
    fails_with_one_line(capsys, ["verify", str(path)], str(path), *needles)
    assert path.read_bytes() == data


def test_verify_a_good_file_then_junk_fails_on_the_junk(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(RECORD) + "\n")
    junk = tmp_path / "junk.jsonl"
    junk.write_text(json.dumps(RECORD) + "\n" + json.dumps({"doc_id": 3}) + "\n")
    files = keep(good, junk)
    fails_with_one_line(capsys, ["verify", str(good), str(junk)], str(junk), "line 2")
    assert keep(good, junk) == files


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_verify_needs_a_file(tmp_path, capsys, what):
    path = tmp_path / "none.jsonl" if what == "missing" else tmp_path
    fails_with_one_line(capsys, ["verify", str(path)], str(path))


needs_data = pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                                reason="needs COLA_DATA_DIR (local benchmark data)")


@pytest.mark.tiny
@needs_data
def test_verify_a_doc_that_changed_is_one_line(tiny_llama_dir, tmp_path, capsys):
    from lm_eval_cola.compat import local_data

    local_data.install()
    path = tmp_path / "records.jsonl"
    rows = [{**RECORD, "load_args": {"pretrained": tiny_llama_dir}, "doc_hash": "0" * 64},
            {**RECORD, "load_args": {"pretrained": tiny_llama_dir}, "doc_id": 10**6},
            {**RECORD, "load_args": {"pretrained": tiny_llama_dir}, "task": "no_such_task"}]
    needles = [["task 'arc_challenge' doc 0 differs from the recorded one",
                "the data changed since the run, or its doc ids map to other docs"],
               ["task 'arc_challenge' doc 1000000: the data has no such doc (it has "],
               ["task 'no_such_task' doc 0: the task cannot be loaded here",
                "allowed: a task lm-eval knows"]]
    for row, expected in zip(rows, needles, strict=True):
        path.write_text(json.dumps(row) + "\n")
        before = path.read_bytes()
        fails_with_one_line(capsys, ["verify", str(path), "--model_args", "device=cpu"],
                            str(path), *expected)
        assert path.read_bytes() == before


# ----------------------------------------------------------------------------- export


def test_export_out_an_existing_file_overwrites_nothing(tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")
    # the model is never loaded: --out is checked first (a missing model would say so)
    fails_with_one_line(capsys, ["export", "0-1", "--out", str(out), "--model_args",
                                 f"pretrained={tmp_path / 'no-model'}"],
                        f"--out {str(out)!r} is an existing file", "allowed: a new or empty")
    assert out.read_bytes() == b"precious"


def test_export_out_under_a_file_is_refused_before_loading(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "export"
    fails_with_one_line(capsys, ["export", "0-1", "--out", str(out), "--model_args",
                                 f"pretrained={tmp_path / 'no-model'}"],
                        f"--out {str(out)!r} cannot be made", f"{str(blocker)!r} is a file")
    assert blocker.read_text() == "x"


def test_export_chain_refuses_an_existing_file(tmp_path):
    from lm_eval_cola.deploy.export import export_chain
    from lm_eval_cola.errors import UserError

    out = tmp_path / "taken"
    out.write_text("x")
    with pytest.raises(UserError, match="is an existing file"):
        export_chain(None, None, (0, 1), out, "source")
    assert out.read_text() == "x"


@pytest.mark.parametrize("what", ["missing", "a-file", "not-a-model"])
def test_a_model_that_cannot_be_loaded_is_one_line(tmp_path, capsys, what):
    pretrained = tmp_path / what
    if what == "a-file":
        pretrained.write_text("not a model")
    elif what == "not-a-model":
        pretrained.mkdir()
    expected = f"pretrained={str(pretrained)!r}"
    fails_with_one_line(capsys, ["layers", "--model_args", f"pretrained={pretrained}"],
                        expected)
    fails_with_one_line(capsys, ["export", "0-1", "--out", str(tmp_path / "out"),
                                 "--model_args", f"pretrained={pretrained}"], expected)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- any subcommand


def test_a_file_where_a_folder_is_needed_is_one_line(tmp_path, capsys):
    """What a subcommand did not foresee still ends in one line (here ``search`` making
    the records file's folder under a file)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fails_with_one_line(capsys, ["search", "--tasks", "arc_challenge", "--split", "validation",
                                 "--records", str(blocker / "r.jsonl")],
                        f"{str(blocker)!r} is a file where a folder is needed")
    assert blocker.read_text() == "x"
