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

Long chains can come from a YAML/JSON file; ``read_chain_file`` is the one reader of
every form (``layer_range`` is end-exclusive, as in mergekit):

- a real mergekit passthrough config over one model (what ``export --mergekit`` writes;
  one source per slice, the same model in every slice, no ``parameters``)::

      merge_method: passthrough
      dtype: bfloat16
      slices:
        - sources:
            - model: HuggingFaceTB/SmolLM2-135M-Instruct
              layer_range: [0, 10]
        - sources:
            - model: HuggingFaceTB/SmolLM2-135M-Instruct
              layer_range: [9, 10]

- the short slice form, ``repeat: k`` meaning the slice k times in total::

      slices:
        - layer_range: [0, 10]
        - layer_range: [9, 10]
          repeat: 2
        - layer_range: [12, 30]

- ``layers: [0, 1, 1, 2]`` (or a bare list), or ``chain: "0-9+9*2+12-29"``: the latter is
  also the JSON chain file with provenance that ``calibrate`` and ``prune`` write
  (``chain_file.ChainFile``), whose ``num_layers`` is checked against the model.

The canonical text (``format_chain``) joins ascending runs as ``a-b`` and
merges identical neighbouring runs as ``run*k``; ``parse_chain`` of it gives
the same chain back.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class ChainSource:
    """What a chain file holds, whatever its form (see the module docstring)."""

    path: str
    form: str  # "mergekit", "slices", "layers" or "chain"
    spec: str | tuple[int, ...]  # what ``parse_chain`` reads: chain text or layer indices
    num_layers: int | None = None  # the layer count the file declares (JSON chain files)
    model: str | None = None  # the model it names: mergekit's ``model``, or provenance's
    dtype: str | None = None  # mergekit's ``dtype``
    data: Mapping[str, Any] = field(default_factory=dict)  # the document as read


def _load_document(path: Path) -> Any:
    if not path.is_file():
        raise ChainError(f"chain file {str(path)!r} does not exist")
    raw = path.read_text()
    try:
        if path.suffix == ".json":
            return json.loads(raw)
        import yaml

        return yaml.safe_load(raw)
    except Exception as err:  # noqa: BLE001 - yaml and json raise different types
        why = " ".join(str(err).split())  # yaml's messages span lines
        raise ChainError(f"chain file {str(path)!r} is not valid {path.suffix[1:]}: {why}") \
            from None


def _layer_range(value: Any, where: str) -> list[int]:
    """The layers of an end-exclusive ``[start, end]`` (a one-line error otherwise)."""
    try:
        start, end = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ChainError(f"bad layer_range {value!r} in {where}; allowed: "
                         "[start, end_exclusive], e.g. [0, 10]") from None
    if not 0 <= start < end:
        raise ChainError(f"empty or negative layer_range {value!r} in {where}; allowed: "
                         "[start, end_exclusive] with 0 <= start < end")
    return list(range(start, end))


def _short_slices(slices: list[Any], name: str) -> list[int]:
    layers: list[int] = []
    for item in slices:
        try:
            found = item["layer_range"]
            repeat = int(item.get("repeat", 1))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ChainError(
                f"bad slice {item!r} in {name}; expected {{layer_range: [start, end_exclusive],"
                " repeat: k}, or a mergekit slice {sources: [{model: M, layer_range: [a, b]}]}"
            ) from None
        if repeat < 1:
            raise ChainError(f"repeat must be >= 1 in slice {item!r} of {name}")
        layers.extend(_layer_range(found, name) * repeat)
    return layers


def _model_name(value: Any) -> str:
    """A mergekit model reference as text (a string, or a mapping such as {path: ...})."""
    if isinstance(value, Mapping):
        value = value.get("model", value)
        value = value.get("path", value) if isinstance(value, Mapping) else value
    return str(value)


