"""Chain files: one chain for a whole model, with how it was found.

A chain file is a small JSON document that ``cola_hf chain=FILE.json`` runs as is (its
``chain`` key is what ``chain.parse_chain`` reads) and that ``lm-eval-cola export`` turns
into a standalone checkpoint. Beside the chain it keeps what a reader needs to trust it::

    {
      "chain": "0-19+22-29",           # canonical chain text
      "num_layers": 30,                # the source model's layer count
      "length": 28,
      "depth_ratio": 0.9333,
      "model": "SmolLM2-135M-Instruct",
      "method": "calibrate:greedy",    # calibrate:<searcher>, consensus, block_influence, sleb
      "task": "arc_challenge",
      "split": "train",                # the calibration split (never the evaluated one)
      "samples": 200,                  # calibration docs used
      "settings": {...},               # the method's settings
      "score": {...},                  # what the method measured (calibration accuracy, ...)
      "created": "2026-11-30T05:00:00+00:00",
      "version": "0.x"
    }

Only ``chain`` is needed to run it; ``num_layers``, where present, is checked against the
model (``check_layer_count``), so a chain calibrated on a 30-layer model is refused, not
silently reinterpreted, on a model of another depth.

Every form of chain file (this JSON, a mergekit passthrough YAML, the short slice form, a
layer list) is read by ``chain.read_chain_file``: ``ChainFile.read``, ``provenance`` and
``declared_layer_count`` are views of what it returns. The other file this module writes is
a mergekit passthrough config (``write_mergekit``, ``lm-eval-cola export --mergekit``): one
slice per ascending run of the chain, so mergekit builds the model the chain runs, and
``read_chain_file`` reads it back as the same chain.

A mergekit config names its model; a chain runs on whatever ``pretrained=`` loads, so the
name is kept in the results (``cola_chain_source.model``) and ``export`` warns when it differs
from ``pretrained=`` (``check_model``). It is not refused: one model goes by several names
(a Hub id, a local folder, a cache snapshot), and the layer count is checked anyway.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import (
    CHAIN_FILE_SUFFIXES,
    Chain,
    ChainError,
    ChainSource,
    ascending_runs,
    format_chain,
    parse_chain,
    read_chain_file,
)
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class ChainFile:
    """One chain and its provenance (see the module docstring)."""

    chain: str
    num_layers: int
    model: str = ""
    method: str = ""
    task: str | None = None
    split: str | None = None
    samples: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    length: int = 0
    depth_ratio: float = 0.0
    created: str = ""
    version: str = ""

    @classmethod
    def make(cls, chain: Chain, num_layers: int, **facts: Any) -> ChainFile:
        """A chain file for ``chain`` (checked against ``num_layers``), stamped now."""
        from lm_eval_cola import __version__

        chain = parse_chain(list(chain), num_layers)
        return cls(chain=format_chain(chain), num_layers=num_layers, length=len(chain),
                   depth_ratio=round(len(chain) / num_layers, 4),
                   created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                   version=__version__, **facts)

    def layers(self) -> Chain:
        return parse_chain(self.chain, self.num_layers)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".json":
            raise UserError(f"chain file {str(path)!r} must end in .json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        logger.info("wrote chain %s (%d of %d layers) to %s", self.chain, self.length,
                    self.num_layers, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> ChainFile:
        source = read_chain_file(path)
        if source.form != "chain" or source.num_layers is None:
            raise UserError(f"chain file {str(path)!r} needs the keys 'chain' and 'num_layers'"
                            f" (it is a {source.form} chain file without provenance)")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in source.data.items() if k in known})


def is_chain_file(spec: Any) -> bool:
    """Whether a ``chain=`` value names a file rather than chain text."""
    return isinstance(spec, str) and spec.strip().lower().endswith(CHAIN_FILE_SUFFIXES)


def _source(spec: Any) -> ChainSource | None:
    """The chain file ``spec`` names, read; None: chain text, or a file ``parse_chain``
    will report in one line (missing, malformed)."""
    if not is_chain_file(spec):
        return None
    try:
        return read_chain_file(spec)
    except ChainError:
        return None


def provenance(spec: Any) -> dict[str, Any]:
    """What a results file keeps of a chain file's origin: a JSON chain file's ``method``,
    ``task``, ``split``, ``samples``; a mergekit config's ``model``; and the file. How a
    report tells a calibrated chain from a pruning baseline. Empty for chain text and the
    files that say nothing of their origin (short slices, layer lists)."""
    source = _source(spec)
    if source is None:
        return {}
    if source.form == "mergekit":
        return {"file": source.path, "method": "mergekit:passthrough", "model": source.model}
    if source.form != "chain" or source.num_layers is None:
        return {}
    found = ChainFile.read(source.path)
    return {"file": source.path, "method": found.method, "task": found.task,
            "split": found.split, "samples": found.samples}


def declared_layer_count(spec: Any) -> int | None:
    """The ``num_layers`` a chain file declares (None: not a file, or it declares none)."""
    source = _source(spec)
    return source.num_layers if source is not None else None


def check_layer_count(spec: Any, num_layers: int) -> None:
    """Refuse a chain file made for a model of another depth."""
    declared = declared_layer_count(spec)
    if declared is not None and declared != num_layers:
        raise UserError(f"chain file {spec!r} was made for a model of {declared} layers; this "
                        f"model has {num_layers} (allowed: a chain file of the same model)")


def _same_model(named: str, pretrained: str) -> bool:
    """Whether two names plausibly name one model: equal, the same folder, or the same last
    path component (``org/Model`` vs a local ``.../Model``)."""
    if named == pretrained:
        return True
    first, second = Path(named).expanduser(), Path(pretrained).expanduser()
    if first.exists() and second.exists():
        return first.resolve() == second.resolve()
    return first.name.lower() == second.name.lower()


def check_model(spec: Any, pretrained: str | None) -> None:
    """Warn when a mergekit chain file names another model than ``pretrained=``: the chain
    runs on ``pretrained=`` (see the module docstring for why this is not refused)."""
    source = _source(spec)
    if source is None or source.form != "mergekit" or not pretrained or not source.model:
        return
    if not _same_model(source.model, str(pretrained)):
        logger.warning("chain file %s was written for model %r; running its chain on "
                       "pretrained=%r", source.path, source.model, pretrained)


def mergekit_config(chain: Sequence[int], model: str, dtype: str | None = None
                    ) -> dict[str, Any]:
    """A mergekit passthrough config that builds ``model`` with its layers as ``chain``:
    one slice per ascending run (a repeat is a repeated slice, a reverse one slice per
    layer); ``layer_range`` is end-exclusive."""
    if not chain:
        raise ChainError("empty chain; a mergekit config needs at least one layer")
    slices = [{"sources": [{"model": model, "layer_range": [first, last + 1]}]}
              for first, last in ascending_runs(chain)]
    config: dict[str, Any] = {"merge_method": "passthrough"}
    if dtype:
        config["dtype"] = dtype
    config["slices"] = slices
    return config


def write_mergekit(path: str | Path, chain: Sequence[int], model: str,
                   dtype: str | None = None, note: str = "") -> Path:
    """Write ``mergekit_config`` as YAML (``mergekit-yaml FILE OUT`` builds the model);
    ``note`` goes in a comment at the top."""
    import yaml

    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise UserError(f"mergekit config {str(path)!r} must end in .yaml or .yml")
    if path.is_dir():
        raise UserError(f"mergekit config {str(path)!r} is a folder; allowed: a file path")
    header = f"# lm-eval-cola chain {format_chain(chain)} ({len(chain)} layers)"
    if note:
        header += f"; {note}"
    body = yaml.safe_dump(mergekit_config(chain, model, dtype), sort_keys=False,
                          default_flow_style=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{header}\n{body}")
    logger.info("wrote mergekit passthrough config for chain %s to %s", format_chain(chain),
                path)
    return path
