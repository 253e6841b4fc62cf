"""Nested comparison for golden data: exact for everything but floats, which compare to a
stated tolerance (CPUs differ in float rounding; a golden file never pins the last bits)."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import pytest


def differences(a: Any, b: Any, where: str, rtol: float, atol: float,
                optional: Collection[str] = ()) -> list[str]:
    """Every place where ``a`` and ``b`` differ: dicts key by key (a key in ``optional``
    may be on one side only), lists item by item, floats within ``rtol``/``atol``
    (NaN equals NaN), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {k for k in optional if (k in a) != (k in b)}
        out = [f"{where}: {key} only on one side" for key in sorted(keys)
               if key not in a or key not in b]
        for key in sorted(k for k in keys if k in a and k in b):
            out += differences(a[key], b[key], f"{where}.{key}", rtol, atol, optional)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{where}[{i}]", rtol, atol, optional)]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return [] if a == b else [f"{where}: {a!r} != {b!r}"]
        if math.isnan(a) and math.isnan(b):
            return []
        close = a == pytest.approx(b, rel=rtol, abs=atol)
        return [] if close else [f"{where}: {a} != {b} (beyond rel {rtol})"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]
