"""Fixed oracle runs on the tiny model whose records and metrics are kept as a golden file
(tests/data/golden_tiny.json, written by the code before the ask/tell redesign), so a
refactor of the search path is checked to change no chain, decision or score.

Regenerate (only when a change of results is intended, and say so in the commit):
    COLA_DATA_DIR=../shared/data python -m tests.support.golden_runs tests/data/golden_tiny.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

# (model, extra model_args, task, limit, extra simple_evaluate kwargs)
RUNS: list[tuple[str, str, str, int, dict[str, Any]]] = [
    ("cola_mcts", "budget=8", "arc_challenge", 6, {}),
    ("cola_mcts", "budget=8,search_batch=1", "arc_challenge", 3, {}),
    ("cola_greedy", "budget=10", "arc_challenge", 4, {}),
    ("cola_random", "budget=6,seed=7", "arc_easy", 4, {}),
    ("cola_hf", "searcher=none", "arc_challenge", 3, {}),
    ("cola_mcts", "budget=4", "gsm8k", 2, {"gen_kwargs": "max_gen_toks=12"}),
]
# timings, and what names this machine (the tiny model's temporary folder)
TIMING = ("seconds", "version", "model", "load_args")
SUMMARY_TIMING = ("total_search_seconds", "seconds_per_sample")
# Fields added by the redesign (schema 2), and the random searcher's batch_size setting it
# removed (it took lm-eval's own batch_size): compared only where both sides have them.
NEW_FIELDS = ("schema", "oracle", "model", "total_best_length", "total_evaluations",
              "oracle_correct", "num_layers", "batch_size",
              # the search-space settings (actions, presets, deep MCTS); None = the old space
              "protocol", "actions", "block_sizes", "loop_repeats", "max_copies", "mode",
              "reward", "pw_c", "pw_alpha", "exploration", "root_block_sizes",
              # searchers' parallel=W (chains asked at once per sample; 1 = the asks of before)
              "parallel",
              # schema 3 records (non-finite chains, cost, every chain, the chance control)
              "nonfinite", "evaluated_layers", "chains", "decoy", "pareto", "full_finite",
              "search_notes",
              # summary keys added with them
              "shorter_when_right_ci", "fixed_when_wrong_ci", "oracle_accuracy_ci",
              "depth_ratio_shortened", "depth_ratio_fixed", "mean_edits",
              "mean_evaluated_layers", "decoy_reached_when_wrong",
              "decoy_reached_when_wrong_ci", "decoy_shortened_when_right",
              "decoy_shortened_when_right_ci", "total_shortened_length", "total_fixed_length",
              "total_edits", "edit_samples", "total_evaluated_layers", "cost_samples",
              "nonfinite_chains", "nonfinite_samples", "decoy_full_right",
              "decoy_right_shortened", "decoy_full_wrong", "decoy_wrong_reached",
              "total_decoy_evaluations", "per_task",
              # the paired test of each finding against its decoy, and the no-decoy samples
              "fixed_vs_decoy", "shorter_vs_decoy", "decoy_wrong_fixed", "decoy_wrong_both",
              "decoy_right_shorter", "decoy_right_both", "no_decoy_right", "no_decoy_wrong",
              "decoy_unpaired",
              # how short the decoy's shortest chains are (issue #21's ARC runs)
              "total_decoy_shortened_length", "decoy_shortened_measured",
              "decoy_depth_ratio_shortened")


def run_all(tiny_dir: str, work: Path) -> dict[str, Any]:
    import lm_eval

    out: dict[str, Any] = {}
    for i, (model, extra, task, limit, kwargs) in enumerate(RUNS):
        records = work / f"records_{i}.jsonl"
        args = f"pretrained={tiny_dir},device=cpu,{extra},records={records}"
        results = lm_eval.simple_evaluate(model=model, model_args=args, tasks=[task],
                                          limit=limit, **kwargs)
        rows = [json.loads(line) for line in records.read_text().splitlines()]
        rows = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
        summary = {k: v for k, v in results["config"]["cola_summary"].items()
                   if k not in SUMMARY_TIMING}
        out[f"{i}:{model}:{extra}:{task}"] = {
            "records": sorted(rows, key=lambda r: (r["task"], r["doc_id"])),
            "metrics": {k: v for k, v in results["results"][task].items() if k != "alias"},
            "summary": summary,
        }
    return out


def main(path: str) -> None:
    import lm_eval_cola.harness.models  # noqa: F401  (registers the models)
    from tests.support.tiny_models import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_tiny_model(Path(tmp) / "llama")
        data = run_all(tiny, Path(tmp))
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
