"""Chains of layers as data: the chain syntax (``syntax.py``: parse, format, validate) and
chain files (``files.py``: a chain with its provenance, as ``calibrate`` and ``prune`` write
it). The bottom layer: imports nothing but the standard library and ``errors``."""
