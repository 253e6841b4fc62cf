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
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import CHAIN_FILE_SUFFIXES, Chain, format_chain, parse_chain
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
        path = Path(path)
        if not path.is_file():
            raise UserError(f"chain file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"chain file {str(path)!r} is not valid JSON: {err}") from None
        if not isinstance(data, Mapping) or "chain" not in data or "num_layers" not in data:
            raise UserError(f"chain file {str(path)!r} needs the keys 'chain' and 'num_layers'")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def is_chain_file(spec: Any) -> bool:
    """Whether a ``chain=`` value names a file rather than chain text."""
    return isinstance(spec, str) and spec.strip().lower().endswith(CHAIN_FILE_SUFFIXES)


def provenance(spec: Any) -> dict[str, Any]:
    """What a results file keeps of a JSON chain file's origin (``method``, ``task``,
    ``split``, ``samples``, the file): how a report tells a calibrated chain from a
    pruning baseline. Empty for chain text or a YAML chain."""
    if not is_chain_file(spec):
        return {}
    path = Path(spec.strip().removeprefix("@"))
    if path.suffix != ".json" or not path.is_file():
        return {}
    found = ChainFile.read(path)
    return {"file": str(path), "method": found.method, "task": found.task,
            "split": found.split, "samples": found.samples}


def declared_layer_count(spec: Any) -> int | None:
    """The ``num_layers`` a chain file declares (None: not a file, or it declares none)."""
    if not is_chain_file(spec):
        return None
    path = Path(spec.strip().removeprefix("@"))
    if path.suffix != ".json" or not path.is_file():
        return None  # YAML chain files (mergekit style) declare no layer count
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # parse_chain reports it in one line
    value = data.get("num_layers") if isinstance(data, Mapping) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def check_layer_count(spec: Any, num_layers: int) -> None:
    """Refuse a chain file made for a model of another depth."""
    declared = declared_layer_count(spec)
    if declared is not None and declared != num_layers:
        raise UserError(f"chain file {spec!r} was made for a model of {declared} layers; this "
                        f"model has {num_layers} (allowed: a chain file of the same model)")
