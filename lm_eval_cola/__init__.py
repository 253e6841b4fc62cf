"""lm-eval-cola: chains of layers (CoLa) for lm-evaluation-harness.

Kept import-light on purpose: this module is imported by the start-up hook, so
it must not pull in torch, transformers or lm_eval.
"""

__version__ = "0.1.0"
