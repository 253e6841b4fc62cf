"""What the package's start-up hook (the installed ``.pth`` file) does, done explicitly for
tests that run lm-eval in this process: the local benchmark data, the evaluator hook and the
``cola_*`` lm-eval models registered."""

from __future__ import annotations


def install_cola() -> None:
    """Idempotent, as the start-up hook is: every test that needs it may call it."""
    from lm_eval_cola.compat import hooks, local_data

    local_data.install()
    hooks.install_evaluator_hook()
    import lm_eval_cola.harness.models  # noqa: F401  (registers the cola_* models)
