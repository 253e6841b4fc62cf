"""Chain text: parsing, canonical form round trip, files, errors, and lm-eval's parsers."""

from __future__ import annotations

import pytest

from lm_eval_cola.chains.syntax import ChainError, format_chain, parse_chain

pytestmark = pytest.mark.quick

L = 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("identity", tuple(range(30))),
        (None, tuple(range(30))),
        ("0-9+9*2+12-29", tuple(range(10)) + (9, 9) + tuple(range(12, 30))),
        ("skip:20-23", tuple(i for i in range(30) if not 20 <= i <= 23)),
        ("loop:10-12*3", tuple(range(13)) + (10, 11, 12) * 2 + tuple(range(13, 30))),
        ("29-27", (29, 28, 27)),
        ("10-12*2", (10, 11, 12, 10, 11, 12)),
        ("0-9,9,9,12-29", tuple(range(10)) + (9, 9) + tuple(range(12, 30))),
        (12, (12,)),
        ([3, 1, 2], (3, 1, 2)),
    ],
)
def test_parse(text, expected):
    assert parse_chain(text, L) == expected


@pytest.mark.parametrize(
    "chain",
    [tuple(range(30)), (0, 1, 1, 1, 2), (5, 4, 3), (0, 1, 2, 0, 1, 2, 0, 1, 2), (7,), (3, 3, 4, 4)],
)
def test_canonical_round_trip(chain):
    text = format_chain(chain)
    assert parse_chain(text, L) == chain
    assert format_chain(parse_chain(text, L)) == text
    assert "," not in text


def test_canonical_examples():
    assert format_chain(parse_chain("0-9,9,9,12-29", L)) == "0-9+9*2+12-29"
    assert format_chain(range(30)) == "0-29"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0-9+x", "malformed chain term 'x'"),
        ("", None),
        ("0-30", "layer index 30 out of range"),
        ("0-29*3", "over the cap of 60"),
        ("+", "empty chain"),
        ("jump:3", "unknown chain shorthand 'jump'"),
        ("loop:12-10*2", "loop block must be ascending"),
        ("nofile.yaml", "does not exist"),
    ],
)
def test_bad_chains_give_one_line_errors(text, message):
    if message is None:  # empty text means identity
        assert parse_chain(text, L) == tuple(range(L))
        return
    with pytest.raises(ChainError) as info:
        parse_chain(text, L)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cap_is_configurable():
    assert len(parse_chain("0-29*3", L, max_length=90)) == 90


def test_empty_list_is_an_error():
    with pytest.raises(ChainError, match="empty chain"):
        parse_chain([], L)


def test_mergekit_style_file(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(
        "slices:\n  - layer_range: [0, 10]\n  - layer_range: [9, 10]\n    repeat: 2\n"
        "  - layer_range: [12, 30]\n"
    )
    assert format_chain(parse_chain(str(path), L)) == "0-9+9*2+12-29"
    json_path = tmp_path / "chain.json"
    json_path.write_text('{"layers": [0, 1, 1, 2]}')
    assert parse_chain(str(json_path), L) == (0, 1, 1, 2)


def test_survives_both_lm_eval_model_args_parsers():
    from lm_eval._cli.utils import key_val_to_dict
    from lm_eval.utils import simple_parse_args_string

    text = "chain=0-9+9*2+12-29,searcher=none,budget=5"
    for parse in (key_val_to_dict, simple_parse_args_string):
        args = parse(text)
        assert parse_chain(args["chain"], L) == parse_chain("0-9+9*2+12-29", L)
        assert args["budget"] == 5
    # A single index comes back from both parsers as an int.
    for parse in (key_val_to_dict, simple_parse_args_string):
        assert parse_chain(parse("chain=7")["chain"], L) == (7,)
