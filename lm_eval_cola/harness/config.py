"""A cola model's own settings, parsed and checked once from lm-eval's model_args.

``ColaConfig.from_model_args`` splits model_args into ours (chain, searcher and its
settings, oracle metric, records, fast path) and the rest, which go to lm-eval's ``HFLM``
unchanged. A config is the engine's settings, shared by every mode (``EngineSettings``),
and one mode: ``FixedChain``, ``SearchMode`` or ``RouterMode``, each holding its own fields
and the checks between them. Everything that can be checked before the model loads is
checked here, so a bad value costs one line and no loading time. What needs the model (the
chain against the layer count) is checked by ``resolve``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.files import check_layer_count
from lm_eval_cola.chains.syntax import Chain, format_chain, full_chain, parse_chain
from lm_eval_cola.errors import UserError
from lm_eval_cola.search.searchers import SEARCHERS, Searcher, get_searcher, searcher_names

DEFAULT_SEARCH_BATCH = 16
# The search seed when neither seed= nor lm-eval's --seed names one (see ``search_seed``).
DEFAULT_SEED = 1234
CONTROLS = ("decoy",)  # control=: a chance control searched beside each sample
RECORD_CHAINS = ("best", "all")  # record_chains=: which evaluated chains a record lists
# numerics=: "exact" keeps a sample's scores independent of what shares its batch (bitwise
# on CPU fp32); "fast" lifts the caps that guarantee costs (measured by decision agreement).
NUMERICS = ("exact", "fast")


@dataclass(frozen=True)
class EngineSettings:
    """How chains run, whatever picks them: shared by every mode."""

    max_chain_length: int | None = None  # None: 2 x the layer count
    include_path: str | None = None  # custom lm-eval task folders (tasks loaded by name)
    fast: bool = True
    # The two memory budgets; None: from the device at model load (engine/memory.py)
    prefix_cache_bytes: int | None = None
    search_batch: int = DEFAULT_SEARCH_BATCH  # samples answered side by side
    generation_kv_bytes: int | None = None  # KV slots of the rows decoding at once
    # Generation: reuse a prompt start (few-shot examples) across samples. Off by default:
    # a prompt's tail run apart from its start rounds differently, so a sample's answer
    # could depend on which samples ran before it.
    share_prompts: bool = False
    numerics: str = "exact"  # NUMERICS

    def __post_init__(self) -> None:
        if self.max_chain_length is not None:
            _check_int("max_chain_length", self.max_chain_length, 1,
                       "an integer >= 1 (default: 2 x the layer count)")
        for name in ("prefix_cache_bytes", "generation_kv_bytes"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 0,
                           "bytes >= 0 (default: a share of the device's free memory)")
        _check_int("search_batch", self.search_batch, 1,
                   "an integer >= 1 (samples searched side by side)")
        for name in ("fast", "share_prompts"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"bad {name} {getattr(self, name)!r}; allowed: True or False")
        if self.numerics not in NUMERICS:
            raise UserError(f"bad numerics {self.numerics!r}; allowed: {', '.join(NUMERICS)}")


@dataclass(frozen=True)
class FixedChain:
    """Every sample runs one chain (``searcher`` and ``router`` not given)."""

    chain: str | None = None  # chain text or a chain file; None: the identity chain

    def __post_init__(self) -> None:
        _check_chain_text(self.chain)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> FixedChain:
        """From our model_args, where neither searcher= nor router= is given."""
        _outside_search(values, None)
        if values.get("records") is not None:
            _check_writable(values["records"])
        return cls(values.get("chain"))

    def resolve(self, num_layers: int, cap: int) -> Chain:
        check_layer_count(self.chain, num_layers)  # a chain file made for another depth
        return parse_chain(self.chain, num_layers, cap)


@dataclass(frozen=True)
class SearchMode:
    """A searcher picks each sample's chain (with the gold answer: oracle), starting from
    the full chain, and keeps a record per sample."""

    searcher: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # the searcher's, as given
    chain: str | None = None  # where searches start: the full chain only (``resolve``)
    seed: int | None = None  # None: lm-eval's seed for the run, else DEFAULT_SEED
    oracle_metric: str | None = None
    oracle_filter: str | None = None
    records: Path | None = None
    keep_correct: int = 5
    control: str | None = None  # "decoy": search each sample toward a wrong target too
    record_chains: str = "best"  # "all": every evaluated chain in the record

    def __post_init__(self) -> None:
        _check_seed_and_keep(self.seed, self.keep_correct)
        _check_chain_text(self.chain)
        _check_choices(self.control, self.record_chains)
        self.make_searcher(None)  # checks the settings now, before the model loads
        if self.records is not None:
            _check_writable(self.records)

    @property
    def oracle(self) -> bool:
        """The gold answer chooses each sample's chain (False for searcher `none`)."""
        return SEARCHERS[self.searcher].oracle

    def make_searcher(self, max_chain_length: int | None) -> Searcher:
        """The searcher with its settings; ``max_len`` defaults to the chain-length cap."""
        settings = dict(self.settings)
        if max_chain_length is not None:
            settings.setdefault("max_len", max_chain_length)
        try:
            return get_searcher(self.searcher, **settings)
        except ValueError as err:
            raise UserError(str(err)) from None

    def resolve(self, num_layers: int, cap: int) -> Chain:
        chain = FixedChain(self.chain).resolve(num_layers, cap)
        if chain != full_chain(num_layers):
            raise UserError(
                f"chain={format_chain(chain)!r} cannot be combined with "
                f"searcher={self.searcher!r}; searches start from the full chain"
            )
        return chain


