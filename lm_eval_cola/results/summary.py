"""The paper's two findings, counted over every searched sample (nothing filtered):

- among samples the full chain gets right, the share with a correct strictly shorter chain;
- among samples the full chain gets wrong, the share with some correct chain;

with what a paper prints beside them: Wilson 95% intervals (on both findings, the oracle
accuracy and the chance control's rates), the depth ratio of the shortened and of the
fixed samples apart, the mean edit count (Levenshtein distance from the full chain), the
cost in evaluated layers, and the chains with non-finite scores. With ``control=decoy``,
the decoy's rates: the share of wrong samples where the search reached a wrong decoy
answer, and of right samples where a chain at least ``min_shorter`` layers shorter gave it
(see ``lm_eval_cola.search.decoy``), over the samples that have a decoy (the control ran on every
sample, but some have none to draw: ``no_decoy_right`` / ``no_decoy_wrong``), and the depth
ratio of the decoy's shortest chains beside the gold's (``decoy_depth_ratio_shortened``). Each of
those rates is set beside its finding on the same samples by a paired test
(``fixed_vs_decoy``, ``shorter_vs_decoy``: ``stats.Paired``): the per-sample pairs (gold
outcome, decoy outcome), their discordant counts, exact McNemar and the paired difference
with Newcombe's interval; its ``conclusion`` is the only "above chance" a summary states.

A ``Summary`` holds exact counts and sums, so summaries of disjoint runs (data parallel
ranks, result files of one row) merge exactly with ``merge``; ``as_dict`` writes the counts
beside the shares, and ``from_dict`` reads them back. Each count is declared once, as a
``counter`` field: the merge, the writing and the reading follow from that declaration. It
keeps one summary a task too (``by_task``, written as ``per_task``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from lm_eval_cola.chains.syntax import ChainError, full_chain, parse_chain
from lm_eval_cola.results.records import Record
from lm_eval_cola.results.stats import Paired, edit_distance, interval

_NO_CAP = 1 << 30  # edit counts parse recorded chains of any length


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(total: int, count: int, digits: int = 4) -> float | None:
    return round(total / count, digits) if count else None


@dataclass(frozen=True)
class _Count:
    """How ``as_dict`` writes one of ``Summary``'s counters and ``from_dict`` reads it."""

    key: str  # its name in ``as_dict``'s output
    # ``from_dict`` gives None for a summary without it (written before the exact sums)
    needed: bool = False
    # Written as count / ticks to 3 decimals (seconds kept as 1e-4 s ticks), read back
    # rounded to whole ticks; 1: written as it is.
    ticks: int = 1

    def write(self, value: int) -> int | float:
        return value if self.ticks == 1 else round(value / self.ticks, 3)

    def read(self, data: dict[str, Any]) -> int:
        # missing (a summary written before the counter was added): 0
        value = data.get(self.key) or 0
        return int(value) if self.ticks == 1 else round(float(value) * self.ticks)


def counter(key: str, *, needed: bool = False, ticks: int = 1) -> Any:
    """A ``Summary`` field holding an exact count or sum, written by ``as_dict`` as ``key``
    (see ``_Count``); merged by adding, read back by ``from_dict`` (0 where missing)."""
    return field(default=0, metadata={"count": _Count(key, needed, ticks)})


