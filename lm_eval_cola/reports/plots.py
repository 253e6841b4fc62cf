"""The board's plots (matplotlib PNG), per task, from plain ``Series`` and ``Record`` objects:

- ``layers_<task>.png``: per oracle row, the share of samples whose found chain skips, uses
  once, or repeats each layer (a stacked bar per layer). Found chains: the best chain of
  every sample where the search found a correct one. The counts are written as a table
  too, ``layers_<task>.csv`` (``tables.layer_lines``).
- ``lengths_<task>.png``: histogram of the best-chain length per oracle row, against the
  full depth (a dashed line).
- ``pareto_<task>.png``: the task's main metric against mean depth, one point per row
  (searchers, fixed chains, plain runs), with the Pareto front (higher metric, lower depth)
  of the deployable rows: an oracle's point is an upper bound, never on the front.
- ``depth_<task>.png``: the task's main metric against mean executed depth, one labelled
  series per series kind present (full model, static chain, pruning baseline, router, oracle;
  see ``runs.series_kind``), each point with its stderr as an error bar where the results
  give one (``depth_points`` is the data drawn). A router's x is its executed depth (its
  chains plus the feature layers they skip), an oracle's the depth of its best chains (not
  the layers its search ran).

Rows that searched nothing (searcher ``none``) only ever ran the full chain, so they are left
out of the first two. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import parse_chain
from lm_eval_cola.reports.runs import (
    FULL_MODEL,
    ORACLE,
    PRUNING,
    ROUTER,
    SERIES_KINDS,
    STATIC_CHAIN,
)
from lm_eval_cola.results.records import Record

COLORS = {"skipped": "#adb5bd", "used once": "#4c6ef5", "repeated": "#f76707"}
# series kind -> (legend label, marker, colour) in the depth plot
SERIES_STYLE = {
    FULL_MODEL: ("full model", "s", "#495057"),
    STATIC_CHAIN: ("static chain", "o", "#4c6ef5"),
    PRUNING: ("pruning baseline", "v", "#2f9e44"),
    ROUTER: ("router", "D", "#ae3ec9"),
    ORACLE: ("oracle (upper bound; x: best-chain depth)", "*", "#f76707"),
}


@dataclass
class Series:
    """One board row as one task's plots see it."""

    model: str
    variant: str
    label: str  # the variant with its settings
    kind: str  # "search" | "chain" | "plain"
    oracle: bool
    value: float | None = None  # the task's main metric
    stderr: float | None = None
    depth: float | None = None  # mean chain length / layers on this task
    records: list[Record] = field(default_factory=list)  # this task's
    series_kind: str = FULL_MODEL  # see runs.series_kind
    executed_depth: float | None = None  # layers run / layers (router: with feature layers)

    @property
    def x(self) -> float | None:
        """Where the depth axes place the row: its executed depth, else its depth."""
        return self.depth if self.executed_depth is None else self.executed_depth


@dataclass
class DepthPoint:
    """One point of the depth plot."""

    name: str
    depth: float
    value: float
    stderr: float | None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never open a window or need a display
    import matplotlib.pyplot as plt

    return plt


def safe_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task)


def _name(series: Series, many_models: bool) -> str:
    return f"{series.model} · {series.label}" if many_models else series.label


def _short_names(rows: list[Series]) -> list[str]:
    """Point labels: the variant alone where that is unambiguous."""
    many = len({r.model for r in rows}) > 1
    names = []
    for row in rows:
        twins = [r for r in rows if r.variant == row.variant and r.model == row.model]
        name = row.variant if len(twins) == 1 else row.label
        names.append(f"{row.model} · {name}" if many else name)
    return names


def searched(rows: list[Series]) -> list[Series]:
    return [r for r in rows if r.oracle and r.records]


