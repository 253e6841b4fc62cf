"""The lm-eval version gate.

The compatibility layer patches lm-eval's evaluator and task loader and relies on a few of its
private names (``lm_eval_private.PRIVATE_SYMBOLS``). Those are tested with lm-eval 0.4.13, the
version ``constraints.txt`` pins. The accepted range is ``>=0.4.13,<0.5``, the same as the
package's dependency in ``pyproject.toml``: later 0.4 patch releases keep the 0.4 API (and
``tests/test_compat.py`` checks every private name against whatever is installed), while 0.5
may change the registry, evaluator and task API this layer patches. Outside the range our
models and hooks refuse with one line instead of failing somewhere inside lm-eval.
"""

from __future__ import annotations

from lm_eval_cola.errors import UserError

TESTED_LM_EVAL = "0.4.13"  # constraints.txt
SUPPORTED_RANGE = ">=0.4.13,<0.5"  # PEP 440: excludes 0.4.13's and 0.5's pre-releases


class UnsupportedLmEvalError(UserError):
    """The installed lm-eval is outside the range this package is tested with."""


def installed_lm_eval_version() -> str | None:
    """The installed lm-eval's version (from its package metadata), or None when absent."""
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return None


def lm_eval_version_problem(version: str | None) -> str | None:
    """One line saying why lm-eval ``version`` (None: not installed) is unsupported, or None
    when it is fine."""
    # packaging is a dependency of transformers, datasets and accelerate: always there.
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    if version is None:
        return (f"lm-eval is not installed; lm-eval-cola needs lm-eval{SUPPORTED_RANGE} "
                f"(tested with {TESTED_LM_EVAL}): pip install -c constraints.txt lm-eval")
    try:
        # prereleases=True: a dev build inside the range is fine; the bounds' own
        # pre-releases stay out (PEP 440).
        inside = SpecifierSet(SUPPORTED_RANGE).contains(version, prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        inside = False
    if not inside:
        return (f"lm-eval {version} is installed, but lm-eval-cola supports "
                f"lm-eval{SUPPORTED_RANGE} (tested with {TESTED_LM_EVAL}); install "
                f"lm-eval=={TESTED_LM_EVAL} (pip install -c constraints.txt lm-eval)")
    return None


def check_lm_eval_version() -> str:
    """Return the installed lm-eval's version, or raise :class:`UnsupportedLmEvalError` (one
    line naming it and the supported range) when it is outside ``SUPPORTED_RANGE``."""
    version = installed_lm_eval_version()
    problem = lm_eval_version_problem(version)
    if problem is not None:
        raise UnsupportedLmEvalError(problem)
    return str(version)
