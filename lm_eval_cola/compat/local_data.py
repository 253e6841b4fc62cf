"""Offline benchmark data: load lm-eval's standard tasks from a local mirror.

No dataset hub is reachable here. When the environment variable ``COLA_DATA_DIR`` names a
directory laid out like ``../shared/data``::

    <COLA_DATA_DIR>/<dataset>/<config>/<split>.jsonl    e.g. gsm8k/main/test.jsonl
    <COLA_DATA_DIR>/<dataset>/<split>.jsonl             (task has no dataset_name) e.g. piqa/

every lm-eval task that reads a Hugging Face dataset loads it from there, with the ``json``
builder, for every model and every entry point (the ``lm_eval`` CLI, ``simple_evaluate``,
``TaskManager``), groups and tags included.

Mechanism: :func:`install` wraps ``lm_eval.api.task.ConfigurableTask.download``, the one method
through which every YAML task (and the Python tasks built on ``ConfigurableTask``) gets its data.
The wrapper reads ``COLA_DATA_DIR`` at call time: unset or empty, it calls lm-eval's own method
unchanged (hub behaviour); set, it maps the task's ``DATASET_PATH`` / ``DATASET_NAME`` to files
(see :func:`candidate_dirs`), loads them with ``datasets.load_dataset("json", data_files=...)``
and records the files in ``task.config.metadata["cola_local_data"]`` (so results show them).
``dataset_path`` itself is left as is: results still name the benchmark, and promptsource
look-ups (``use_prompt``) keep working.

Mapping (data-driven, nothing hard-coded per task). For ``dataset_path`` ``owner/name`` (or bare
``name``), ``dataset_name`` ``cfg`` and ``dataset_kwargs['data_dir']`` ``dd`` it tries, in order:

1. ``<root>/<name>/<cfg>/<dd>/`` (the last path component: ``openai/gsm8k`` -> ``gsm8k``,
   ``allenai/ai2_arc`` -> ``ai2_arc``, ``baber/piqa`` -> ``piqa``, ``aps/super_glue`` ->
   ``super_glue``);
2. ``<root>/<owner>/<name>/<cfg>/<dd>/`` (the full hub id, for mirrors that keep the owner);

with empty parts left out. A task with no ``dataset_name`` also accepts a ``default/`` config
folder, and ``dataset_name: default`` also accepts no config folder (the Hub's name for a
dataset's only config).

Splits: the ones the config names (``test_split``, ``validation_split``, ``training_split``,
the few-shot split) that exist as files are loaded. The split a task is evaluated on
(``test_split``, else ``validation_split``) must exist, or :class:`LocalDataMissingError` (a
``FileNotFoundError`` and a ``UserError``) is raised, with one line naming the file and
``COLA_DATA_DIR``. Any other named split that is missing (e.g. piqa's ``train``) is set to
``None`` in the task config with a warning, so lm-eval uses its own fallback for few-shot
examples (the training, else validation, else test docs, never the evaluated doc itself). A task
whose config names no split at all (Python tasks such as ``squadv2``) gets every ``*.jsonl`` in
its folder.

Left untouched: tasks with ``custom_dataset``, no dataset path, a packaged builder as path
(``json``, ``csv``, ``parquet``, ...), a local path, or their own ``download`` override.
``dataset_kwargs`` meant for the hub (``trust_remote_code``, ``revision``, ``token``, ...) are
dropped; only the generic ``load_dataset`` options in :data:`KEPT_DATASET_KWARGS` are kept.

Network: the ``json`` builder reading local files does not contact the hub, so no HF offline
variable is set; the tests check this with sockets blocked.

Call :func:`install` once ``lm_eval.api.task`` is importable (it imports that module itself; the
start-up hook calls it right after lm-eval's task machinery is imported). It is idempotent, and
refuses (one line) an lm-eval outside the tested range (``compat/version.py``).
The old import path ``lm_eval_cola.local_tasks`` re-exports this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lm_eval_cola.compat.version import check_lm_eval_version
from lm_eval_cola.errors import UserError

__all__ = [
    "ENV_VAR",
    "KEPT_DATASET_KWARGS",
    "LocalDataMissingError",
    "candidate_dirs",
    "data_root",
    "install",
    "is_installed",
    "resolve_split_files",
    "uninstall",
]

ENV_VAR = "COLA_DATA_DIR"
SUFFIX = ".jsonl"
# Generic `datasets.load_dataset` options that mean the same for the `json` builder. Everything
# else in a task's dataset_kwargs is hub- or script-specific and is dropped.
KEPT_DATASET_KWARGS = frozenset(
    {"cache_dir", "keep_in_memory", "num_proc", "download_mode", "verification_mode", "features"}
)
_METADATA_KEY = "cola_local_data"
_MARK = "_cola_local_tasks_original"

logger = logging.getLogger(__name__)


class LocalDataMissingError(UserError, FileNotFoundError):
    """A split file a task needs is not under ``COLA_DATA_DIR``. ``str()`` is one line.

    A :class:`~lm_eval_cola.errors.UserError`, so the package's excepthook prints just that line.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


