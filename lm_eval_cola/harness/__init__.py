"""The lm-eval side: the cola models lm-eval runs (``models.py``: ``cola_hf`` ...), their
settings (``config.py``), requests grouped into samples and answered back (``requests.py``),
which model loads (``loading.py``), what a model states about its run (``run_info.py``), the
embedded default model, the evaluation-call contract with the evaluator hook, data-parallel
ranks, run conditions, the router model's router and the notes under lm-eval's table.
Imports search, engine, results, chains and compat."""
