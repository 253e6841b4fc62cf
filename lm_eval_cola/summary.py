"""The paper's two findings, counted over every searched sample (nothing filtered):

- among samples the full chain gets right, the share with a correct strictly shorter chain;
- among samples the full chain gets wrong, the share with some correct chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class Summary:
    num_layers: int
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

    def add(self, record: dict[str, Any]) -> None:
        self.samples += 1
        self.tasks.add(record["task"])
        best_correct = bool(record["best_correct"])
        if record["full_correct"]:
            self.right += 1
            self.right_shortened += int(best_correct and record["best_length"] < self.num_layers)
        else:
            self.wrong += 1
            self.wrong_fixed += int(best_correct)
        self.oracle_correct += int(best_correct)
        self.total_length += int(record["best_length"])
        self.total_evaluations += int(record["evaluations"])
        self.total_ticks += round(float(record["seconds"]) * 10_000)

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
            "oracle": True,
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
        }

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Summary:
        if not records:
            raise ValueError("no records to summarise")
        summary = cls(num_layers=int(records[0]["num_layers"]))
        for record in records:
            summary.add(record)
        return summary