def data_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """The local data directory from ``COLA_DATA_DIR``, or ``None`` when unset or empty."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _is_hub_id(dataset_path: str) -> bool:
    """True for a hub id (``owner/name`` or ``name``); False for builders and local paths."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    if dataset_path in _PACKAGED_DATASETS_MODULES:
        return False
    if dataset_path.startswith(("/", "./", "../", "~", "hf://")) or "://" in dataset_path:
        return False
    return not Path(dataset_path).expanduser().exists()


def candidate_dirs(
    root: str | os.PathLike[str],
    dataset_path: str,
    dataset_name: str | None = None,
    data_dir: str | None = None,
) -> list[Path]:
    """Folders that may hold ``<split>.jsonl`` for a dataset, most preferred first."""
    root = Path(root)
    parts = [p for p in dataset_path.strip("/").split("/") if p]
    if not parts:
        return []
    bases = [parts[-1]] + (["/".join(parts)] if len(parts) > 1 else [])
    configs: list[str | None] = [dataset_name or None]
    if not dataset_name:
        configs.append("default")
    elif dataset_name == "default":
        configs.append(None)
    tail = [data_dir.strip("/")] if data_dir else []
    dirs: list[Path] = []
    for base in bases:
        for cfg in configs:
            d = root.joinpath(base, *([cfg] if cfg else []), *tail)
            if d not in dirs:
                dirs.append(d)
    return dirs


def resolve_split_files(
    root: str | os.PathLike[str],
    dataset_path: str,
    dataset_name: str | None = None,
    splits: Iterable[str] | None = None,
    required: str | None = None,
    *,
    data_dir: str | None = None,
    task: str | None = None,
) -> dict[str, Path]:
    """Map split name -> local file for the splits in ``splits`` that exist.

    ``splits=None`` (or empty) takes every ``*.jsonl`` in the folder. The folder is the first of
    :func:`candidate_dirs` that holds ``required`` (or, without ``required``, any wanted split).
    Raises :class:`LocalDataMissingError` when ``required`` is missing, or when nothing is found.
    """
    root = Path(root)
    wanted = list(dict.fromkeys(s for s in (splits or ()) if s))
    if required and required not in wanted:
        wanted.insert(0, required)
    dirs = candidate_dirs(root, dataset_path, dataset_name, data_dir)

    def files_in(d: Path) -> dict[str, Path]:
        if wanted:
            return {s: d / f"{s}{SUFFIX}" for s in wanted if (d / f"{s}{SUFFIX}").is_file()}
        return {p.name[: -len(SUFFIX)]: p for p in sorted(d.glob(f"*{SUFFIX}")) if p.is_file()}

    for d in dirs:
        found = files_in(d)
        if found and (required is None or required in found):
            return found

    looked = (
        [d / f"{required}{SUFFIX}" for d in dirs]
        if required
        else [d / (f"{wanted[0]}{SUFFIX}" if len(wanted) == 1 else f"*{SUFFIX}") for d in dirs]
    )
    what = f"split '{required}'" if required else "any split file"
    who = f"task '{task}' " if task else ""
    also = f" (also tried {', '.join(map(str, looked[1:]))})" if len(looked) > 1 else ""
    hint = "" if root.is_dir() else f"; {ENV_VAR} is not a directory"
    first = looked[0] if looked else root
    raise LocalDataMissingError(
        f"{ENV_VAR}={root}: {who}needs {what} of dataset "
        f"'{dataset_path}'{f' / {dataset_name}' if dataset_name else ''}, "
        f"but {first} does not exist{also}{hint}",
        first if looked else None,
    )


