"""Find and read lm-eval results files and the cola records files behind them.

Everything a report shows comes from what a run wrote: whether a run is an oracle
(``config["cola_oracle"]``), the model's display name (``config["cola_model"]``), its findings
(``config["cola_summary"]``) and its records. Nothing here probes the reader's installed
packages, and nothing imports torch, transformers or lm-eval.

Main metric of a task: ``acc`` where the task has it, else ``exact_match``, else the task's
first metric; of that metric the filter ``none`` if present, else the first filter listed
(gsm8k: ``exact_match,strict-match``). Its stderr is lm-eval's ``<metric>_stderr,<filter>``.
A searcher run shows its oracle's metric and filter instead, where the task reports them:
those the results config names (``cola_oracle_metric``, ``cola_oracle_filter``), else those
its records were judged by (see ``board``), else its model_args' ``oracle_metric`` and
``oracle_filter``.

Series kind of a run (``RunFile.series_kind``, ``series_kind``), what the depth plot groups by:
an oracle run (``is_oracle``) is ``oracle``; a ``cola_router`` run ``router``; a chain from a
chain file whose method is ``block_influence``, ``sleb`` or ``sleb_oneshot``
(``cola_chain_source``) a ``pruning baseline``; the full chain (a plain lm-eval model such as
``hf``, or a cola run of the identity chain not read from a chain file) the ``full model``;
any other fixed chain (from ``calibrate``, ``consensus``, another chain file, or chain text)
a ``static chain``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.errors import UserError
from lm_eval_cola.results.identity import EvalIdentity, deciding_args
from lm_eval_cola.results.records import Record, latest_per_sample, read_records

# Which model_args decide which files make one row (``deciding_args``: less NEUTRAL_ARGS,
# which never change a result, and numerics=exact, as if not given) lives in identity.py:
# one rule, shared with compare's and table1's checks and the board.

logger = logging.getLogger(__name__)

RESULTS_GLOB = "results*.json"


FULL_MODEL, STATIC_CHAIN, PRUNING, ROUTER, ORACLE = (
    "full model", "static chain", "pruning baseline", "router", "oracle")
SERIES_KINDS = (FULL_MODEL, STATIC_CHAIN, PRUNING, ROUTER, ORACLE)  # in the plots' order
PRUNING_METHODS = frozenset({"block_influence", "sleb", "sleb_oneshot"})


class RunDirError(UserError):
    """A run directory (or results file) that is missing or cannot be read."""


@dataclass
class TaskScore:
    task: str
    metric: str  # "acc,none", "exact_match,strict-match", ...
    value: float | None
    stderr: float | None
    samples: int | None  # lm-eval's effective sample count

    @property
    def metric_label(self) -> str:
        name, _, filt = self.metric.partition(",")
        return name if filt in ("", "none") else f"{name}, {filt}"


@dataclass
class RunFile:
    """One lm-eval results file, read and checked."""

    path: Path
    data: dict[str, Any]
    model: str  # the model's display name
    lm_eval_model: str  # config.model: hf, cola_hf, cola_mcts, ...
    kind: str  # "search" | "chain" | "plain"
    variant: str  # searcher name, "chain <text>" or the lm-eval model
    oracle: bool  # the gold answer chose each sample's chain: an upper bound, not a score
    model_args: dict[str, str]
    limit: Any
    tasks: list[str]  # top-level tasks (columns) with a numeric main metric
    scores: dict[str, TaskScore]
    summary: dict[str, Any] | None  # config["cola_summary"] as written
    wall_seconds: float | None
    depth_ratio: float | None
    num_layers: int | None
    seed: int | None
    settings: dict[str, Any]
    owner: dict[str, str] = field(default_factory=dict)  # task or subtask -> its column
    # the oracle's metric and filter as the results config names them (None: not named)
    oracle_metric: str | None = None
    oracle_filter: str | None = None
    series_kind: str = FULL_MODEL  # one of SERIES_KINDS (see the module docstring)
    source_method: str | None = None  # the chain file's method (cola_chain_source)
    # a router's depth a deployment pays (its chains plus the feature layers they skip)
    executed_depth_ratio: float | None = None
    # the prompt and decoding settings (chat template, few-shot, gen_kwargs, ...)
    evaluation: EvalIdentity = field(default_factory=EvalIdentity)

    @property
    def key(self) -> tuple[Any, ...]:
        """Files with the same key are one row (one run split over files, or re-runs);
        runs under other prompts or decoding are other rows."""
        args = deciding_args(self.model_args)  # numerics=exact: as if not given
        # A search's seed may come from lm-eval's --seed rather than model_args: runs with
        # other seeds are other rows (``group_seeds`` then shows them as one seed row).
        seed = self.seed if self.kind == "search" else None
        return (self.model, self.kind, self.variant, self.oracle, self.lm_eval_model,
                json.dumps(args, sort_keys=True, default=str), json.dumps(self.limit),
                self.evaluation.key, seed)

    @property
    def order(self) -> tuple[float, float, str]:
        """Newest last: lm-eval's start time (``date``), then the file's mtime."""
        return (number(self.data.get("date")) or 0.0, self.path.stat().st_mtime, str(self.path))

    @property
    def effective_samples(self) -> dict[str, int | None]:
        """lm-eval's effective sample count per task (``--limit`` takes the first docs)."""
        counts = self.data.get("n-samples") or {}
        return {t: _int((v or {}).get("effective")) for t, v in counts.items()}

    def rescore(self, task: str, metric: str | None, filt: str | None) -> TaskScore | None:
        """The task's score under this metric and filter (see ``main_metric``)."""
        return _task_score(self.data, task, metric, filt)


