"""The action space the searchers walk: one action turns a chain into a neighbouring chain.

Actions, on chain POSITIONS (a chain is a tuple of layer indices, see `chains/syntax.py`):

- `skip` k at i: drop positions i..i+k-1;
- `loop` k, r at i: run the block of positions i..i+k-1 r more times right after itself
  (block 10-12 looped twice more: ..., 10, 11, 12, 10, 11, 12, 10, 11, 12, ...);
- `swap` k at i: exchange the adjacent blocks i..i+k-1 and i+k..i+2k-1.

`ActionSpace.moves(chain)` lists the distinct chains one action away, each with the first
action (in the order below) that makes it, in a fixed order: skips (k ascending, then i),
loops (k, then r, then i), swaps (k, then i); only chains that are non-empty, within
[lo, hi] and (with `max_copies`) use no layer more than `max_copies` times are kept.

The paper's space ("Skip a Layer or Loop it?", Table 1) is `actions` skip / loop /
skip+loop with block sizes k and loop repeats r in 1..4. The older space of this project,
`skip_sizes` / `repeat_sizes` ("repeat k" = k extra copies of ONE position), is the same
space with skip sizes `skip_sizes`, loop block size 1 and r in `repeat_sizes`:
`ActionSpace.legacy(...)` builds it, and its moves are exactly `base.neighbours`.

Pure Python; no searcher state. The parsers accept what model_args deliver: "skip+loop",
"1+2+3+4" (or "1-4"), a single int, or tuples/lists of those.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.chains.syntax import Chain

ACTION_NAMES = ("skip", "loop", "swap")  # the canonical order of `actions`
PAPER_SIZES = (1, 2, 3, 4)  # k and r in the paper's Table 1


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"bad value for setting '{name}': {value!r} (allowed: {allowed})")


def parse_actions(name: str, value: Any) -> tuple[str, ...]:
    """"skip+loop", ("skip", "loop"), ... -> the canonical tuple, e.g. ("skip", "loop")."""
    allowed = "a non-empty subset of skip, loop, swap joined by +, e.g. skip+loop"
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(",", "+").split("+") if p.strip()]
    elif isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        parts = [p.strip() for p in value]
    else:
        raise _bad(name, value, allowed)
    if not parts or any(p not in ACTION_NAMES for p in parts):
        raise _bad(name, value, allowed)
    return tuple(a for a in ACTION_NAMES if a in parts)


def parse_sizes(name: str, value: Any) -> tuple[int, ...]:
    """1, "1+2+3+4", "1-4", (1, 2), ["1", "2"] -> the sorted distinct ints, each >= 1."""
    allowed = "ints >= 1, e.g. 1+2+3+4 (or 1-4), or a non-empty tuple of them"
    items: list[Any]
    if isinstance(value, str):
        items = [p.strip() for p in value.replace(",", "+").split("+") if p.strip()]
    elif isinstance(value, tuple | list):
        items = list(value)
    else:
        items = [value]
    out: list[int] = []
    for item in items:
        if isinstance(item, str) and "-" in item[1:]:
            a, _, b = item.partition("-")
            lo, hi = _int(name, a, value, allowed), _int(name, b, value, allowed)
            if hi < lo:
                raise _bad(name, value, allowed)
            out += range(lo, hi + 1)
        else:
            out.append(_int(name, item, value, allowed))
    if not out or min(out) < 1:
        raise _bad(name, value, allowed)
    return tuple(sorted(set(out)))


def _int(name: str, item: Any, value: Any, allowed: str) -> int:
    if isinstance(item, bool):
        raise _bad(name, value, allowed)
    if isinstance(item, int):
        return item
    if isinstance(item, float) and item.is_integer():
        return int(item)
    if isinstance(item, str) and item.strip().isdigit():
        return int(item)
    raise _bad(name, value, allowed)


@dataclass(frozen=True)
class Action:
    """One edit of a chain at a position; `key` names it by the LAYERS it touches."""

    kind: str  # skip | loop | swap
    start: int  # first position of the block
    size: int  # k
    repeats: int = 0  # r, for a loop

    def apply(self, chain: Chain) -> Chain:
        i, k = self.start, self.size
        if self.kind == "skip":
            return chain[:i] + chain[i + k :]
        if self.kind == "loop":
            return chain[: i + k] + chain[i : i + k] * self.repeats + chain[i + k :]
        return chain[:i] + chain[i + k : i + 2 * k] + chain[i : i + k] + chain[i + 2 * k :]

    def key(self, chain: Chain) -> tuple:
        """The same edit wherever it is applied: (kind, the block's layers, r or the swapped
        block's layers). MCTS's deep mode shares what it learns of an edit by this key."""
        i, k = self.start, self.size
        block = chain[i : i + k]
        if self.kind == "swap":
            return ("swap", block, chain[i + k : i + 2 * k])
        return (self.kind, block, self.repeats)

    def describe(self, chain: Chain) -> str:
        """e.g. "loop 10-12 x2 more": layer numbers as the chain holds them."""
        block = self.key(chain)[1]
        text = "+".join(str(x) for x in block)
        if len(block) > 1 and block == tuple(range(block[0], block[0] + len(block))):
            text = f"{block[0]}-{block[-1]}"
        if self.kind == "loop":
            return f"loop {text} x{self.repeats} more"
        return f"{self.kind} {text}"


@dataclass(frozen=True)
class Move:
    action: Action
    chain: Chain  # the chain the action makes


@dataclass(frozen=True)
class ActionSpace:
    """Which actions a searcher may take, and the bounds every resulting chain obeys."""

    skip_sizes: tuple[int, ...]  # k of skip; () for none
    loop_sizes: tuple[int, ...]  # k of loop; () for none
    loop_repeats: tuple[int, ...]  # r of loop
    swap_sizes: tuple[int, ...]  # k of swap; () for none
    lo: int = 1
    hi: int = 1 << 30
    max_copies: int | None = None  # no layer more often than this in a chain; None: any

    @classmethod
    def legacy(
        cls, skip_sizes: Iterable[int], repeat_sizes: Iterable[int], lo: int, hi: int, **kw: Any
    ) -> "ActionSpace":
        """The older skip/repeat space: "repeat k" is a loop of one position, r = k."""
        return cls(tuple(skip_sizes), (1,), tuple(repeat_sizes), (), lo, hi, **kw)

    @classmethod
    def of(
        cls,
        actions: Iterable[str],
        block_sizes: Iterable[int],
        loop_repeats: Iterable[int],
        lo: int,
        hi: int,
        **kw: Any,
    ) -> "ActionSpace":
        """The paper's space: every named action with every block size k."""
        actions, sizes = tuple(actions), tuple(block_sizes)
        return cls(
            sizes if "skip" in actions else (),
            sizes if "loop" in actions else (),
            tuple(loop_repeats) if "loop" in actions else (),
            sizes if "swap" in actions else (),
            lo,
            hi,
            **kw,
        )

    def with_sizes(self, sizes: tuple[int, ...]) -> "ActionSpace":
        """The same actions with block sizes `sizes` (where the action is allowed)."""
        return ActionSpace(
            sizes if self.skip_sizes else (),
            sizes if self.loop_sizes else (),
            self.loop_repeats,
            sizes if self.swap_sizes else (),
            self.lo,
            self.hi,
            self.max_copies,
        )

    def skips_only(self) -> "ActionSpace":
        return ActionSpace(self.skip_sizes, (), (), (), self.lo, self.hi, self.max_copies)

    def actions(self, chain: Chain) -> list[Action]:
        """Every action on `chain` whose result has an allowed length, in the fixed order
        (actions with the same result included)."""
        n, lo, hi = len(chain), self.lo, self.hi
        out = [
            Action("skip", i, k)
            for k in self.skip_sizes
            if lo <= n - k <= hi
            for i in range(n - k + 1)
        ]
        out += [
            Action("loop", i, k, r)
            for k in self.loop_sizes
            for r in self.loop_repeats
            if lo <= n + k * r <= hi
            for i in range(n - k + 1)
        ]
        if lo <= n <= hi:
            out += [Action("swap", i, k) for k in self.swap_sizes for i in range(n - 2 * k + 1)]
        return out

    def allows(self, chain: Chain) -> bool:
        if not chain or not self.lo <= len(chain) <= self.hi:
            return False
        if self.max_copies is not None:
            counts: dict[int, int] = {}
            for layer in chain:
                counts[layer] = counts.get(layer, 0) + 1
                if counts[layer] > self.max_copies:
                    return False
        return True

    def moves(self, chain: Chain) -> list[Move]:
        """The distinct chains one action away (not `chain` itself), in the fixed order,
        each with the first action that makes it."""
        first: dict[Chain, Action] = {}
        for action in self.actions(chain):
            new = action.apply(chain)
            if new not in first:
                first[new] = action
        first.pop(chain, None)
        return [Move(a, c) for c, a in first.items() if self._copies_ok(c)]

    def _copies_ok(self, chain: Chain) -> bool:
        return bool(chain) and (self.max_copies is None or self.allows(chain))

    def chains(self, chain: Chain) -> list[Chain]:
        """`moves` without the actions (faster): the same chains in the same order."""
        n, lo, hi = len(chain), self.lo, self.hi
        out: list[Chain] = []
        for k in self.skip_sizes:
            if lo <= n - k <= hi:
                out += [chain[:i] + chain[i + k :] for i in range(n - k + 1)]
        for k in self.loop_sizes:
            for r in self.loop_repeats:
                if lo <= n + k * r <= hi:
                    out += [
                        chain[: i + k] + chain[i : i + k] * r + chain[i + k :]
                        for i in range(n - k + 1)
                    ]
        if lo <= n <= hi:
            for k in self.swap_sizes:
                out += [
                    chain[:i] + chain[i + k : i + 2 * k] + chain[i : i + k] + chain[i + 2 * k :]
                    for i in range(n - 2 * k + 1)
                ]
        unique = dict.fromkeys(out)
        unique.pop(chain, None)
        return [c for c in unique if self._copies_ok(c)]