def _mergekit_slices(data: Mapping[str, Any], name: str) -> tuple[list[int], str]:
    """(the layers, the one model) of a mergekit passthrough config's ``slices``."""
    method = data.get("merge_method", "passthrough")
    if method != "passthrough":
        raise ChainError(f"chain file {name} has merge_method {method!r}; allowed: "
                         "passthrough (a chain runs one model's layers unchanged)")
    layers: list[int] = []
    models: list[str] = []
    for number, item in enumerate(data["slices"], 1):
        sources = item.get("sources") if isinstance(item, Mapping) else None
        if not isinstance(sources, list) or len(sources) != 1 \
                or not isinstance(sources[0], Mapping):
            count = len(sources) if isinstance(sources, list) else 0
            raise ChainError(f"slice {number} of {name} has {count} sources; allowed: one, "
                             "sources: [{model: M, layer_range: [start, end_exclusive]}]")
        source = sources[0]
        if "parameters" in item or "parameters" in source or "parameters" in data:
            raise ChainError(f"chain file {name} sets mergekit parameters (e.g. a scale); a "
                             "chain runs layers unchanged (allowed: passthrough without them)")
        if "model" not in source or "layer_range" not in source:
            raise ChainError(f"slice {number} of {name} needs 'model' and 'layer_range' in "
                             "its source; allowed: {model: M, layer_range: [start, end]}")
        model = _model_name(source["model"])
        if model not in models:
            models.append(model)
        layers.extend(_layer_range(source["layer_range"], f"slice {number} of {name}"))
    if len(models) > 1:
        raise ChainError(f"chain file {name} names {len(models)} models ({', '.join(models)}); "
                         "a chain is over one model's layers (allowed: one model in every slice)")
    return layers, models[0] if models else ""


def read_chain_file(path: str | Path) -> ChainSource:
    """Read a chain file of any form (see the module docstring): the one reader."""
    path = Path(str(path).strip().removeprefix("@"))
    name = repr(str(path))
    data = _load_document(path)
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, Mapping):
        raise ChainError(f"chain file {name} must hold a mapping with 'slices', 'layers' or "
                         "'chain'")
    declared = data.get("num_layers")
    num_layers = declared if isinstance(declared, int) and not isinstance(declared, bool) \
        else None
    named = data.get("model")
    model = str(named) if isinstance(named, str) and named else None
    dtype = str(data["dtype"]) if data.get("dtype") is not None else None
    facts = {"path": str(path), "num_layers": num_layers, "model": model, "dtype": dtype,
             "data": data}
    if "chain" in data:
        text = str(data["chain"])
        if text.strip().lower().endswith(CHAIN_FILE_SUFFIXES):  # would read files forever
            raise ChainError(f"chain {text!r} in {name} names a file; allowed: chain text")
        return ChainSource(form="chain", spec=text, **facts)
    if "layers" in data:
        try:
            layers = tuple(int(i) for i in data["layers"])
        except (TypeError, ValueError):
            raise ChainError(f"bad layers {data['layers']!r} in {name}; allowed: a list of "
                             "layer indices") from None
        return ChainSource(form="layers", spec=layers, **facts)
    if "merge_method" in data and "slices" not in data:
        found = [k for k in ("models", "modules") if k in data] or ["no slices"]
        raise ChainError(f"chain file {name} is a mergekit config with {found[0]}; allowed: "
                         "a passthrough config with 'slices' over one model")
    slices = data.get("slices")
    if not isinstance(slices, list):
        raise ChainError(f"chain file {name} needs one of the keys 'slices' (a list), 'layers' "
                         "or 'chain'")
    mergekit = "merge_method" in data or any(
        isinstance(item, Mapping) and "sources" in item for item in slices)
    if not mergekit:
        return ChainSource(form="slices", spec=tuple(_short_slices(slices, name)), **facts)
    layers, facts["model"] = _mergekit_slices(data, name)
    logger.info("chain file %s: a mergekit passthrough config over %s", path, facts["model"])
    return ChainSource(form="mergekit", spec=tuple(layers), **facts)


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
            loaded = read_chain_file(stripped)
            return parse_chain(loaded.spec, num_layers, max_length)
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


def ascending_runs(chain: Sequence[int]) -> list[tuple[int, int]]:
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
    for run in ascending_runs(chain):
        if run == previous:
            counts[-1] += 1
            continue
        first, last = run
        terms.append(f"{first}-{last}" if last != first else f"{first}")
        counts.append(1)
        previous = run
    return "+".join(t if c == 1 else f"{t}*{c}" for t, c in zip(terms, counts, strict=True))