def number(value: Any) -> float | None:
    """A finite-or-infinite float from a JSON value, None for anything else (bools too)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def _int(value: Any) -> int | None:
    result = number(value)
    return int(result) if result is not None else None


def stored_model_args(value: Any) -> dict[str, str]:
    """lm-eval stores model_args as given: a ``k=v,k=v`` string or a dict. Values come back
    as text either way, so the two forms of the same arguments compare equal."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not value:
        return {}
    args: dict[str, str] = {}
    for part in str(value).split(","):
        key, sep, val = part.partition("=")
        if sep and key.strip():
            args[key.strip()] = val.strip()
    return args


def main_metric(task_results: dict[str, Any], metric: str | None = None,
                filt: str | None = None) -> str | None:
    """The task's main metric key ("metric,filter"); see the module docstring. ``metric``
    and ``filt``, where given and reported, are preferred to the defaults."""
    keys = [k for k in task_results
            if "," in k and not k.partition(",")[0].endswith("_stderr")
            and number(task_results[k]) is not None]

    def pick(name: str | None) -> str | None:
        found = [k for k in keys if k.partition(",")[0] == name]
        for wanted in (filt, "none"):
            if wanted and f"{name},{wanted}" in found:
                return f"{name},{wanted}"
        return found[0] if found else None

    return pick(metric) or pick("acc") or pick("exact_match") or (keys[0] if keys else None)


def top_level_tasks(data: dict[str, Any]) -> list[str]:
    """Tasks and groups of a results file that are not a listed group's subtask."""
    groups = data.get("group_subtasks") or {}
    inner = {sub for subs in groups.values() for sub in (subs or [])}
    return [t for t in data["results"] if t not in inner]


def task_owners(data: dict[str, Any], tasks: list[str]) -> dict[str, str]:
    """Each task, and each subtask of a group, -> the top-level task (column) it is under."""
    groups = data.get("group_subtasks") or {}
    owner: dict[str, str] = {}
    for top in tasks:
        todo = [top]
        while todo:
            name = todo.pop()
            if name not in owner:
                owner[name] = top
                todo += list(groups.get(name) or [])
    return owner


def is_oracle(config: dict[str, Any]) -> bool:
    """What the run wrote (``cola_oracle``); results written before it existed were oracles
    exactly when they ran a searcher other than ``none``. Searcher ``none`` never is one
    (lm-eval-cola 0.x before the record schema 2 wrote ``cola_oracle: true`` for it too)."""
    if config.get("cola_searcher") == "none":
        return False
    if "cola_oracle" in config:
        return bool(config["cola_oracle"])
    return config.get("cola_searcher") not in (None, "none")


def chain_source_method(config: dict[str, Any]) -> str | None:
    """The method of the chain file the run's chain came from (None: no chain file)."""
    source = config.get("cola_chain_source")
    if not isinstance(source, dict):
        return None
    return _text(source.get("method")) or "unknown"


def exported_chain(args: dict[str, str]) -> dict[str, Any] | None:
    """The chain file ``lm-eval-cola export`` wrote into a plain run's ``pretrained``
    folder (``cola_chain.json``), if that folder is here: a plain ``hf`` run of an export
    is that chain's row, not the full model's."""
    folder = args.get("pretrained")
    if not folder:
        return None
    path = Path(folder) / "cola_chain.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("chain"), str) else None


