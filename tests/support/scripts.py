"""Load a script under ``benchmarks/`` (not a package) as a module, for tests of its parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parents[2]


def load_script(relative: str) -> ModuleType:
    """The script at ``relative`` (to the repository root), imported under a name of its
    own; registered in ``sys.modules`` because dataclasses look their module up by name."""
    path = ROOT / relative
    name = "script_" + "_".join(Path(relative).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
