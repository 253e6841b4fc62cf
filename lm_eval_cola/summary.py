"""The paper's two findings, counted over every searched sample (nothing filtered):

- among samples the full chain gets right, the share with a correct strictly shorter chain;
- among samples the full chain gets wrong, the share with some correct chain.

A ``Summary`` holds exact counts and sums, so summaries of disjoint runs (data parallel
ranks, result files of one row) merge exactly with ``merge``; ``as_dict`` writes the counts
beside the shares, and ``from_dict`` reads them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lm_eval_cola.records import Record

_COUNTS = ("samples", "right", "right_shortened", "wrong", "wrong_fixed", "oracle_correct",
           "total_length", "total_evaluations", "total_ticks")


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class Summary:
    num_layers: int
    oracle: bool = True  # False for searcher `none`: the gold chose nothing
    samples: int = 0
    right: int = 0
    right_shortened: int = 0
    wrong: int = 0
    wrong_fixed: int = 0
    oracle_correct: int = 0
    total_length: int = 0
    total_evaluations: int = 0
    # Records keep seconds to 4 decimals; summing them as whole 1e-4 s ticks makes the
    # total independent of the order samples are added in (a live run vs its records).
    total_ticks: int = 0
    tasks: set[str] = field(default_factory=set)

    def add(self, record: Record) -> None:
        self.samples += 1
        self.tasks.add(record.task)
        if record.full_correct:
            self.right += 1
            self.right_shortened += int(record.best_correct
                                        and record.best_length < self.num_layers)
        else:
            self.wrong += 1
            self.wrong_fixed += int(record.best_correct)
        self.oracle_correct += int(record.best_correct)
        self.total_length += int(record.best_length)
        self.total_evaluations += int(record.evaluations)
        self.total_ticks += round(float(record.seconds) * 10_000)

    def merge(self, other: Summary) -> Summary:
        """The summary of both runs' samples (they must be disjoint)."""
        if other.num_layers != self.num_layers:
            raise ValueError(f"cannot merge summaries of {self.num_layers} and "
                             f"{other.num_layers} layers")
        merged = Summary(num_layers=self.num_layers, oracle=self.oracle and other.oracle,
                         tasks=self.tasks | other.tasks)
        for name in _COUNTS:
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        return merged

    @property
    def total_seconds(self) -> float:
        return self.total_ticks / 10_000

    @property
    def mean_length(self) -> float | None:
        return self.total_length / self.samples if self.samples else None

    def progress_line(self) -> str:
        depth = (self.mean_length or 0) / self.num_layers
        return (f"fixed {self.wrong_fixed}/{self.wrong} wrong, "
                f"shortened {self.right_shortened}/{self.right} right, depth {depth:.2f}")

    def as_dict(self) -> dict[str, Any]:
        n = self.samples
        mean_length = self.mean_length
        return {
            "oracle": self.oracle,
            "num_layers": self.num_layers,
            "samples": n,
            "tasks": sorted(self.tasks),
            "full_chain_right": self.right,
            "right_with_shorter_chain": self.right_shortened,
            "shorter_when_right": _share(self.right_shortened, self.right),
            "full_chain_wrong": self.wrong,
            "wrong_fixed_by_some_chain": self.wrong_fixed,
            "fixed_when_wrong": _share(self.wrong_fixed, self.wrong),
            "oracle_accuracy": _share(self.oracle_correct, n),
            "full_chain_accuracy": _share(self.right, n),
            "mean_best_length": round(mean_length, 4) if mean_length is not None else None,
            "mean_depth_ratio": round(mean_length / self.num_layers, 4) if n else None,
            "mean_evaluations": round(self.total_evaluations / n, 3) if n else None,
            "total_search_seconds": round(self.total_seconds, 3),
            "seconds_per_sample": round(self.total_seconds / n, 4) if n else None,
            # exact sums, so summaries merge without re-deriving from rounded means
            "total_best_length": self.total_length,
            "total_evaluations": self.total_evaluations,
            "oracle_correct": self.oracle_correct,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary | None:
        """A summary from ``as_dict``'s output; None when it lacks the exact sums (written
        by lm-eval-cola before they were added)."""
        needed = ("num_layers", "total_best_length", "total_evaluations", "oracle_correct")
        if any(data.get(k) is None for k in needed):
            return None
        return cls(
            num_layers=int(data["num_layers"]), oracle=bool(data.get("oracle", True)),
            samples=int(data["samples"]), right=int(data["full_chain_right"]),
            right_shortened=int(data["right_with_shorter_chain"]),
            wrong=int(data["full_chain_wrong"]),
            wrong_fixed=int(data["wrong_fixed_by_some_chain"]),
            oracle_correct=int(data["oracle_correct"]),
            total_length=int(data["total_best_length"]),
            total_evaluations=int(data["total_evaluations"]),
            total_ticks=round(float(data["total_search_seconds"]) * 10_000),
            tasks=set(data.get("tasks") or ()),
        )

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> Summary:
        records = list(records)
        if not records:
            raise ValueError("no records to summarise")
        summary = cls(num_layers=records[0].num_layers, oracle=records[0].oracle)
        for record in records:
            summary.add(record)
        return summary
