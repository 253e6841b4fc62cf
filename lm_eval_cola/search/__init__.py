"""The oracle search: the algorithms (``searchers/``), the scheduler that batches many
samples' searches, the driver (``driver.py``: ``OracleSearch``, records and the run summary),
the judge (``judge.py``: the task's own metric), the chance control (``decoy.py``) and the
progress bar. Imports engine, results, chains and compat; never harness, deploy or cli."""