def layer_counts(records: list[Record]) -> tuple[int, list[list[int]]]:
    """(samples with a correct chain, per layer [skipped, used once, repeated]) over the
    found chains."""
    if not records:
        return 0, []
    found = [r for r in records if r.best_correct]
    num_layers = records[0].num_layers
    counts = [[0, 0, 0] for _ in range(num_layers)]
    for record in found:
        # the cap only guards parsing: a recorded chain was valid when it ran
        chain = parse_chain(record.best_chain, num_layers, max(record.best_length, 2 * num_layers))
        for layer in range(num_layers):
            counts[layer][min(chain.count(layer), 2)] += 1
    return len(found), counts


def plot_layers(rows: list[Series], task: str, path: Path) -> bool:
    rows = searched(rows)
    if not rows:
        return False
    plt = _pyplot()
    many = len({r.model for r in rows}) > 1
    height = 1.2 + 2.0 * len(rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, height), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        found, counts = layer_counts(row.records)
        layers = list(range(len(counts)))
        bottom = [0.0] * len(counts)
        for k, (name, color) in enumerate(COLORS.items()):
            share = [c[k] / found if found else 0.0 for c in counts]
            ax.bar(layers, share, bottom=bottom, color=color, label=name, width=0.85)
            bottom = [b + s for b, s in zip(bottom, share, strict=True)]
        if not found:
            ax.text(0.5, 0.5, "no correct chain found", transform=ax.transAxes, ha="center",
                    va="center", color="#868e96")
        ax.set_xlim(-0.6, len(counts) - 0.4)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share")
        ax.set_title(f"{_name(row, many)}: {found} of {len(row.records)} samples "
                     "with a correct chain", fontsize=10)
        ax.set_xticks(layers[:: max(1, len(layers) // 30)])
    axes[-1, 0].set_xlabel("layer")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"{task}: layers in the found chains", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    fig.legend(handles, labels, loc="upper right", ncols=3, fontsize=8, frameon=False)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_lengths(rows: list[Series], task: str, path: Path) -> bool:
    rows = searched(rows)
    if not rows:
        return False
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    many = len({r.model for r in rows}) > 1
    depths = {rec.num_layers for r in rows for rec in r.records}
    relative = len(depths) > 1  # different models: lengths as a share of their depth
    values = {_name(row, many): [rec.depth_ratio if relative else rec.best_length
                                 for rec in row.records] for row in rows}
    top = max(max(v) for v in values.values())
    low = min(min(v) for v in values.values())
    full = 1.0 if relative else float(next(iter(depths)))
    if relative:  # 5% bins over the lengths seen and the full depth
        step = 0.05
        bins = [i * step for i in range(int(low / step), int(max(top, full) / step) + 2)]
    else:  # one bin a length, from the shortest chain seen to the longest or full depth
        bins = [b - 0.5 for b in range(int(low), int(max(top, full)) + 2)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(list(values.values()), bins=bins, label=list(values), histtype="bar", alpha=0.85)
    ax.axvline(full, color="black", linestyle="--", linewidth=1.2, label="full depth")
    ax.set_xlabel("best-chain length / layers" if relative else "best-chain length (layers run)")
    ax.set_ylabel("samples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{task}: best-chain length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both (lower depth, higher metric), by depth."""
    front = []
    best = float("-inf")
    for depth, value in sorted(points, key=lambda p: (p[0], -p[1])):
        if value > best:
            front.append((depth, value))
            best = value
    return front


def plot_pareto(rows: list[Series], task: str, metric: str, path: Path) -> bool:
    points = [r for r in rows if r.value is not None and r.x is not None]
    if not points:
        return False
    xy = [(float(r.x or 0.0), float(r.value or 0.0)) for r in points]  # all present
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    placed: dict[tuple[float, float], int] = {}
    for row, name, (depth, value) in zip(points, _short_names(points), xy, strict=True):
        if row.oracle:
            marker, color = "*", "#f76707"
        elif row.kind == "chain":
            marker, color = "o", "#4c6ef5"
        else:  # the full chain: a plain run or searcher none
            marker, color = "s", "#495057"
        ax.errorbar(depth, value, yerr=row.stderr, fmt=marker, color=color, markersize=10,
                    capsize=3)
        spot = (round(depth, 3), round(value, 4))
        stack = placed[spot] = placed.get(spot, -1) + 1  # points on one spot: labels stack
        ax.annotate(name, (depth, value), textcoords="offset points",
                    xytext=(7, 5 + 11 * stack), fontsize=8)
    # oracle points are upper bounds: the front is of the deployable rows alone
    front = pareto_front([p for r, p in zip(points, xy, strict=True) if not r.oracle])
    ax.plot([d for d, _ in front], [v for _, v in front], color="#868e96", linestyle=":",
            linewidth=1, label="Pareto front (deployable)")
    ax.set_xlabel("mean depth (chain length / layers; a router's with its feature layers)")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {metric} vs depth (★ oracle search, ■ full chain, ● fixed chain)",
                 fontsize=11)
    ax.margins(x=0.15, y=0.15)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def depth_points(rows: list[Series]) -> dict[str, list[DepthPoint]]:
    """The depth plot's data: per series kind present (in ``SERIES_KINDS`` order, any other
    kind after), its rows' points (x: ``Series.x``), named as the Pareto plot names them."""
    rows = [r for r in rows if r.value is not None and r.x is not None]
    out: dict[str, list[DepthPoint]] = {}
    for row, name in zip(rows, _short_names(rows), strict=True):
        out.setdefault(row.series_kind, []).append(
            DepthPoint(name, float(row.x or 0.0), float(row.value or 0.0), row.stderr))
    order = {kind: n for n, kind in enumerate(SERIES_KINDS)}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def plot_depth(rows: list[Series], task: str, metric: str, path: Path) -> bool:
    series = depth_points(rows)
    if not series:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    placed: dict[tuple[float, float], int] = {}
    for kind, points in series.items():
        label, marker, color = SERIES_STYLE.get(kind, (kind, "X", "#212529"))
        # one legend entry a series; error bars only where the results give a stderr
        for n, part in enumerate(([p for p in points if p.stderr is not None],
                                  [p for p in points if p.stderr is None])):
            if not part:
                continue
            ax.errorbar([p.depth for p in part], [p.value for p in part],
                        yerr=[p.stderr for p in part] if n == 0 else None, fmt=marker,
                        color=color, markersize=12 if marker == "*" else 8, capsize=3,
                        label=label, linestyle="none")
            label = "_nolegend_"
        for point in points:
            spot = (round(point.depth, 3), round(point.value, 4))
            stack = placed[spot] = placed.get(spot, -1) + 1  # points on one spot: labels stack
            ax.annotate(point.name, (point.depth, point.value), textcoords="offset points",
                        xytext=(7, 4 + 10 * stack), fontsize=7, color=color)
    ax.axvline(1.0, color="#adb5bd", linestyle="--", linewidth=1)  # the full depth
    ax.set_xlabel("mean executed depth (layers run / layers)")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {metric} vs mean executed depth", fontsize=11)
    ax.margins(x=0.15, y=0.15)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_plots(tasks: dict[str, tuple[str, list[Series]]], out_dir: Path) -> list[Path]:
    """All plots into ``out_dir``: ``tasks`` maps a task to (its metric's label, its series).
    Returns the files written."""
    written = []
    for task, (metric, rows) in tasks.items():
        pareto, depth, layers, lengths = (Path(out_dir) / f"{kind}_{safe_name(task)}.png"
                                          for kind in ("pareto", "depth", "layers", "lengths"))
        if plot_pareto(rows, task, metric, pareto):
            written.append(pareto)
        if plot_depth(rows, task, metric, depth):
            written.append(depth)
        if plot_layers(rows, task, layers):
            written.append(layers)
        if plot_lengths(rows, task, lengths):
            written.append(lengths)
    return written