@dataclass
class Summary:
    """Exact counts of a run's samples. A new count is one line here, ::

        decoy_fixed_shorter: int = counter("decoy_fixed_shorter")  # what it counts

    and its increment in ``add``: ``merge`` adds it, ``as_dict`` writes it after the
    others (or beside a share, with ``place``), ``from_dict`` reads it, as 0 from summaries
    written before it. Its rates belong in ``as_dict``'s shares; its key, in the golden
    test's ``NEW_FIELDS`` (tests/support/golden_runs.py)."""

    num_layers: int
    oracle: bool = True  # False for searcher `none`: the gold chose nothing
    samples: int = counter("samples")
    right: int = counter("full_chain_right")
    right_shortened: int = counter("right_with_shorter_chain")
    wrong: int = counter("full_chain_wrong")
    wrong_fixed: int = counter("wrong_fixed_by_some_chain")
    oracle_correct: int = counter("oracle_correct", needed=True)
    total_length: int = counter("total_best_length", needed=True)
    total_evaluations: int = counter("total_evaluations", needed=True)
    # Records keep seconds to 4 decimals; summing them as whole 1e-4 s ticks makes the
    # total independent of the order samples are added in (a live run vs its records).
    total_ticks: int = counter("total_search_seconds", ticks=10_000)
    tasks: set[str] = field(default_factory=set)
    # Added with records schema 3 (a summary written before them reads them as 0):
    # best lengths of the right samples shortened, and of the wrong samples fixed
    total_shortened_length: int = counter("total_shortened_length")
    total_fixed_length: int = counter("total_fixed_length")
    # Levenshtein distances of the best chains from the full chain, and the samples whose
    # best chain parsed (all, in practice)
    total_edits: int = counter("total_edits")
    edit_samples: int = counter("edit_samples")
    # Cost and non-finite chains: counted over records that have them (schema 3 on).
    total_evaluated_layers: int = counter("total_evaluated_layers")
    cost_samples: int = counter("cost_samples")
    nonfinite_chains: int = counter("nonfinite_chains")
    nonfinite_samples: int = counter("nonfinite_samples")  # with >= 1 non-finite chain
    # The chance control, over samples that have a decoy.
    decoy_full_right: int = counter("decoy_full_right")
    decoy_right_shortened: int = counter("decoy_right_shortened")
    decoy_full_wrong: int = counter("decoy_full_wrong")
    decoy_wrong_reached: int = counter("decoy_wrong_reached")
    total_decoy_evaluations: int = counter("total_decoy_evaluations")
    # The paired test's counts: the gold's findings on those same samples, and the samples
    # where both happened; and the samples the control ran on without a decoy. A summary
    # written before them reads them as 0 and counts its decoy samples as
    # ``decoy_unpaired``: their pairs are unknown, so no paired test is shown for it, nor
    # for anything merged with it.
    decoy_wrong_fixed: int = counter("decoy_wrong_fixed")
    # fixed by the gold's search and reached by the decoy's
    decoy_wrong_both: int = counter("decoy_wrong_both")
    decoy_right_shorter: int = counter("decoy_right_shorter")
    # shortened toward the gold and toward the decoy
    decoy_right_both: int = counter("decoy_right_both")
    # the control ran, but the sample had no decoy to draw
    no_decoy_right: int = counter("no_decoy_right")
    no_decoy_wrong: int = counter("no_decoy_wrong")
    decoy_unpaired: int = counter("decoy_unpaired")
    # How short the decoy's shortened chains are, to set beside the gold's (issue #21's
    # ARC runs): the lengths of the shortest chains answering the decoy over the right samples
    # the decoy shortened, and those samples (records that kept no length are left out)
    total_decoy_shortened_length: int = counter("total_decoy_shortened_length")
    decoy_shortened_measured: int = counter("decoy_shortened_measured")
    # One summary a task, filled by ``add`` and kept through ``merge`` and ``from_dict``.
    # Not compared: two summaries are equal when their counts are (a results file keeps
    # each task's time rounded, the records keep it exact).
    by_task: dict[str, Summary] = field(default_factory=dict, compare=False)

    def add(self, record: Record, per_task: bool = True) -> None:
        self.samples += 1
        self.tasks.add(record.task)
        shortened = record.shortened
        if record.full_correct:
            self.right += 1
            self.right_shortened += int(shortened)
            self.total_shortened_length += int(record.best_length) if shortened else 0
        else:
            self.wrong += 1
            self.wrong_fixed += int(record.best_correct)
            self.total_fixed_length += int(record.best_length) if record.best_correct else 0
        self.oracle_correct += int(record.best_correct)
        self.total_length += int(record.best_length)
        self.total_evaluations += int(record.evaluations)
        self.total_ticks += round(float(record.seconds) * 10_000)
        edits = chain_edits(record.best_chain, self.num_layers)
        if edits is not None:
            self.total_edits += edits
            self.edit_samples += 1
        if record.evaluated_layers is not None:
            self.total_evaluated_layers += int(record.evaluated_layers)
            self.cost_samples += 1
        if record.nonfinite is not None:
            self.nonfinite_chains += int(record.nonfinite)
            self.nonfinite_samples += int(record.nonfinite > 0)
        decoy = record.decoy
        if decoy is not None and not has_decoy(decoy):
            self.no_decoy_right += int(record.full_correct)
            self.no_decoy_wrong += int(not record.full_correct)
        elif decoy is not None:
            # the pair (gold's outcome, decoy's outcome) of this sample
            if record.full_correct:
                by_decoy = decoy_shortened(decoy, self.num_layers)
                self.decoy_full_right += 1
                self.decoy_right_shortened += int(by_decoy)
                self.decoy_right_shorter += int(shortened)
                self.decoy_right_both += int(shortened and by_decoy)
                shortest = decoy_shortest(decoy, self.num_layers)  # not None: by_decoy
                if shortest is not None:
                    self.total_decoy_shortened_length += shortest
                    self.decoy_shortened_measured += 1
            else:
                reached = bool(decoy.get("reached"))
                self.decoy_full_wrong += 1
                self.decoy_wrong_reached += int(reached)
                self.decoy_wrong_fixed += int(record.best_correct)
                self.decoy_wrong_both += int(record.best_correct and reached)
        if decoy is not None:
            self.total_decoy_evaluations += int(decoy.get("evaluations") or 0)
        if per_task:
            self.by_task.setdefault(record.task, Summary(self.num_layers, self.oracle)).add(
                record, per_task=False)

    def merge(self, other: Summary) -> Summary:
        """The summary of both runs' samples (they must be disjoint)."""
        if other.num_layers != self.num_layers:
            raise ValueError(f"cannot merge summaries of {self.num_layers} and "
                             f"{other.num_layers} layers")
        merged = Summary(num_layers=self.num_layers, oracle=self.oracle and other.oracle,
                         tasks=self.tasks | other.tasks,
                         **{name: getattr(self, name) + getattr(other, name)
                            for name, _ in _COUNTERS})
        for task in sorted(set(self.by_task) | set(other.by_task)):
            mine, theirs = self.by_task.get(task), other.by_task.get(task)
            merged.by_task[task] = (mine.merge(theirs) if mine is not None and theirs is not None
                                    else _copy(mine or theirs))
        return merged

    @property
    def total_seconds(self) -> float:
        return self.total_ticks / 10_000

    @property
    def mean_length(self) -> float | None:
        return self.total_length / self.samples if self.samples else None

    def paired_fixed(self) -> Paired | None:
        """"Fixed when wrong" beside "decoy reached when wrong", sample by sample, over the
        wrong samples with a decoy; None without any (or with pairs unknown)."""
        if not self.decoy_full_wrong or self.decoy_unpaired:
            return None
        return _paired(self.decoy_wrong_fixed, self.decoy_wrong_reached,
                       self.decoy_wrong_both, self.decoy_full_wrong)

    def paired_shorter(self) -> Paired | None:
        """"Shorter when right" beside "decoy shortened when right", likewise."""
        if not self.decoy_full_right or self.decoy_unpaired:
            return None
        return _paired(self.decoy_right_shorter, self.decoy_right_shortened,
                       self.decoy_right_both, self.decoy_full_right)

    def progress_line(self) -> str:
        depth = (self.mean_length or 0) / self.num_layers
        line = (f"fixed {self.wrong_fixed}/{self.wrong} wrong, "
                f"shortened {self.right_shortened}/{self.right} right, depth {depth:.2f}")
        fixed = self.paired_fixed()
        if fixed is not None:  # the discordant pairs: what decides against chance
            line += f", fixed vs decoy only {fixed.gold_only}:{fixed.decoy_only}"
        return line

    def as_dict(self, timing: bool = True) -> dict[str, Any]:
        """The findings with their exact counts; ``timing`` False leaves the seconds out
        (the per-task parts: a run's time is one figure, and comparable runs differ in it
        only)."""
        n = self.samples
        mean_length = self.mean_length
        layers = self.num_layers
        counts = {name: {count.key: count.write(getattr(self, name))}
                  for name, count in _COUNTERS}
        # ``**place(field name)``: that count written here, beside its share; the counts not
        # placed follow the shares, in the order they are declared
        place = counts.pop
        seconds = {**place("total_ticks"),
                   "seconds_per_sample": round(self.total_seconds / n, 4) if n else None}
        out: dict[str, Any] = {
            "oracle": self.oracle,
            "num_layers": layers,
            **place("samples"),
            "tasks": sorted(self.tasks),
            **place("right"),
            **place("right_shortened"),
            "shorter_when_right": _share(self.right_shortened, self.right),
            **place("wrong"),
            **place("wrong_fixed"),
            "fixed_when_wrong": _share(self.wrong_fixed, self.wrong),
            "oracle_accuracy": _share(self.oracle_correct, n),
            "full_chain_accuracy": _share(self.right, n),
            "mean_best_length": round(mean_length, 4) if mean_length is not None else None,
            "mean_depth_ratio": round(mean_length / layers, 4) if n else None,
            "mean_evaluations": round(self.total_evaluations / n, 3) if n else None,
            **(seconds if timing else {}),
            # exact sums, so summaries merge without re-deriving from rounded means
            **place("total_length"),
            **place("total_evaluations"),
            **place("oracle_correct"),
            # Wilson 95% intervals, [low, high] (None with no samples to count)
            "shorter_when_right_ci": interval(self.right_shortened, self.right),
            "fixed_when_wrong_ci": interval(self.wrong_fixed, self.wrong),
            "oracle_accuracy_ci": interval(self.oracle_correct, n),
            "depth_ratio_shortened": _mean(self.total_shortened_length,
                                           self.right_shortened * layers),
            "depth_ratio_fixed": _mean(self.total_fixed_length, self.wrong_fixed * layers),
            "mean_edits": _mean(self.total_edits, self.edit_samples, 3),
            "mean_evaluated_layers": _mean(self.total_evaluated_layers, self.cost_samples, 2),
            "decoy_reached_when_wrong": _share(self.decoy_wrong_reached, self.decoy_full_wrong),
            "decoy_reached_when_wrong_ci": interval(self.decoy_wrong_reached,
                                                    self.decoy_full_wrong),
            "decoy_shortened_when_right": _share(self.decoy_right_shortened,
                                                 self.decoy_full_right),
            "decoy_shortened_when_right_ci": interval(self.decoy_right_shortened,
                                                      self.decoy_full_right),
            # beside depth_ratio_shortened: the decoy's shortest chains, over its own samples
            "decoy_depth_ratio_shortened": _mean(self.total_decoy_shortened_length,
                                                 self.decoy_shortened_measured * layers),
            # each finding beside its decoy rate on the same samples, by the paired test
            # (None without a decoy); the finding above is over all samples
            "fixed_vs_decoy": _paired_dict(self.paired_fixed()),
            "shorter_vs_decoy": _paired_dict(self.paired_shorter()),
        }
        for rest in counts.values():
            out.update(rest)
        if self.by_task:
            out["per_task"] = {task: self.by_task[task].as_dict(timing=False)
                               for task in sorted(self.by_task)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary | None:
        """A summary from ``as_dict``'s output; None when it lacks the exact sums (written
        by lm-eval-cola before they were added)."""
        if data.get("num_layers") is None or any(
                data.get(count.key) is None for _, count in _COUNTERS if count.needed):
            return None
        summary = cls(
            num_layers=int(data["num_layers"]), oracle=bool(data.get("oracle", True)),
            tasks=set(data.get("tasks") or ()),
            **{name: count.read(data) for name, count in _COUNTERS},
        )
        if "decoy_wrong_both" not in data:  # written before the pairs were counted
            summary.decoy_unpaired = summary.decoy_full_right + summary.decoy_full_wrong
        for task, part in (data.get("per_task") or {}).items():
            child = cls.from_dict(part)
            if child is not None:
                summary.by_task[task] = child
        return summary

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> Summary:
        records = list(records)
        if not records:
            raise ValueError("no records to summarise")
        summary = cls(num_layers=records[0].num_layers, oracle=records[0].oracle)
        for record in records:
            summary.add(record)
        return summary


# Every counter, as (field name, how it is written), in declaration order.
_COUNTERS: tuple[tuple[str, _Count], ...] = tuple(
    (f.name, f.metadata["count"]) for f in fields(Summary) if "count" in f.metadata)


def has_decoy(decoy: dict[str, Any]) -> bool:
    """Whether a record's decoy entry is a decoy search: not one where the control ran but
    the sample had no decoy to draw (``"none"``: why; ``target`` None)."""
    return "none" not in decoy and decoy.get("target") is not None


def _paired(gold: int, decoy: int, both: int, n: int) -> Paired:
    return Paired(both=both, gold_only=gold - both, decoy_only=decoy - both,
                  neither=n - gold - decoy + both)


def _paired_dict(paired: Paired | None) -> dict[str, Any] | None:
    return None if paired is None else paired.as_dict()


def decoy_shortest(decoy: dict[str, Any], num_layers: int) -> int | None:
    """The length of the shortest chain shorter than the full chain that answers a right
    sample's decoy: from ``shortest`` where the record has it, else from its chains; None
    when there is none, or the record kept no length (``shortened`` only)."""
    if "shortest" in decoy:
        shortest = decoy["shortest"]
        return int(shortest) if shortest is not None and int(shortest) < num_layers else None
    lengths = [int(c.get("length", num_layers)) for c in decoy.get("chains") or ()
               if c.get("correct")]
    shorter = [n for n in lengths if n < num_layers]
    return min(shorter) if shorter else None


def decoy_shortened(decoy: dict[str, Any], num_layers: int) -> bool:
    """Whether a right sample's decoy search found a chain shorter than the full chain that
    answers the decoy: the finding's own rule. From ``shortest`` where the record has it,
    else from its chains (records that counted ``shortened`` as 2 or more layers shorter,
    before ``shortest`` was added), else its ``shortened`` as written."""
    if "shortest" in decoy or decoy.get("chains"):
        return decoy_shortest(decoy, num_layers) is not None
    return bool(decoy.get("shortened"))


def _copy(summary: Summary | None) -> Summary:
    assert summary is not None
    return Summary(summary.num_layers, summary.oracle).merge(summary)


def chain_edits(text: str, num_layers: int) -> int | None:
    """Levenshtein distance of a recorded chain from the full chain; None when the text
    does not parse for this layer count (a hand-edited record)."""
    try:
        chain = parse_chain(text, num_layers, _NO_CAP)
    except ChainError:
        return None
    return edit_distance(chain, full_chain(num_layers))
