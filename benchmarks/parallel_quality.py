"""The quality cost of parallel simulations: runs that differ only in ``parallel=W``, paired.

    python benchmarks/parallel_quality.py RECORDS_W1 RECORDS_W4 RECORDS_W8 [--limit 100]

Each argument is a records file (``cola-records_*.jsonl``) of one oracle run; the first is
the reference (normally W = 1). The runs must agree in every search setting but
``parallel`` and in model and task. Only samples every run searched count (the first
``--limit`` of the reference's doc ids, when given), so every comparison is on the same
samples. Per run: oracle accuracy, "fixed when wrong" and "shorter when right", with
Wilson intervals; then, against the reference, the paired difference (run -
reference) of each with Newcombe's 95% interval and the exact McNemar p-value on the
discordant samples (``lm_eval_cola.results.stats``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lm_eval_cola.errors import UserError
from lm_eval_cola.results.records import Record, latest_per_sample, read_records
from lm_eval_cola.results.stats import Paired, wilson

# (name, which samples it is counted over, the outcome counted)
Outcome = Callable[[Record], bool]
MEASURES: list[tuple[str, Outcome, Outcome]] = [
    ("oracle accuracy", lambda r: True, lambda r: r.best_correct),
    ("fixed when wrong", lambda r: not r.full_correct, lambda r: r.best_correct),
    ("shorter when right", lambda r: r.full_correct, lambda r: r.shortened),
]


def load(path: str) -> dict[tuple[str, int], Record]:
    if not Path(path).is_file():
        raise UserError(f"records file {path!r} does not exist; allowed: a cola-records_"
                        "*.jsonl file of an oracle run")
    return {r.key: r for r in latest_per_sample(read_records(path))}


def same_search(reference: Record, other: Record, path: str) -> None:
    """Refuse runs that differ in anything but ``parallel`` (one line, naming it)."""
    mine = {k: v for k, v in reference.settings.items() if k != "parallel"}
    theirs = {k: v for k, v in other.settings.items() if k != "parallel"}
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            raise UserError(f"{path}: search setting {key}={theirs.get(key)!r} differs from "
                            f"the reference's {mine.get(key)!r}; allowed: runs differing "
                            "only in parallel")
    for field in ("model", "task", "searcher", "num_layers", "oracle"):
        if getattr(reference, field) != getattr(other, field):
            raise UserError(f"{path}: {field} {getattr(other, field)!r} differs from the "
                            f"reference's {getattr(reference, field)!r}")


def percent(k: int, n: int) -> str:
    if not n:
        return "-"
    low, high = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.0f}% [{100 * low:.0f}%, {100 * high:.0f}%]"


def paired(reference: list[Record], other: list[Record], among: Outcome,
           outcome: Outcome) -> Paired:
    """Per-sample pairs (this run's outcome, the reference's) over samples ``among`` picks
    in the reference; the full chain is the same in both (same model, exact numerics),
    so ``among`` picks the same samples in either."""
    return Paired.from_pairs((outcome(o), outcome(r))
                             for r, o in zip(reference, other, strict=True) if among(r))


def report(paths: Sequence[str], limit: int | None) -> list[str]:
    runs = [load(p) for p in paths]
    keys = sorted(runs[0])[:limit] if limit else sorted(runs[0])
    keys = [k for k in keys if all(k in run for run in runs)]
    if not keys:
        raise UserError("no sample is in every run; allowed: records of the same task's samples")
    aligned = [[run[k] for k in keys] for run in runs]
    for path, records in zip(paths[1:], aligned[1:], strict=True):
        same_search(aligned[0][0], records[0], path)
    lines = [f"{len(keys)} samples in every run; reference: {paths[0]}", "",
             "| run | parallel | " + " | ".join(m[0] for m in MEASURES)
             + " | evaluations / sample | seconds / sample |",
             "|---|---:|" + "---|" * len(MEASURES) + "---:|---:|"]
    for path, records in zip(paths, aligned, strict=True):
        cells = [percent(sum(outcome(r) for r in records if among(r)),
                         sum(among(r) for r in records)) for _, among, outcome in MEASURES]
        lines.append(f"| {Path(path).name} | {records[0].settings.get('parallel', 1)} | "
                     + " | ".join(cells)
                     + f" | {sum(r.evaluations for r in records) / len(records):.1f}"
                     f" | {sum(r.seconds for r in records) / len(records):.1f} |")
    lines += ["", "Paired against the reference (run - reference, Newcombe 95%, exact McNemar):",
              "", "| run | measure | n | run only | reference only | difference [95%] | p |",
              "|---|---|---:|---:|---:|---|---:|"]
    for path, records in zip(paths[1:], aligned[1:], strict=True):
        for name, among, outcome in MEASURES:
            pair = paired(aligned[0], records, among, outcome)
            if not pair.n:
                continue
            low, high = pair.interval
            lines.append(f"| {Path(path).name} | {name} | {pair.n} | {pair.gold_only} | "
                         f"{pair.decoy_only} | {100 * pair.difference:+.1f} points "
                         f"[{100 * low:+.1f}, {100 * high:+.1f}] | {pair.p_value:.3g} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="records files; the first is the reference")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the reference's first N doc ids")
    args = parser.parse_args(argv)
    if len(args.records) < 2:
        parser.error("give the reference's records and at least one run's")
    try:
        print("\n".join(report(args.records, args.limit)))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
