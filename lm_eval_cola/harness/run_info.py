"""What a cola model states about its run: the facts every record of its search shares
(``RunFacts``), where its records go, its search driver, and the ``cola_*`` keys it adds
to lm-eval's results config. ``lm`` is a cola model (``models.ColaHFLM``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lm_eval_cola import __version__
from lm_eval_cola.chains.files import provenance
from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.compat import hooks
from lm_eval_cola.errors import UserError
from lm_eval_cola.harness.config import ColaConfig
from lm_eval_cola.search.driver import OracleSearch, RunFacts, jsonable, records_path
from lm_eval_cola.search.judge import TaskJudges

logger = logging.getLogger(__name__)


def new_judges(cola: ColaConfig) -> TaskJudges:
    """The judges of one evaluation: the search's oracle metric and filter (none for a
    fixed chain or the router, which judge nothing)."""
    search = cola.search
    return TaskJudges(search.oracle_metric if search else None,
                      search.oracle_filter if search else None, cola.engine.include_path)


def graded_reward(searcher: Any) -> bool:
    """Whether ``searcher``'s reward is graded (None: no searcher): generation answers then
    carry teacher-forced values (the runner asks at each sample)."""
    settings = searcher.settings if searcher is not None else None
    return getattr(settings, "reward", None) == "graded"


def run_facts(lm: Any) -> RunFacts:
    """What every record of ``lm``'s search in this evaluation shares."""
    search = lm.cola.search
    assert lm.searcher is not None and search is not None
    return RunFacts(model=lm.model_label, load_args=lm.load_args, num_layers=lm.num_layers,
                    searcher=lm.searcher, seed=lm.search_seed()[0],
                    keep_correct=search.keep_correct, dtype=str(lm.model.dtype),
                    oracle_metric=search.oracle_metric, oracle_filter=search.oracle_filter,
                    max_chain_length=lm.max_chain_length, control=search.control,
                    record_chains=search.record_chains, evaluation=lm.evaluation)


def records_file(lm: Any, rank: int | None = None) -> Path | None:
    """``lm``'s records file on this rank (or ``rank``'s); None when there is nowhere to
    keep it."""
    if lm.searcher is None or lm.cola.search is None:
        return None
    return records_path(lm.cola.search.records, hooks.output_folder(), lm.searcher.name,
                        run_facts(lm).config_hash(), lm.rank if rank is None else rank,
                        lm.world_size)


def make_search(lm: Any) -> OracleSearch:
    """``lm``'s search driver for this evaluation (made on first use: the records file's
    folder is only known once lm-eval's tracker exists)."""
    if lm.searcher is None:
        raise UserError("no searcher: add searcher=<mcts|greedy|random|none>")
    logger.info("search seed %d (from %s)", *lm.search_seed())
    return OracleSearch(lm.runner, lm.judges, run_facts(lm), lm.cola.engine.search_batch,
                        records_file(lm), lm.rank, lm.world_size)


def model_info(lm: Any) -> dict[str, Any]:
    """The ``cola_*`` keys of lm-eval's results config: the model and its chain, and for
    a searching model its searcher, seed, records files and summary."""
    info: dict[str, Any] = {
        "cola_version": __version__,
        "cola_model": lm.model_label,
        "cola_num_layers": lm.num_layers,
        "cola_chain": format_chain(lm.chain),
        "cola_chain_length": len(lm.chain),
        "cola_depth_ratio": round(len(lm.chain) / lm.num_layers, 4),
        "cola_oracle": lm.cola.oracle,
    }
    source = provenance(lm.cola.chain)
    if source:
        info["cola_chain_source"] = source
    if lm.searcher is None:
        return info
    search = lm.oracle_search()
    seed, source = lm.search_seed()
    info.update(cola_searcher=lm.searcher.name, cola_control=lm.cola.search.control,
                cola_settings=jsonable(lm.searcher.settings), cola_seed=seed,
                cola_seed_source=source)
    info["cola_records"] = str(search.records_file) if search.records_file else None
    if lm.world_size > 1 and search.records_file is not None:
        # get_model_info runs on rank 0 only: name every rank's file.
        info["cola_records_files"] = [str(records_file(lm, rank))
                                      for rank in range(lm.world_size)]
    info["cola_summary"] = search.summary.as_dict()
    if lm.cola.engine.share_prompts:  # tokens may then differ at float rounding
        info["cola_share_prompts"] = True
    return info
