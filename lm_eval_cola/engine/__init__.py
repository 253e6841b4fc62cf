"""Running a model's layers as a chain: applying a chain to a Hugging Face model
(``apply.py``), per-architecture facts (``architectures.py`` + ``architectures.yaml``), the
fast scoring and decoding paths and their prefix stores, teacher forcing, hidden-state
features, and the runner that picks a path per sample (``runner.py``).

Imports chains, compat's lm-eval surface and errors; never search, harness, deploy, cli or
reports. Nothing is imported here, so ``import lm_eval_cola.engine.x`` loads only ``x``."""
