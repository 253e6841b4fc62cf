"""``lm-eval-cola table1``: the paper's Table 1 for any model, through ``compare``.

Four variants on the same model, samples and seed: the full chain (searcher ``none``) and
MCTS under the ``cola`` protocol (or another, ``--protocol``) with ``actions=skip``
(skip-only), ``actions=loop`` (recurrence-only) and ``actions=skip+loop`` (CoLa), each with
the chance control ``control=decoy`` unless ``--control none``. Resumable as ``compare`` is
(a finished variant is skipped, a dead one resumes from its records). The table is made
from the runs' records (``reports.table1``) and written as ``table1.{md,csv,html}``.

``--reuse DIR``: a search run already made under ``DIR`` stands in for a search row when it
is the same search -- the same lm-eval model, model, tasks and seed, at least ``--limit``
samples, and exactly the row's effective searcher settings (``cola_settings``: protocol,
actions, budget, ... as the run resolved them). Its first ``--limit`` samples are used. The
settings that do not change which chains a search evaluates or picks (``control``,
``record_chains``) may differ: e.g. a 200-question ``protocol=cola,control=decoy`` run gives
the CoLa row of a 100-question table without searching those 100 again. Such a run must also
be the same evaluation as the Original row's (as compare's resume checks it,
``identity.RunConditions``: the model_args other than the search's, dtype, oracle metric and
filter, ``max_len``, chat template, system instruction, few-shot, gen_kwargs), and document
by document have the Original row's prompt, oracle metric and filter and full-chain
correctness; without an Original row it is checked against this command's settings. A run
that is this row's search under other conditions is refused in one line naming the first
difference, before any row is searched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lm_eval_cola.cli.compare import (
    add_run_arguments,
    compare,
    complete_results,
    run_options,
    wanted_conditions,
    wanted_evaluation,
)
from lm_eval_cola.errors import UserError
from lm_eval_cola.harness.conditions import RunConditions

ROW_KEYS = ("original", "skip", "loop", "skip+loop")
CONTROLS = ("decoy", "none")


def variant_name(key: str, protocol: str, control: str) -> str:
    """The ``compare`` variant of one of Table 1's rows."""
    if key == "original":
        return "none"
    settings = [f"protocol={protocol}", f"actions={key}"]
    if control != "none":
        settings.append(f"control={control}")
    return "mcts:" + ";".join(settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True,
                        help="lm-eval tasks or groups, comma-separated (the paper's: cola_paper)")
    parser.add_argument("--output", required=True,
                        help="folder for the runs (one sub-folder a row, as compare makes)")
    parser.add_argument("--out", default=None,
                        help="where table1.md/.csv/.html go (default: <output>/table1)")
    parser.add_argument("--limit", type=float, default=None,
                        help="samples per task (as lm-eval's --limit)")
    parser.add_argument("--budget", type=int, default=None,
                        help="chain evaluations per sample (default: the protocol's, 200)")
    parser.add_argument("--protocol", default="cola",
                        help="the search's protocol preset (default cola: the paper's MCTS; "
                             "cola-deep: this project's deep search; docs/protocols.md)")
    parser.add_argument("--control", default="decoy", choices=CONTROLS,
                        help="the chance control of the search rows (default decoy)")
    parser.add_argument("--rows", default=",".join(ROW_KEYS),
                        help=f"rows to run, comma-separated from {','.join(ROW_KEYS)}")
    parser.add_argument("--seed", type=int, default=1234, help="the searchers' seed")
    add_run_arguments(parser, "row")
    parser.add_argument("--reuse", action="append", default=[],
                        help="a folder of earlier search runs; one with exactly a row's "
                             "search settings, seed, model and tasks (and at least --limit "
                             "samples) stands in for that row (repeatable)")


def _rows(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in ROW_KEYS]
    if bad or not keys:
        raise UserError(f"bad --rows {text!r}; allowed: {', '.join(ROW_KEYS)}")
    return [k for k in ROW_KEYS if k in keys]


