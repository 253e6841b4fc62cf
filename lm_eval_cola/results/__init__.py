"""What a run leaves behind and what it means: records (``records.py``), the run summary
(``summary.py``), the statistics (``stats.py``) and "the same evaluation" (``identity.py``).
No torch, transformers or lm-eval: reports and the leaderboard read these anywhere."""