@dataclass(frozen=True)
class RouterMode:
    """A learned router (``cola_router``) picks each sample's chain from its prompt."""

    router: str  # the router file (router.RouterFile)

    @classmethod
    def from_values(cls, values: dict[str, Any], searcher: str | None) -> RouterMode:
        """From our model_args, where router= is given: the router picks each sample's
        chain, so no searcher and no chain may be given beside it."""
        _outside_search(values, searcher)
        if searcher is not None or values.get("chain") is not None:
            raise UserError(f"router={values['router']} picks each sample's chain; allowed "
                            "without searcher= and chain=")
        if values.get("records") is not None:
            _check_writable(values["records"])
        return cls(values["router"])

    def resolve(self, num_layers: int, cap: int) -> Chain:
        return parse_chain(None, num_layers, cap)  # the model's own chain, between samples


Mode = FixedChain | SearchMode | RouterMode
# A fixed chain or a router takes the search's seed, oracle_metric, oracle_filter, records
# and keep_correct (checked, then unused, as they always were) and refuses its control and
# record_chains (``_outside_search``).


@dataclass(frozen=True)
class ColaConfig:
    """What a cola model does, beside the model itself: how chains run (``engine``) and
    what picks them (``mode``: a fixed chain, a search or a router)."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    mode: Mode = field(default_factory=FixedChain)

    @property
    def search(self) -> SearchMode | None:
        return self.mode if isinstance(self.mode, SearchMode) else None

    @property
    def searcher(self) -> str | None:
        """The searcher's name; None without a search."""
        return self.search.searcher if self.search is not None else None

    @property
    def chain(self) -> str | None:
        """The chain as given (text or a file); None where none was."""
        return None if isinstance(self.mode, RouterMode) else self.mode.chain

    @property
    def router(self) -> str | None:
        return self.mode.router if isinstance(self.mode, RouterMode) else None

    @property
    def oracle(self) -> bool:
        """The gold answer chooses each sample's chain (False for searcher `none`)."""
        return self.search is not None and self.search.oracle

    def resolve(self, num_layers: int) -> tuple[Chain, int]:
        """(the chain, the chain-length cap) for a model of ``num_layers`` layers."""
        cap = self.engine.max_chain_length or 2 * num_layers
        return self.mode.resolve(num_layers, cap), cap

    @classmethod
    def from_model_args(cls, args: Mapping[str, Any], default_searcher: str | None,
                        model_params: set[str]) -> tuple[ColaConfig, dict[str, Any]]:
        """(our config, the model_args left for HFLM). ``model_params`` are HFLM's own
        argument names: lm-eval always passes some (batch_size), so a searcher setting
        of the same name would be ambiguous and is never taken from them."""
        ours = set(_arg_names())
        rest = {k: v for k, v in args.items() if k not in ours}
        values = _normalized({k: v for k, v in args.items() if k in ours and k != "searcher"})
        # lm-eval's Python API parses "searcher=none" into None.
        name = str(args["searcher"] or "none") if "searcher" in args else default_searcher
        settings = _searcher_settings(name, default_searcher, rest, model_params)
        engine = EngineSettings(**{k: values.pop(k) for k in _names(EngineSettings)
                                   if k in values})
        mode: Mode
        if values.get("router") is not None:
            mode = RouterMode.from_values(values, name)
        elif name is not None:
            mode = SearchMode(searcher=name, settings=settings, **values)
        else:
            mode = FixedChain.from_values(values)
        return cls(engine, mode), rest