def _local_download(task: Any, root: Path, dataset_kwargs: Mapping[str, Any] | None) -> None:
    """Load ``task.dataset`` from ``root``; trim split names whose file is missing."""
    import datasets

    cfg = task.config
    kwargs = dict(dataset_kwargs or {})
    fewshot_cfg = getattr(cfg, "fewshot_config", None)
    fewshot_split = getattr(fewshot_cfg, "split", None) or cfg.fewshot_split
    roles = {
        "test_split": cfg.test_split,
        "validation_split": cfg.validation_split,
        "training_split": cfg.training_split,
        "fewshot_split": fewshot_split,
    }
    required = cfg.test_split or cfg.validation_split
    files = resolve_split_files(
        root,
        task.DATASET_PATH,
        task.DATASET_NAME,
        [s for s in roles.values() if s],
        required,
        data_dir=kwargs.get("data_dir"),
        task=cfg.task,
    )
    folder = next(iter(files.values())).parent
    for role, split in roles.items():
        if split and split not in files:
            logger.warning(
                "%s: task '%s' has no local %s (%s not found); %s set to None, "
                "lm-eval falls back to its default few-shot source",
                ENV_VAR,
                cfg.task,
                role,
                folder / f"{split}{SUFFIX}",
                role,
            )
            if role == "fewshot_split":
                cfg.fewshot_split = None
                if fewshot_cfg is not None:
                    fewshot_cfg.split = None
            else:
                setattr(cfg, role, None)
    dropped = sorted(set(kwargs) - KEPT_DATASET_KWARGS)
    if dropped:
        logger.debug("%s: task '%s': dropped dataset_kwargs %s", ENV_VAR, cfg.task, dropped)
    kept = {k: v for k, v in kwargs.items() if k in KEPT_DATASET_KWARGS}
    data_files = {split: str(path) for split, path in files.items()}
    task.dataset = datasets.load_dataset("json", data_files=data_files, **kept)
    if not isinstance(cfg.metadata, dict):
        cfg.metadata = {} if cfg.metadata is None else {"_metadata": cfg.metadata}
    cfg.metadata[_METADATA_KEY] = data_files
    logger.info("%s: task '%s' loads %s", ENV_VAR, cfg.task, data_files)


def _wants_local(task: Any) -> bool:
    cfg = task.config
    if callable(getattr(cfg, "custom_dataset", None)):
        return False
    path = getattr(task, "DATASET_PATH", None)
    return isinstance(path, str) and bool(path) and _is_hub_id(path)


def install() -> bool:
    """Patch lm-eval so hub datasets load from ``COLA_DATA_DIR`` when it is set.

    Returns True when it patched, False when already installed (idempotent). Without the
    environment variable the patched method calls lm-eval's own one, so behaviour is unchanged.
    Raises ``UnsupportedLmEvalError`` when the installed lm-eval is outside the tested range.
    """
    from lm_eval.api.task import ConfigurableTask

    if is_installed():
        return False
    check_lm_eval_version()
    original = ConfigurableTask.download

    # Why a patch: every lm-eval task, whichever model, CLI or API, group or tag, gets its data
    # through ConfigurableTask.download(dataset_kwargs). Wrapping that one method reaches all of
    # them with no --include_path and no generated YAML that would shadow built-in tasks.
    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        root = data_root()
        if root is not None and _wants_local(self):
            return _local_download(self, root, dataset_kwargs)
        try:
            return original(self, dataset_kwargs, **kwargs)
        except ConnectionError as err:  # offline, and no local copy named
            if root is not None or not _wants_local(self):
                raise
            raise UserError(
                f"task {getattr(self.config, 'task', '?')!r}: {err}; to read a local copy, "
                "set COLA_DATA_DIR=<folder with <dataset>/<config>/<split>.jsonl>"
            ) from None

    download.__doc__ = original.__doc__
    download.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(download, _MARK, original)
    ConfigurableTask.download = download  # type: ignore[method-assign]
    return True


def is_installed() -> bool:
    """Whether :func:`install` has patched ``ConfigurableTask.download``."""
    from lm_eval.api.task import ConfigurableTask

    return hasattr(ConfigurableTask.__dict__.get("download"), _MARK)


def uninstall() -> bool:
    """Undo :func:`install`. Returns False when it was not installed."""
    from lm_eval.api.task import ConfigurableTask

    patched = ConfigurableTask.__dict__.get("download")
    if not hasattr(patched, _MARK):
        return False
    ConfigurableTask.download = getattr(patched, _MARK)  # type: ignore[method-assign]
    return True
