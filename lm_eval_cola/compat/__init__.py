"""The compatibility layer: everything that touches lm-eval beyond its documented API.

* ``registration`` - what the start-up hook (``lm_eval_cola/_autoload.py``, imported by the
  ``.pth`` file) does once lm-eval is imported: register our models, install the rest.
* ``hooks`` - the evaluator patches (task objects to cola models, the results folder, the
  default model's run name, ``--use_cache`` refused).
* ``local_data`` - lm-eval's tasks read ``COLA_DATA_DIR`` instead of the hub.
* ``task_path`` - our task folder (``lm_eval_cola/tasks``) on every TaskManager's task path.
* ``lm_eval_private`` - the only module that names lm-eval's private symbols.
* ``version`` - the lm-eval version gate.

Importing this package imports neither lm-eval nor torch.
"""

from lm_eval_cola.compat.hooks import tasks_attached
from lm_eval_cola.compat.version import (
    SUPPORTED_RANGE,
    TESTED_LM_EVAL,
    UnsupportedLmEvalError,
    check_lm_eval_version,
)

__all__ = [
    "SUPPORTED_RANGE",
    "TESTED_LM_EVAL",
    "UnsupportedLmEvalError",
    "check_lm_eval_version",
    "tasks_attached",
]
