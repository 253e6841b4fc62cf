"""Our task folder (``lm_eval_cola/tasks``) on every lm-eval TaskManager's task path.

lm-eval 0.4.13 has no plugin entry point for tasks: a task folder is found only through
``TaskManager(include_path=...)`` (``--include_path`` on the CLI). :func:`install` wraps
``lm_eval.tasks.manager.TaskManager.__init__`` so that every TaskManager, whoever builds it
(the ``lm_eval`` CLI, ``simple_evaluate``, ``lm-eval-cola compare``, the oracle's own loader),
gets our folder as the *first* entry of ``include_path``. So ``lm_eval --tasks cola_paper``
works with no ``--include_path``, and a user's own ``--include_path`` still works: it comes
after ours, and lm-eval lets later paths override earlier ones on a name clash (with a
warning), so a user's task called ``cola_arc_easy`` replaces ours, never the reverse.

Only the public ``include_path`` argument is touched: a TaskManager built with
``include_defaults=False`` (a caller asking for its own folders only) is left alone, and the
instance keeps the caller's own ``include_path`` value. Idempotent; :func:`uninstall` undoes it.
The start-up hook (``registration.on_tasks``) installs it; ``LM_EVAL_COLA_NO_AUTOLOAD=1`` turns
it off with the rest; then pass the folder yourself, ``--include_path <tasks_dir()>``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any

from lm_eval_cola.compat.version import check_lm_eval_version

logger = logging.getLogger(__name__)

TASK_MANAGER_INIT = "lm_eval.tasks.manager:TaskManager.__init__"
_MARK = "_cola_task_path_original"


def tasks_dir() -> Path:
    """The folder of lm-eval YAML tasks shipped in the package (``lm_eval_cola/tasks``)."""
    return Path(__file__).resolve().parents[1] / "tasks"


def _as_list(include_path: Any) -> list[Any]:
    if include_path is None or include_path == "":
        return []
    if isinstance(include_path, list | tuple):
        return list(include_path)
    return [include_path]


def with_cola_tasks(include_path: Any) -> list[Any]:
    """``include_path`` as a list with our task folder first (once, whatever the spelling)."""
    ours = tasks_dir()
    paths = _as_list(include_path)
    rest = [p for p in paths if Path(str(p)).expanduser().resolve() != ours]
    return [str(ours), *rest]


def install() -> bool:
    """Patch ``TaskManager.__init__`` (see the module doc). Returns False when already done.
    Raises ``UnsupportedLmEvalError`` when the installed lm-eval is outside the tested range."""
    from lm_eval.tasks.manager import TaskManager

    original = TaskManager.__init__
    if hasattr(original, _MARK):
        return False
    check_lm_eval_version()
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments.get("include_path")
        if bound.arguments.get("include_defaults", True):
            bound.arguments["include_path"] = with_cola_tasks(given)
        original(*bound.args, **bound.kwargs)
        self.include_path = given  # what the caller asked for, as lm-eval would keep it

    setattr(__init__, _MARK, original)
    TaskManager.__init__ = __init__  # type: ignore[method-assign]
    logger.debug("lm-eval task path: %s added to every TaskManager", tasks_dir())
    return True


def is_installed() -> bool:
    from lm_eval.tasks.manager import TaskManager

    return hasattr(TaskManager.__dict__.get("__init__"), _MARK)


def uninstall() -> bool:
    """Undo :func:`install`. Returns False when it was not installed."""
    from lm_eval.tasks.manager import TaskManager

    patched = TaskManager.__dict__.get("__init__")
    if not hasattr(patched, _MARK):
        return False
    TaskManager.__init__ = getattr(patched, _MARK)  # type: ignore[method-assign]
    return True