def is_router(config: dict[str, Any]) -> bool:
    return config.get("model") == "cola_router" or config.get("cola_chain") == "router"


def _is_full_chain(config: dict[str, Any]) -> bool:
    """The run's chain is the identity chain (every layer once, in order)."""
    layers = _int(config.get("cola_num_layers"))
    if layers is None or layers < 1:  # no layer count: the full depth is all one can tell
        return number(config.get("cola_depth_ratio")) == 1.0
    return str(config.get("cola_chain")) == format_chain(range(layers))


def series_kind(config: dict[str, Any]) -> str:
    """The run's series kind (one of ``SERIES_KINDS``) from its results config."""
    if is_oracle(config):
        return ORACLE
    if is_router(config):
        return ROUTER
    method = chain_source_method(config)
    if method in PRUNING_METHODS:
        return PRUNING
    if method is not None:  # calibrate:*, consensus or any other chain file
        return STATIC_CHAIN
    if "cola_chain" not in config or _is_full_chain(config):
        return FULL_MODEL  # a plain lm-eval model, or the identity chain
    return STATIC_CHAIN


def model_label(config: dict[str, Any], data: dict[str, Any], args: dict[str, str]) -> str:
    """The display name the run wrote, else lm-eval's model_name, else pretrained."""
    for name in (config.get("cola_model"), data.get("model_name"), args.get("pretrained"),
                 config.get("model")):
        if name:
            return str(name)
    return "unknown"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunDirError(f"cannot read {str(path)!r}: {err.strerror}") from None
    except ValueError as err:
        raise RunDirError(f"{str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) \
            or not isinstance(data.get("config"), dict):
        raise RunDirError(f"{str(path)!r} is not an lm-eval results file "
                          "(no 'results' and 'config' objects)")
    if not data["results"]:
        raise RunDirError(f"{str(path)!r} has no task results")
    return data


def _task_score(data: dict[str, Any], task: str, metric: str | None = None,
                filt: str | None = None) -> TaskScore | None:
    task_results = data["results"][task]
    key = main_metric(task_results, metric, filt)
    if key is None:
        return None  # a group without aggregate metrics, or a task with none numeric
    name, _, filter_name = key.partition(",")
    count = ((data.get("n-samples") or {}).get(task) or {}).get("effective") \
        or task_results.get("sample_len")
    return TaskScore(task, key, number(task_results[key]),
                     number(task_results.get(f"{name}_stderr,{filter_name}")), _int(count))


def _scores(path: Path, data: dict[str, Any], metric: str | None,
            filt: str | None) -> dict[str, TaskScore]:
    scores: dict[str, TaskScore] = {}
    for task in top_level_tasks(data):
        if not isinstance(data["results"][task], dict):
            raise RunDirError(f"{str(path)!r}: results of {task!r} are not an object")
        score = _task_score(data, task, metric, filt)
        if score is not None:
            scores[task] = score
    if not scores:
        raise RunDirError(f"{str(path)!r} has no task with a numeric metric")
    return scores


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def read_run_file(path: Path) -> RunFile:
    """One results file, or RunDirError saying in one line what is wrong with it."""
    path = Path(path)
    data = _read_json(path)
    config = data["config"]
    lm_eval_model = str(config.get("model") or "unknown")
    args = stored_model_args(config.get("model_args"))
    searcher = bool(config.get("cola_searcher"))
    metric = _text(config.get("cola_oracle_metric")) if searcher else None
    filt = _text(config.get("cola_oracle_filter")) if searcher else None
    scores = _scores(path, data, metric or (args.get("oracle_metric") if searcher else None),
                     filt or (args.get("oracle_filter") if searcher else None))
    summary = config.get("cola_summary") if isinstance(config.get("cola_summary"), dict) else None
    if config.get("cola_searcher"):
        kind, variant = "search", str(config["cola_searcher"])
        depth = number((summary or {}).get("mean_depth_ratio"))
    elif is_router(config):
        router = _text(config.get("cola_router")) or args.get("router")
        kind, variant = "chain", f"router {Path(router).name}" if router else "router"
        depth = number(config.get("cola_depth_ratio"))
    elif "cola_chain" in config:
        kind, variant = "chain", f"chain {config['cola_chain']}"
        depth = number(config.get("cola_depth_ratio"))
    else:
        kind, variant, depth = "plain", lm_eval_model, 1.0
        exported = exported_chain(args)
        if exported is not None:  # a plain run of an ``export``ed chain: that chain's row
            config = {**config, "cola_chain": exported["chain"],
                      "cola_num_layers": exported.get("num_layers"),
                      "cola_chain_source": {"method": exported.get("method")}}
            variant = f"{lm_eval_model} export {exported['chain']}"
            depth = number(exported.get("depth_ratio")) or depth
    seed = config.get("cola_seed")
    tasks = list(scores)
    executed = number(config.get("cola_executed_depth_ratio")) if is_router(config) else None
    if is_router(config) and executed is None:
        logger.warning("%s: router run without cola_executed_depth_ratio; its depth is that "
                       "of its chains alone, not counting the feature layers", path)
    return RunFile(
        path=path, data=data, model=model_label(config, data, args),
        lm_eval_model=lm_eval_model, kind=kind, variant=variant, oracle=is_oracle(config),
        model_args=args, limit=config.get("limit"), tasks=tasks, scores=scores,
        summary=summary, wall_seconds=number(data.get("total_evaluation_time_seconds")),
        depth_ratio=depth, num_layers=_int(config.get("cola_num_layers")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        settings=dict(config.get("cola_settings") or {}), owner=task_owners(data, tasks),
        oracle_metric=metric, oracle_filter=filt, series_kind=series_kind(config),
        source_method=chain_source_method(config), executed_depth_ratio=executed,
        evaluation=EvalIdentity.from_results(data),
    )


def find_result_files(run_dir: str | Path) -> list[Path]:
    """The results files of a run directory (or the file itself); RunDirError if none."""
    path = Path(run_dir)
    if not path.exists():
        raise RunDirError(f"run directory {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix != ".json":
            raise RunDirError(f"{str(path)!r} is neither a run directory nor a results .json")
        return [path]
    files = sorted(p for p in path.rglob(RESULTS_GLOB) if p.is_file())
    if not files:
        raise RunDirError(f"no lm-eval results files ({RESULTS_GLOB}) under {str(path)!r}")
    return files


def load_runs(run_dirs: list[str | Path]) -> tuple[list[RunFile], list[str]]:
    """Every readable results file under ``run_dirs``, and one error line per problem.

    A directory that is missing, holds no results or only unreadable ones is an error, and
    so is each unreadable file; the other directories and files are still read.
    """
    runs: list[RunFile] = []
    errors: list[str] = []
    for run_dir in run_dirs:
        try:
            files = find_result_files(run_dir)
        except RunDirError as err:
            errors.append(str(err))
            continue
        good = 0
        for path in files:
            try:
                runs.append(read_run_file(path))
                good += 1
            except RunDirError as err:
                errors.append(str(err))
        if not good and len(files) > 1:
            errors.append(f"no readable lm-eval results under {str(run_dir)!r}")
        logger.debug("%s: %d of %d results files read", run_dir, good, len(files))
    return runs, errors


def find_records_files(run: RunFile) -> list[Path] | None:
    """The records files of a searcher run (one, or one per data parallel rank): named in
    its config, each looked for beside the results file first (a moved run folder), then
    at the recorded path. None when any of them is missing."""
    config = run.data["config"]
    recorded = config.get("cola_records_files") or (
        [config["cola_records"]] if config.get("cola_records") else [])
    found = []
    for name in recorded:
        beside = run.path.parent / Path(name).name
        match = next((c for c in (beside, Path(name)) if c.is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found or None


def run_records(run: RunFile, tasks: list[str]) -> list[Record]:
    """The records behind ``tasks`` (columns) of a searcher run: those of the tasks (for a
    group, of its subtasks) with ``doc_id`` below the run's effective sample count, the last
    record of a sample winning. RunDirError when a records file is missing; RecordsError
    (a UserError too) when one is corrupt."""
    paths = find_records_files(run)
    if paths is None:
        config = run.data["config"]
        raise RunDirError(f"records of {str(run.path)!r} not found "
                          f"({config.get('cola_records_files') or config.get('cola_records')!r})")
    samples = run.effective_samples

    def wanted(record: Record) -> bool:
        count = samples.get(record.task)
        in_limit = count is None or record.doc_id < count
        return run.owner.get(record.task) in tasks and in_limit

    return latest_per_sample([r for path in paths for r in read_records(path) if wanted(r)])
