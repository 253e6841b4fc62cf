"""The paper's benchmark suite as lm-eval tasks: the YAML files here, and beside them the
Python their ``!function`` lines name (``arc.py``, ``dart.py``), as lm-eval's task folders
have it. On lm-eval's task path automatically (``compat/task_path.py``)."""
