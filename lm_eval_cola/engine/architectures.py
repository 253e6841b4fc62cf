"""Per-architecture facts as data: a typed loader for ``architectures.yaml``.

Everything the chain engine must know about a model family (where its decoder layers are,
which modules hold ``layer_idx``, the config attributes of its layer count, layer types and
sliding window, its KV-cache keywords, what its layers return) lives in one data file shipped
in the package, one entry per transformers ``model_type``. Adding an architecture is adding an
entry there (and a tiny model to ``tests/support/tiny_models.py``), not editing the engine.

The file is read and checked once, on first use; a malformed entry raises
:class:`ArchitectureDataError` naming the entry and the field. This module imports neither
torch nor transformers: ``lm-eval-cola layers`` uses it with a model's config alone.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from lm_eval_cola.errors import UserError

DATA_FILE = "architectures.yaml"
LAYER_OUTPUTS = ("tensor", "tuple", "probe")
LayerOutput = Literal["tensor", "tuple", "probe"]


class UnsupportedArchitectureError(UserError):
    """The model's architecture is not one the chain engine knows how to rearrange."""


class ArchitectureDataError(ValueError):
    """``architectures.yaml`` is malformed (a packaging or editing mistake, not user input)."""


@dataclass(frozen=True)
class Architecture:
    """One ``model_type``'s entry; see the header of ``architectures.yaml`` for each field."""

    model_type: str
    layers: str
    layer_idx: tuple[str, ...]
    layer_count: str
    layer_types: str | None
    sliding_window: str | None
    sliding_switch: str | None
    cache_keywords: tuple[str, ...]
    layer_cache_keywords: tuple[str, ...]
    layer_output: LayerOutput

    @property
    def layers_path(self) -> tuple[str, ...]:
        """``layers`` split into attribute names."""
        return tuple(self.layers.split("."))

    def window(self, config: Any) -> int | None:
        """The sliding-window length ``config`` gives some layer, or None when no layer has
        one (no window attribute, the switch off, or no layer type names a window)."""
        if self.sliding_window is None:
            return None
        if self.sliding_switch is not None and getattr(config, self.sliding_switch, True) is False:
            return None
        types = getattr(config, self.layer_types, None) if self.layer_types else None
        # Chunked attention (a window by another name) counts as one too.
        if types is not None and not any("sliding" in str(t) or "chunk" in str(t) for t in types):
            return None
        return getattr(config, self.sliding_window, None)

    def cache_keyword(self, forward: Callable[..., Any]) -> str:
        """The keyword ``forward`` (a *ForCausalLM's) takes its KV cache by."""
        parameters = inspect.signature(forward).parameters
        for name in self.cache_keywords:
            if name in parameters:
                return name
        raise UnsupportedArchitectureError(
            f"{self.model_type}: the model's forward takes none of the cache keywords "
            f"{', '.join(self.cache_keywords)} ({DATA_FILE}: cache_keywords)"
        )


_REQUIRED = {f.name for f in fields(Architecture)} - {"model_type"}


def _data_text(path: str | Path | None) -> tuple[str, str]:
    if path is not None:
        return Path(path).read_text(encoding="utf-8"), str(path)
    resource = resources.files("lm_eval_cola.engine").joinpath(DATA_FILE)
    return resource.read_text(encoding="utf-8"), str(resource)


def _strings(value: Any, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArchitectureDataError(f"{where}: {field} must be a list of strings, got {value!r}")
    return tuple(value)


def _optional_name(value: Any, where: str, field: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ArchitectureDataError(f"{where}: {field} must be a name or null, got {value!r}")
    return value


def _entry(model_type: str, raw: Mapping[str, Any], defaults: Mapping[str, Any],
           source: str) -> Architecture:
    where = f"{source}: {model_type!r}"
    if not isinstance(raw, Mapping):
        raise ArchitectureDataError(f"{where} must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - _REQUIRED)
    if unknown:
        raise ArchitectureDataError(
            f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_REQUIRED))}"
        )
    merged = {**defaults, **raw}
    missing = sorted(_REQUIRED - set(merged))
    if missing:
        raise ArchitectureDataError(f"{where}: missing field {missing[0]!r} (and no default)")
    layers = merged["layers"]
    if not isinstance(layers, str) or not all(layers.split(".")):
        raise ArchitectureDataError(f"{where}: layers must be an attribute path, got {layers!r}")
    output = merged["layer_output"]
    if output not in LAYER_OUTPUTS:
        raise ArchitectureDataError(
            f"{where}: layer_output must be one of {', '.join(LAYER_OUTPUTS)}, got {output!r}"
        )
    count = _optional_name(merged["layer_count"], where, "layer_count")
    if count is None:
        raise ArchitectureDataError(f"{where}: layer_count must be a config attribute name")
    cache_keywords = _strings(merged["cache_keywords"], where, "cache_keywords")
    layer_cache_keywords = _strings(merged["layer_cache_keywords"], where,
                                    "layer_cache_keywords")
    if not cache_keywords or not layer_cache_keywords:
        raise ArchitectureDataError(f"{where}: cache keyword lists must not be empty")
    return Architecture(
        model_type=model_type,
        layers=layers,
        layer_idx=_strings(merged["layer_idx"], where, "layer_idx"),
        layer_count=count,
        layer_types=_optional_name(merged["layer_types"], where, "layer_types"),
        sliding_window=_optional_name(merged["sliding_window"], where, "sliding_window"),
        sliding_switch=_optional_name(merged["sliding_switch"], where, "sliding_switch"),
        cache_keywords=cache_keywords,
        layer_cache_keywords=layer_cache_keywords,
        layer_output=output,
    )


def parse(text: str, source: str = DATA_FILE) -> dict[str, Architecture]:
    """``model_type -> Architecture`` from the YAML text of an architectures file."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ArchitectureDataError(f"{source}: not valid YAML ({err})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("architectures"), Mapping):
        raise ArchitectureDataError(f"{source}: needs a mapping 'architectures: {{model_type: "
                                    "...}}' (and optionally 'defaults:')")
    unknown = sorted(set(data) - {"defaults", "architectures"})
    if unknown:
        raise ArchitectureDataError(f"{source}: unknown top-level key {unknown[0]!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - _REQUIRED:
        raise ArchitectureDataError(f"{source}: defaults must map field names "
                                    f"({', '.join(sorted(_REQUIRED))}) to values")
    return {str(kind): _entry(str(kind), raw or {}, defaults, source)
            for kind, raw in data["architectures"].items()}


@functools.cache
def load(path: str | None = None) -> dict[str, Architecture]:
    """Every architecture in the packaged data file (or in ``path``); read once."""
    text, source = _data_text(path)
    return parse(text, source)


def supported() -> list[str]:
    """The supported ``model_type`` names, sorted."""
    return sorted(load())


def get(model_type: str) -> Architecture:
    """The entry of ``model_type``, or a one-line error listing the supported ones."""
    found = load().get(model_type)
    if found is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(supported())}"
        )
    return found


def of_config(config: Any) -> Architecture:
    """The entry of a transformers config's ``model_type``."""
    return get(str(getattr(config, "model_type", type(config).__name__)))
