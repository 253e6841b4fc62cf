"""Searcher settings: one frozen dataclass per searcher, checked (and normalised) on
construction, plus the checks they share.

Field defaults are the behaviour a searcher had before a setting existed: a new setting
defaults to None ("as before") wherever a value would change what is asked, so old model_args
give the same chains. `protocol` names a preset of `protocols.py`; `Searcher.__init__`
applies it before the explicit settings (which win) and it stays in the settings, so records
show it.
"""

import math
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.search.searchers.actions import (
    PAPER_SIZES,
    ActionSpace,
    parse_actions,
    parse_sizes,
)
from lm_eval_cola.search.searchers.protocols import PROTOCOLS


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"bad value for setting '{name}': {value!r} (allowed: {allowed})")


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    # bool is an int subclass; `budget=True` is a mistake, not 1.
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if not ok or (hi is not None and value > hi):
        allowed = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"
        raise _bad(name, value, allowed)
    return value


def check_float(name: str, value: Any, lo: float, hi: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        allowed = f"a finite number >= {lo}" if hi is None else f"a number in [{lo}, {hi}]"
        raise _bad(name, value, allowed)
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "True or False")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _bad(name, value, " or ".join(choices))
    return value


def check_sizes(name: str, value: Any) -> tuple[int, ...]:
    allowed = "a non-empty tuple of ints >= 1"
    if not isinstance(value, tuple | list) or not value:
        raise _bad(name, value, allowed)
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _bad(name, value, allowed)
    return tuple(sorted(set(value)))  # canonical form, so records compare equal


@dataclass(frozen=True)
class SearchSettings:
    """Settings every searcher has. Subclasses add theirs and extend `check`."""

    budget: int = 200  # distinct chain evaluations per sample, the full chain included
    min_len: int = 1
    max_len: int | None = None  # None: 2 * num_layers

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        check_int("budget", self.budget, 1)
        check_int("min_len", self.min_len, 1)
        if self.max_len is not None:
            check_int("max_len", self.max_len, self.min_len)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen field in check()

    def length_bounds(self, num_layers: int) -> tuple[int, int]:
        hi = 2 * num_layers if self.max_len is None else self.max_len
        if self.min_len > hi:
            raise ValueError(f"min_len {self.min_len} > max_len {hi} for {num_layers} layers")
        return self.min_len, hi


@dataclass(frozen=True)
class ActionSettings(SearchSettings):
    """The action space (see actions.py) of mcts, random and greedy, and the preset.

    `actions`, `block_sizes`, `loop_repeats` all None (the default): each searcher's older
    space, unchanged (mcts/random: `skip_sizes`, `repeat_sizes`; greedy: skip 1 and repeat
    1). Any of them given: the paper's space, the others defaulting to skip+loop, k in 1..4,
    r in 1..4.
    """

    protocol: str | None = None  # a preset of protocols.py, applied before explicit settings
    actions: tuple[str, ...] | None = None  # subset of skip, loop, swap ("skip+loop")
    block_sizes: tuple[int, ...] | None = None  # k: positions per skipped/looped/swapped block
    loop_repeats: tuple[int, ...] | None = None  # r: extra runs of a looped block
    max_copies: int | None = None  # no layer more often than this in a chain; None: any
    # W: at most this many chains a search asks at once (one yield), so a batched forward
    # holds up to W rows of a sample; `budget` keeps its meaning. 1 (mcts, random): one chain
    # a round, the exact asks of before the setting. None (greedy only, its default): a
    # whole pass at once, as before. How each searcher fills a round: its module docstring
    # (mcts: parallel.py).
    parallel: int | None = 1

    def check(self) -> None:
        super().check()
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise _bad("protocol", self.protocol, ", ".join(sorted(PROTOCOLS)))
        self.check_parallel()
        if self.paper_space:
            actions = self.actions if self.actions is not None else ("skip", "loop")
            self._set("actions", parse_actions("actions", actions))
            for name in ("block_sizes", "loop_repeats"):
                value = getattr(self, name)
                self._set(name, parse_sizes(name, PAPER_SIZES if value is None else value))
        if self.max_copies is not None:
            check_int("max_copies", self.max_copies, 1)

    def check_parallel(self) -> None:
        check_int("parallel", self.parallel, 1)

    @property
    def paper_space(self) -> bool:
        return any(v is not None for v in (self.actions, self.block_sizes, self.loop_repeats))

    def legacy_space(self, lo: int, hi: int) -> ActionSpace:
        """The space when no new action setting is given (greedy: skip 1, repeat 1)."""
        return ActionSpace.legacy((1,), (1,), lo, hi, max_copies=self.max_copies)

    def action_space(self, num_layers: int) -> ActionSpace:
        lo, hi = self.length_bounds(num_layers)
        if not self.paper_space:
            return self.legacy_space(lo, hi)
        assert self.actions is not None and self.block_sizes is not None
        assert self.loop_repeats is not None
        return ActionSpace.of(
            self.actions, self.block_sizes, self.loop_repeats, lo, hi, max_copies=self.max_copies
        )


@dataclass(frozen=True)
class EarlyStopSettings(ActionSettings):
    """Settings of the searchers that walk the action space with the paper's early stop
    (mcts, random). `skip_sizes` / `repeat_sizes` are the older space's, used when no
    `actions` / `block_sizes` / `loop_repeats` is given."""

    skip_sizes: tuple[int, ...] = (1, 2)  # remove this many consecutive positions
    repeat_sizes: tuple[int, ...] = (1,)  # insert this many extra copies of one position
    early_stop: bool = True
    min_shorter: int = 2

    def check(self) -> None:
        super().check()
        self._set("skip_sizes", check_sizes("skip_sizes", _sizes("skip_sizes", self.skip_sizes)))
        self._set("repeat_sizes", check_sizes("repeat_sizes", _sizes("repeat_sizes",
                                                                      self.repeat_sizes)))
        check_bool("early_stop", self.early_stop)
        check_int("min_shorter", self.min_shorter, 1)
        if self.paper_space and (self.skip_sizes, self.repeat_sizes) != ((1, 2), (1,)):
            raise ValueError(
                "skip_sizes/repeat_sizes belong to the older action space; with actions, "
                "block_sizes or loop_repeats use block_sizes and loop_repeats instead"
            )

    def legacy_space(self, lo: int, hi: int) -> ActionSpace:
        return ActionSpace.legacy(
            self.skip_sizes, self.repeat_sizes, lo, hi, max_copies=self.max_copies
        )


def _sizes(name: str, value: Any) -> Any:
    """Text and single ints (as model_args may give them) to a tuple; the rest unchanged so
    `check_sizes` names the bad value."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            return parse_sizes(name, value)
        except ValueError:
            return value
    return value