def _outside_search(values: dict[str, Any], searcher: str | None) -> None:
    """What a fixed chain or a router checks of our model_args: it refuses what only a
    search does, and checks (then leaves unused) the record fields it is given."""
    _check_seed_and_keep(values.get("seed"), values.get("keep_correct", 5))
    _check_chain_text(values.get("chain"))
    _check_choices(values.get("control"), values.get("record_chains", "best"))
    given = [f"{name}={values[name]}" for name, default in
             (("control", None), ("record_chains", "best"))
             if values.get(name, default) != default]
    if searcher is None and given:  # neither searches nor keeps records
        raise UserError(f"{given[0]} needs a searcher; add searcher=<"
                        f"{'|'.join(searcher_names())}> or drop it")


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _arg_names() -> list[str]:
    """Every model_arg of ours (the searcher's settings aside)."""
    names = [n for cls in (EngineSettings, FixedChain, SearchMode, RouterMode)
             for n in _names(cls) if n != "settings"]
    return list(dict.fromkeys(names))


def _searcher_settings(name: str | None, default_searcher: str | None, rest: dict[str, Any],
                       model_params: set[str]) -> dict[str, Any]:
    """The searcher's settings, taken out of ``rest`` (checked against the searcher)."""
    if name is not None and name not in SEARCHERS:
        raise UserError(f"unknown searcher {name!r}; allowed: {', '.join(searcher_names())}")
    if default_searcher is not None and name != default_searcher:
        # cola_mcts with searcher=greedy would run greedy under the name cola_mcts
        raise UserError(f"searcher={name} conflicts with the model cola_{default_searcher},"
                        f" which always searches with {default_searcher}; allowed: "
                        f"searcher={default_searcher} (or no searcher=), or --model "
                        f"cola_hf with searcher={name}")
    all_settings = _setting_names() - model_params
    settings: dict[str, Any] = {}
    if name is None:
        misplaced = sorted(set(rest) & all_settings)
        if misplaced:
            raise UserError(f"setting {misplaced[0]!r} needs a searcher; add searcher=<"
                            f"{'|'.join(searcher_names())}> or drop it")
        return settings
    own = _setting_names(name) - model_params
    defaults = {f.name: f.default for f in fields(SEARCHERS[name].Settings)}
    for key in list(rest):
        if key in own:
            settings[key] = _coerce(key, rest.pop(key), defaults[key])
        elif key in all_settings:
            raise UserError(f"setting {key!r} does not apply to searcher {name!r}; "
                            f"its settings: {', '.join(sorted(own))}")
    return settings


