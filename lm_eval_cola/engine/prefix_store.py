"""The store of values after chain prefixes that the fast paths reuse (``fast.py`` keeps
hidden states after each prefix, ``fast_generate.py`` each position's KV-cache slot too)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain

DEFAULT_CACHE_BYTES = 1 << 30


class PrefixStore:
    """Values after chain prefixes, least-recently-used out past `max_bytes`.

    ``chained``: a prefix is stored only while every shorter prefix's entry is (generation
    replays each position's KV-cache slot, ``run``; the log-likelihood scorer goes on from
    the longest stored prefix, and a chain's start serves every chain that shares it).
    Eviction then takes the least recently used entry that no stored longer prefix
    extends, so a stored chain always keeps its start and loses its end first; LRU over all
    entries would drop the first positions (the oldest) and with them every longer prefix."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, chained: bool = False):
        self.max_bytes = max_bytes
        self.chained = chained
        self.bytes = 0
        self._items: OrderedDict[Chain, Any] = OrderedDict()
        self._extended: dict[Chain, int] = {}  # chained: stored one-longer prefixes

    @staticmethod
    def _size(value: Any) -> int:
        tensors = value if isinstance(value, tuple | list) else (value,)
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    def longest(self, chain: Chain) -> tuple[int, Any]:
        for k in range(len(chain), 0, -1):
            value = self._items.get(chain[:k])
            if value is not None:
                self._items.move_to_end(chain[:k])
                return k, value
        return 0, None

    def run(self, chain: Chain) -> list[Any]:
        """The stored values of ``chain[:1]``, ``chain[:2]``, ... up to the first prefix
        not stored (what replaying needs: every position's own entry)."""
        values = []
        for k in range(1, len(chain) + 1):
            value = self._items.get(chain[:k])
            if value is None:
                break
            values.append(value)
        for k in range(len(values), 0, -1):  # shorter prefixes the more recent
            self._items.move_to_end(chain[:k])
        return values

    def put(self, prefix: Chain, value: Any) -> None:
        if prefix in self._items:
            return
        size = self._size(value)
        if size > self.max_bytes:
            return
        if self.chained and len(prefix) > 1 and prefix[:-1] not in self._items:
            return  # unusable: its shorter prefix is gone
        self._items[prefix] = value
        self.bytes += size
        if self.chained and len(prefix) > 1:
            self._extended[prefix[:-1]] = self._extended.get(prefix[:-1], 0) + 1
        while self.bytes > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        victim = next(iter(self._items))
        if self.chained:
            victim = next(k for k in self._items if not self._extended.get(k))
        old = self._items.pop(victim)
        self.bytes -= self._size(old)
        if self.chained and len(victim) > 1:
            parent = victim[:-1]
            self._extended[parent] -= 1
            if not self._extended[parent]:
                del self._extended[parent]
