"""Chain of layers: parse, validate and print the chain text syntax.

A chain is a tuple of indices into a model's decoder layers. The text syntax is
built to survive lm-eval's model_args parsers, which split on commas, so terms
are joined with ``+``:

    identity            all layers in order (also: empty, ``all``)
    0-9+9*2+12-29       layers 0..9, then layer 9 twice more, then 12..29
    12-29+0-11          reorder
    29-0                a descending range (runs the layers in reverse)
    10-12*3             the block 10,11,12 three times in a row
    skip:20-23          all layers except 20..23 (terms joined by ``+``)
    loop:10-12*3        all layers in order, with the block 10..12 run 3 times

Ranges are inclusive. ``*k`` always means "k times in total". Commas and spaces
are accepted as separators too when a chain does not pass through model_args.

Long chains can come from a YAML/JSON file, in mergekit's slice style
(``layer_range`` is end-exclusive, as in mergekit)::

    slices:
      - layer_range: [0, 10]
      - layer_range: [9, 10]
        repeat: 2
      - layer_range: [12, 30]

The canonical text (``format_chain``) joins ascending runs as ``a-b`` and
merges identical neighbouring runs as ``run*k``; ``parse_chain`` of it gives
the same chain back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from lm_eval_cola.errors import UserError

Chain = tuple[int, ...]

_TERM = re.compile(r"^(\d+)(?:-(\d+))?(?:\*(\d+))?$")
_SEPARATORS = re.compile(r"[+,\s]+")
CHAIN_FILE_SUFFIXES = (".yaml", ".yml", ".json")


class ChainError(UserError):
    """A chain that cannot be parsed or is not allowed; the message is one line."""


def full_chain(num_layers: int) -> Chain:
    """All layers once, in order: the model as trained (the "identity" chain)."""
    return tuple(range(num_layers))


def _parse_term(term: str, text: str) -> list[int]:
    match = _TERM.match(term)
    if not match:
        raise ChainError(
            f"malformed chain term {term!r} in {text!r}; allowed: N, A-B, N*K, A-B*K joined by '+',"
            " or identity, skip:..., loop:A-B*K, or a .yaml/.json file"
        )
    start, end, times = match.group(1), match.group(2), match.group(3)
    first = int(start)
    last = int(end) if end is not None else first
    step = 1 if last >= first else -1
    block = list(range(first, last + step, step))
    count = int(times) if times is not None else 1
    if count < 1:
        raise ChainError(f"repeat count must be >= 1 in {term!r}")
    return block * count


def _parse_terms(body: str, text: str) -> list[int]:
    terms = [t for t in _SEPARATORS.split(body.strip()) if t]
    if not terms:
        raise ChainError(f"empty chain {text!r}; give at least one layer index, or 'identity'")
    layers: list[int] = []
    for term in terms:
        layers.extend(_parse_term(term, text))
    return layers


def _skip(body: str, text: str, num_layers: int) -> list[int]:
    dropped = set(_parse_terms(body, text))
    _check_range(dropped, num_layers, text)
    return [i for i in range(num_layers) if i not in dropped]


def _loop(body: str, text: str, num_layers: int) -> list[int]:
    match = _TERM.match(body.strip())
    if not match or match.group(3) is None:
        raise ChainError(f"malformed loop {text!r}; expected loop:A-B*K, e.g. loop:10-12*3")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise ChainError(f"loop block must be ascending in {text!r}, got {first}-{last}")
    _check_range([first, last], num_layers, text)
    block = list(range(first, last + 1))
    times = int(match.group(3))
    if times < 1:
        raise ChainError(f"loop count must be >= 1 in {text!r}")
    return list(range(first)) + block * times + list(range(last + 1, num_layers))


def _check_range(layers, num_layers: int, text: str) -> None:
    bad = sorted(i for i in set(layers) if not 0 <= i < num_layers)
    if bad:
        raise ChainError(
            f"layer index {bad[0]} out of range in chain {text!r}; "
            f"this model has {num_layers} layers (allowed 0-{num_layers - 1})"
        )


def _chain_from_file(path: Path) -> list[int] | str:
    """Read a chain file: mergekit-style slices, a ``layers`` list, or a ``chain`` text."""
    if not path.is_file():
        raise ChainError(f"chain file {str(path)!r} does not exist")
    raw = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw)
    except Exception as err:  # noqa: BLE001 - yaml and json raise different types
        kind = path.suffix[1:]
        raise ChainError(f"chain file {str(path)!r} is not valid {kind}: {err}") from None
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict):
        raise ChainError(f"chain file {str(path)!r} must hold a mapping with 'slices' or 'layers'")
    if "chain" in data:
        return str(data["chain"])
    if "layers" in data:
        return [int(i) for i in data["layers"]]
    if "slices" not in data:
        raise ChainError(
            f"chain file {str(path)!r} needs one of the keys 'slices', 'layers' or 'chain'"
        )
    layers: list[int] = []
    for item in data["slices"]:
        try:
            start, end = item["layer_range"]
            repeat = int(item.get("repeat", 1))
        except (KeyError, TypeError, ValueError):
            raise ChainError(
                f"bad slice {item!r} in {str(path)!r}; expected "
                "{layer_range: [start, end_exclusive], repeat: k}"
            ) from None
        layers.extend(list(range(int(start), int(end))) * repeat)
    return layers


def parse_chain(
    spec: str | int | Sequence[int] | None,
    num_layers: int,
    max_length: int | None = None,
) -> Chain:
    """Turn a chain spec (text, file path, int or list of ints) into a validated chain.

    ``max_length`` defaults to twice the layer count.
    """
    if max_length is None:
        max_length = 2 * num_layers
    text = spec if isinstance(spec, str) else repr(spec)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "identity", "all")):
        layers = list(range(num_layers))
    elif isinstance(spec, bool):
        raise ChainError(f"chain must be text or a list of layer indices, got {spec!r}")
    elif isinstance(spec, int):
        layers = [spec]
    elif isinstance(spec, str):
        stripped = spec.strip()
        if stripped.lower().endswith(CHAIN_FILE_SUFFIXES):
            loaded = _chain_from_file(Path(stripped.removeprefix("@")))
            return parse_chain(loaded, num_layers, max_length)
        head, _, body = stripped.partition(":")
        if body and head.lower() == "skip":
            layers = _skip(body, text, num_layers)
        elif body and head.lower() == "loop":
            layers = _loop(body, text, num_layers)
        elif ":" in stripped:
            raise ChainError(f"unknown chain shorthand {head!r} in {text!r}; allowed: skip:, loop:")
        else:
            layers = _parse_terms(stripped, text)
    else:
        try:
            layers = [int(i) for i in spec]
        except (TypeError, ValueError):
            raise ChainError(f"chain must be text or a list of layer indices, got {text}") from None
    return validate_chain(layers, num_layers, max_length, text)


def validate_chain(
    layers: Sequence[int], num_layers: int, max_length: int | None = None, text: str | None = None
) -> Chain:
    if max_length is None:
        max_length = 2 * num_layers
    text = text if text is not None else format_chain(layers) if layers else "''"
    if len(layers) == 0:
        raise ChainError(f"empty chain {text}; a chain needs at least one layer")
    _check_range(layers, num_layers, text)
    if len(layers) > max_length:
        raise ChainError(
            f"chain {text!r} has {len(layers)} layers, over the cap of {max_length} "
            "(raise it with max_chain_length=N)"
        )
    return tuple(int(i) for i in layers)


def _runs(chain: Sequence[int]) -> list[tuple[int, int]]:
    """Split a chain into maximal ascending runs of consecutive layers, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for index in chain:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def format_chain(chain: Sequence[int]) -> str:
    """The canonical text of a chain, e.g. ``0-9+9*2+12-29``."""
    terms: list[str] = []
    counts: list[int] = []
    previous = None
    for run in _runs(chain):
        if run == previous:
            counts[-1] += 1
            continue
        first, last = run
        terms.append(f"{first}-{last}" if last != first else f"{first}")
        counts.append(1)
        previous = run
    return "+".join(t if c == 1 else f"{t}*{c}" for t, c in zip(terms, counts, strict=True))
