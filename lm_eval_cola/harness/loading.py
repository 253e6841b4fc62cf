"""Which model a cola model loads, its display name and how ``verify`` reloads it; and
loading errors turned into one line (a misspelt model_arg, a path that is not a model)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class ChosenModel:
    pretrained: Any  # what HFLM loads: a folder, a Hub id or a model object
    kwargs: dict[str, Any]  # HFLM's other arguments
    label: str  # the display name (records, results)
    load_args: dict[str, Any] = field(default_factory=dict)  # how verify reloads it


def choose_model(pretrained: Any, kwargs: dict[str, Any]) -> ChosenModel:
    """``pretrained`` as given, or the embedded default model when it is None."""
    if pretrained is None:
        from lm_eval_cola.harness.default_model import default_model, prepare

        model = default_model()
        logger.info("no pretrained= given: using the embedded default model %s (%s)",
                    model.name, model.gguf_path)
        load = prepare(model)
        if "gguf_file" in load:
            kwargs.setdefault("gguf_file", load["gguf_file"])
        chosen = ChosenModel(load["pretrained"], kwargs, model.name)
    else:
        label = str(getattr(pretrained, "name_or_path", pretrained))
        if (isinstance(pretrained, str) and pretrained.startswith(("/", ".", "~"))
                and not Path(pretrained).expanduser().exists()):  # a path, not a Hub id
            raise UserError(f"pretrained={pretrained!r} does not exist; allowed: a local "
                            "model folder or a Hub id in the local cache")
        load_args = {"pretrained": label}
        load_args.update({k: kwargs[k] for k in ("gguf_file", "revision") if k in kwargs})
        chosen = ChosenModel(pretrained, kwargs, label, load_args)
    if "dtype" in kwargs:
        chosen.load_args["dtype"] = str(kwargs["dtype"])
    return chosen


@contextmanager
def load_errors(chosen: ChosenModel, unknown: Any) -> Iterator[None]:
    """HFLM's loading errors as one line: ``unknown(name)`` makes the error for a
    model_arg that reached the model's constructor (a misspelt one of ours)."""
    try:
        yield
    except TypeError as err:
        found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if found is not None and found.group(1) in chosen.kwargs:
            raise unknown(found.group(1)) from None
        raise
    except OSError as err:  # transformers' "not a folder, not a Hub id it can reach"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load pretrained={chosen.label!r} ({first}); allowed: "
                        "a local model folder or a Hub id in the local cache") from None