def _normalized(values: dict[str, Any]) -> dict[str, Any]:
    """Our model_args as the config types take them (text from a command line)."""
    if isinstance(values.get("control"), str) and values["control"].lower() == "none":
        values["control"] = None  # as text from a caller that does not parse "none"
    if values.get("records") not in (None, ""):
        values["records"] = Path(str(values["records"]))
    else:
        values.pop("records", None)
    for key in ("max_chain_length", "prefix_cache_bytes", "search_batch", "keep_correct",
                "generation_kv_bytes"):
        if isinstance(values.get(key), float) and values[key].is_integer():
            values[key] = int(values[key])
    return values


def _check_seed_and_keep(seed: Any, keep_correct: Any) -> None:
    if seed is not None:
        _check_int("seed", seed, None, "an integer")
    _check_int("keep_correct", keep_correct, 0, "an integer >= 0")


def _check_chain_text(chain: Any) -> None:
    if isinstance(chain, str) and not chain.strip():
        raise UserError("empty chain=; allowed: a chain such as 0-9+9*2+12-29, "
                        "identity, or a chain file (leave chain= out for the identity chain)")


def _check_choices(control: Any, record_chains: Any) -> None:
    if control is not None and control not in CONTROLS:
        raise UserError(f"bad control {control!r}; allowed: none, {', '.join(CONTROLS)}")
    if record_chains not in RECORD_CHAINS:
        raise UserError(f"bad record_chains {record_chains!r}; allowed: "
                        f"{', '.join(RECORD_CHAINS)}")


def search_seed(given: int | None, run_seed: int | None) -> tuple[int, str]:
    """(the search seed, where it came from): ``seed=`` in model_args wins; else lm-eval's
    seed for the run (``run_seed``: ``--seed``'s first value, None where lm-eval was left at
    its default), so ``--seed`` reseeds the search as it reseeds everything else; else
    ``DEFAULT_SEED``, which keeps the records of runs made without ``--seed``."""
    if given is not None:
        return given, "seed="
    if run_seed is not None:
        return run_seed, "--seed"
    return DEFAULT_SEED, "default"


def cola_arg_names(searcher: str | None) -> list[str]:
    """Our model_args' names (and the searcher's settings): for "did you mean" hints."""
    names = set(_arg_names())
    return sorted(names | (_setting_names(searcher) if searcher else set()))


def unknown_model_arg(name: str, searcher: str | None) -> UserError:
    """The one-line error for a model_arg that nothing accepted."""
    known = cola_arg_names(searcher)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"unknown model argument {name!r}{hint}; allowed: {', '.join(known)}, "
                     "or lm-eval's hf model arguments")


def _setting_names(searcher: str | None = None) -> set[str]:
    names = [searcher] if searcher else list(SEARCHERS)
    return {f.name for n in names for f in fields(SEARCHERS[n].Settings)}


def _coerce(name: str, value: Any, default: Any) -> Any:
    # model_args arrive as text, ints or floats; tuples come as "1+2" (commas would split).
    if isinstance(default, tuple):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (int(value),)
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.replace(",", "+").split("+") if v)
            except ValueError:
                raise UserError(
                    f"bad value for setting '{name}': {value!r} (allowed: e.g. 1+2)"
                ) from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_int(name: str, value: Any, low: int | None, allowed: str) -> None:
    if (not isinstance(value, int) or isinstance(value, bool)
            or (low is not None and value < low)):
        raise UserError(f"bad {name} {value!r}; allowed: {allowed}")


def _check_writable(path: Path) -> None:
    """Fail before the model loads when records cannot be written to ``path``."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing folder is where mkdir would start
    target = path if path.exists() else folder
    if path.is_dir() or not folder.is_dir() or not os.access(target, os.W_OK):
        raise UserError(f"cannot write records to {str(path)!r}; allowed: a file path in a "
                        "writable folder (records=PATH or --output_path)")
