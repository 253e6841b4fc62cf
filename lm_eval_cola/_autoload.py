"""Start-up hook: makes ``lm_eval --model cola_hf ...`` work without any import by the user.

lm-eval 0.4.13 has no plugin entry points for models, so this package installs a one-line
``.pth`` file into site-packages (``lm_eval_cola.pth``) that imports this module at every
interpreter start. This module must therefore stay tiny: it imports nothing but ``sys`` and
``os`` (both already loaded by then; not even ``__future__``) and never imports lm_eval, torch
or transformers itself, nor the rest of the package.

It puts a finder at the front of ``sys.meta_path`` that does nothing until one of the modules
in ``_CALLBACKS`` is imported by someone else. It then lets the normal import run and, right
after the module's code has executed, calls the callback named for it, with the module. What
the callbacks do (register our models, install the local-data loader and the evaluator hooks)
is the compatibility layer's business: ``lm_eval_cola/compat/registration.py``.

The finder removes itself from ``sys.meta_path`` once every callback has run. A callback that
fails is logged, never raised: an unrelated program must not break because of this hook.

Set ``LM_EVAL_COLA_NO_AUTOLOAD=1`` to disable the hook.
"""

import os
import sys

DISABLE_ENV = "LM_EVAL_COLA_NO_AUTOLOAD"
_REGISTRATION = "lm_eval_cola.compat.registration"


def _logger():
    import logging  # lm_eval has imported logging by the time any callback runs

    return logging.getLogger("lm_eval_cola")


def _call_optional(module_name: str, function: str, *args) -> None:
    """Call ``module_name.function(*args)``; a missing module is fine (debug), any other error
    propagates (and is logged by ``_run_callback``)."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name:
            _logger().debug("%s not available, skipping %s()", module_name, function)
            return
        raise
    getattr(module, function)(*args)


# lm-eval module -> the function (in compat/registration.py) to call right after it executed,
# or any callable taking the module. Order matters: the registry before tasks and the
# evaluator, as an import would run them.
_CALLBACKS = {
    "lm_eval.api.registry": "on_registry",
    "lm_eval.tasks": "on_tasks",
    "lm_eval.evaluator": "on_evaluator",
}


def _run_callback(name: str, module) -> None:
    callback = _CALLBACKS.get(name)
    if callback is None:
        return
    try:
        if isinstance(callback, str):
            _call_optional(_REGISTRATION, callback, module)
        else:
            callback(module)
    except Exception:  # never break the program that imported lm_eval
        _logger().warning("lm_eval_cola: start-up hook for %s failed", name, exc_info=True)


class _LoaderProxy:
    """Wraps a module's real loader: runs our callback right after the module's code."""

    def __init__(self, loader, finder: "_PostImportFinder") -> None:
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module) -> None:
        # Put the real loader back first, so nothing keeps a reference to this proxy.
        module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._loader.exec_module(module)
        self._finder.done(module.__name__, module)


class _PostImportFinder:
    """A ``sys.meta_path`` finder that never finds anything itself; it only wraps loaders."""

    def __init__(self, names) -> None:
        self._pending = set(names)
        self._busy: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._pending or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        except Exception:
            return None  # let the regular machinery find it (and report any error itself)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _LoaderProxy(spec.loader, self)
        return spec

    def done(self, name: str, module) -> None:
        if name not in self._pending:
            return
        self._pending.discard(name)
        try:
            _run_callback(name, module)
        finally:
            if not self._pending:
                self.remove()

    def remove(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    # ``importlib.invalidate_caches()`` calls this on every finder.
    def invalidate_caches(self) -> None:
        pass


def install() -> "_PostImportFinder | None":
    """Install the finder (once). Modules already imported get their callback now."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return None
    for finder in sys.meta_path:
        if isinstance(finder, _PostImportFinder):
            return finder
    finder = _PostImportFinder(_CALLBACKS)
    sys.meta_path.insert(0, finder)
    # Order matters: the registry before tasks and the evaluator, as an import would run them.
    for name in _CALLBACKS:
        module = sys.modules.get(name)
        if module is not None:
            finder.done(name, module)
    return finder


try:
    install()
except Exception:  # pragma: no cover - a start-up hook must never break the interpreter
    pass
