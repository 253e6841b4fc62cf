"""From search results to a deployable model: one chain per task (``calibrate.py``), static
pruning baselines (``pruning.py``) and a chain as a standalone checkpoint (``export.py``).
The command-line parts live in ``cli/``."""