def run(args: argparse.Namespace, task_manager: Any = None) -> int:
    from lm_eval_cola.reports.runs import read_run_file, run_records
    from lm_eval_cola.reports.table1 import build_table1, to_markdown, write_table1
    from lm_eval_cola.search.searchers.protocols import PROTOCOLS

    if args.protocol not in PROTOCOLS:
        raise UserError(f"unknown --protocol {args.protocol!r}; allowed: "
                        f"{', '.join(sorted(PROTOCOLS))}")
    limit, eval_kwargs = run_options(args)
    keys = _rows(args.rows)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    names = {variant_name(k, args.protocol, args.control): k for k in keys}
    records: dict[str, list[Any]] = {}
    original: Any = None  # the Original row's results, the reused runs' reference

    def run_rows(rows: list[str]) -> None:
        nonlocal original
        done = compare(rows, tasks, args.output, limit=limit, budget=args.budget,
                       seed=args.seed, model_args=args.model_args,
                       include_path=args.include_path, eval_kwargs=eval_kwargs,
                       processes=args.processes, task_manager=task_manager) if rows else []
        for variant, _ in done:
            found = complete_results(variant, tasks, limit, eval_kwargs)
            if found is None:
                raise UserError(f"no complete results for {variant.name!r} under "
                                f"{variant.folder}")
            run_file = read_run_file(found)
            records[names[variant.name]] = run_records(run_file, run_file.tasks)
            if names[variant.name] == "original":
                original = run_file

    if args.reuse and "original" in keys:  # the reused runs are checked against it
        run_rows([name for name, key in names.items() if key == "original"])
    for name, key in names.items():
        found = reused_run(name, args, tasks, limit, eval_kwargs, original,
                           records.get("original")) if key != "original" else None
        if found is not None:
            run_file, rows = found
            print(f"[table1] {key}: reusing {run_file.path} ({len(rows)} samples)",
                  file=sys.stderr)
            records[key] = rows
    run_rows([name for name, key in names.items() if key not in records])
    settings = ", ".join(p for p in (
        f"protocol={args.protocol}", f"budget={args.budget or 'protocol default'}",
        f"control={args.control}", f"seed={args.seed}",
        f"limit={limit}" if limit is not None else "", args.model_args,
        *wanted_evaluation(eval_kwargs).describe()) if p)
    if args.reuse:
        settings += f", reused: {', '.join(args.reuse)}"
    table = build_table1(records, settings=settings)
    out = Path(args.out) if args.out else Path(args.output) / "table1"
    paths = write_table1(table, out)
    print(to_markdown(table))
    print(f"[table1] wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def expected_settings(name: str, budget: int | None) -> dict[str, Any]:
    """A search row's effective searcher settings, as its run would write them (max_len
    left out: the run resolves it from the model)."""
    from lm_eval_cola.search.driver import jsonable, without_neutral_settings
    from lm_eval_cola.search.searchers import get_searcher

    base, _, spec = name.partition(":")
    given: dict[str, Any] = dict(p.split("=", 1) for p in spec.split(";") if p)
    for key in ("control", "record_chains"):
        given.pop(key, None)
    if budget is not None:
        given["budget"] = budget
    settings = without_neutral_settings(jsonable(get_searcher(base, **given).settings_dict()))
    settings.pop("max_len", None)
    return settings


def reused_run(name: str, args: argparse.Namespace, tasks: list[str], limit: Any,
               eval_kwargs: dict[str, Any] | None = None, original: Any = None,
               original_records: list[Any] | None = None) -> tuple[Any, list[Any]] | None:
    """(run, its first ``limit`` samples' records) of a run under ``--reuse`` that is this
    row's search and the same evaluation as ``original`` (the Original row's results and
    records; None: this command's settings); None when no run is this row's search.
    UserError, naming the first difference, when such runs are there but none is the same
    evaluation (see the module docstring)."""
    from lm_eval_cola.reports.runs import (
        find_result_files,
        read_run_file,
        run_records,
        stored_model_args,
    )
    from lm_eval_cola.search.driver import without_neutral_settings

    if not args.reuse:
        return None
    if limit is not None and not isinstance(limit, int):
        raise UserError("--reuse needs a whole-number --limit (or none)")
    want = expected_settings(name, args.budget)
    pretrained = stored_model_args(args.model_args).get("pretrained")
    if original is not None:
        reference = RunConditions.from_results(original.data, original.model_args)
        whose = "the Original row's"
    else:
        reference, whose = wanted_conditions(args.model_args, eval_kwargs or {}), "this table's"
    refusal = None
    for folder in args.reuse:
        for path in find_result_files(folder):
            run = read_run_file(path)
            config = run.data["config"]
            settings = {k: v for k, v in without_neutral_settings(run.settings or {}).items()
                        if k != "max_len"}
            same = (run.kind == "search" and settings == want
                    and config.get("cola_seed") == args.seed
                    and run.model_args.get("pretrained") == pretrained
                    and all(t in run.data["results"] for t in tasks))
            if not same:
                continue
            rows = run_records(run, run.tasks)
            if limit is not None:
                rows = [r for r in rows if r.doc_id < limit]
            counts = {t: sum(r.task == t for r in rows) for t in {r.task for r in rows}}
            if not rows or (limit is not None and any(c < limit for c in counts.values())):
                continue
            mine = RunConditions.from_results(run.data, run.model_args)
            difference = mine.difference(reference)
            if difference is not None:
                difference = f"{difference} ({whose})"
            elif original_records is not None:
                difference = same_documents(rows, original_records)
            if difference is None:
                return run, rows
            refusal = refusal or f"--reuse {folder}: {difference}"
    if refusal is not None:
        raise UserError(refusal + "; allowed: a run made under the table's conditions "
                        "(or leave --reuse out to search this row)")
    return None


def same_documents(reused: list[Any], original: list[Any],
                   whose: str = "the Original row's") -> str | None:
    """The first document where a reused row's records differ from the Original row's: in
    the prompt (doc and requests), the oracle metric or filter it was judged by, or the full
    chain's correctness (each, where both records say); None: none differs."""
    theirs = {r.key: r for r in original}
    for record in sorted(reused, key=lambda r: r.key):
        other = theirs.get(record.key)
        if other is None:
            continue
        where = f"{record.task} doc {record.doc_id}"
        if record.doc_hash != other.doc_hash or (
                record.requests and other.requests and record.requests != other.requests):
            return f"{where}: the prompt (doc or requests) differs from {whose}"
        for what in ("metric", "filter"):
            a, b = getattr(record, f"oracle_{what}"), getattr(other, f"oracle_{what}")
            if a is not None and b is not None and a != b:
                return f"{where}: oracle {what} {a} != {b} ({whose})"
        if record.full_correct != other.full_correct:
            right = {True: "right", False: "wrong"}
            return (f"{where}: full chain {right[record.full_correct]} != "
                    f"{right[other.full_correct]} ({whose})")
    return None
