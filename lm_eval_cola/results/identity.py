"""One definition of "the same evaluation": what, beside the model and the search, decides
a sample's prompt and decoding, and so whether two runs' records and scores may stand in
for each other.

``EvalIdentity`` holds the prompt and decoding settings lm-eval takes beside the model: the
chat template, the system instruction, few-shot count and multi-turn few-shot, gen_kwargs,
and ``--samples``. It is built from what a model is handed at run time (the evaluator hook,
``compat/hooks.py``) or from a results file, and it names the records file
(``RunFacts.config_hash``), keys the leaderboard's rows (``reports/runs.py``) and is half of
``conditions.RunConditions``, the check ``compare``'s resume and ``table1 --reuse`` share.
The default (plain prompts, no system instruction, each task's own few-shot count, no gen_kwargs, no
``--samples``) adds nothing to a hash, so records of older versions keep their names.

``--limit`` is no part of a records file's name: lm-eval takes the first docs, and a doc's
prompt (few-shot draws included) is the same under any limit, so a run with a larger limit
resumes from a smaller one's records. ``--samples`` picks docs out of order, which changes
the few-shot examples a doc draws, so it is part of the name.

Pure: no torch, transformers or lm-eval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# A chat template applied whose text is not known here (compare asks for "the model's").
APPLIED = "applied"
# model_args that never change a result: left out of row keys and of the same-run checks.
NEUTRAL_ARGS = frozenset({"device", "batch_size", "max_batch_size", "records",
                          "prefix_cache_bytes", "generation_kv_bytes", "search_batch",
                          "fast", "parallelize", "trust_remote_code"})
# model_args at the value every run had before they existed: at it, left out of row keys,
# same-run checks and records names as if not given (older runs and records still match);
# at any other value kept. numerics=fast may change a decision (a near tie rounds the other
# way), so its runs are other runs.
DEFAULT_VALUED_ARGS = {"numerics": "exact"}


def deciding_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` (model_args) less NEUTRAL_ARGS and those at their DEFAULT_VALUED_ARGS
    value: the ones that may change a result."""
    return {k: v for k, v in args.items() if k not in NEUTRAL_ARGS
            and not (k in DEFAULT_VALUED_ARGS and _value_text(v) == DEFAULT_VALUED_ARGS[k])}


def numerics_key(numerics: str | None) -> dict[str, str]:
    """A records name's part for ``numerics``: nothing for exact (or not given), so records
    of exact runs keep their names; ``{"numerics": value}`` otherwise."""
    return deciding_args({"numerics": numerics}) if numerics is not None else {}


def text_hash(text: str) -> str:
    """lm-eval's ``hash_string``: the sha256 it stores beside a chat template."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _arg_value(text: str) -> Any:
    """A ``k=v`` value as lm-eval's ``handle_arg_string`` reads it."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lower = text.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        value = _arg_value(value)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return str(value)


def normal_gen_kwargs(value: Any) -> tuple[tuple[str, str], ...]:
    """gen_kwargs as given (``k=v,k=v`` text or a dict, as lm-eval stores it), sorted, each
    value as text: the text and its parsed dict compare equal."""
    if not value:
        return ()
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        value = {k.strip(): (v[0] if v else "") for k, *v in pairs}
    if not isinstance(value, Mapping):
        return (("", str(value)),)
    return tuple(sorted((str(k), _value_text(v)) for k, v in value.items()))


@dataclass(frozen=True)
class EvalIdentity:
    """A run's prompt and decoding settings besides the model (see the module docstring)."""

    chat_template: str | None = None  # sha256 of the template applied (APPLIED: not known)
    system_instruction: str | None = None  # sha256 of it
    fewshot_as_multiturn: bool = False  # only with a chat template: plain prompts ignore it
    num_fewshot: int | None = None  # as given; None: each task's own count
    gen_kwargs: tuple[tuple[str, str], ...] = ()
    samples: tuple[tuple[str, tuple[int, ...]], ...] = ()  # --samples: doc ids per task

    @classmethod
    def make(cls, chat_template: str | None = None, system_instruction: str | None = None,
             fewshot_as_multiturn: bool = False, num_fewshot: Any = None,
             gen_kwargs: Any = None, samples: Mapping[str, Any] | None = None,
             chat_template_sha: str | None = None) -> EvalIdentity:
        """From the settings as given. ``chat_template``: the template's text ("" or
        APPLIED: applied, text not known; None: plain prompts)."""
        template = chat_template_sha or (
            None if chat_template is None
            else APPLIED if chat_template in ("", APPLIED) else text_hash(chat_template))
        shots = None if num_fewshot is None or isinstance(num_fewshot, bool) \
            else int(num_fewshot)
        return cls(
            chat_template=template,
            system_instruction=text_hash(system_instruction) if system_instruction else None,
            fewshot_as_multiturn=bool(fewshot_as_multiturn) and template is not None,
            num_fewshot=shots, gen_kwargs=normal_gen_kwargs(gen_kwargs),
            samples=tuple(sorted((str(t), tuple(sorted(int(i) for i in ids)))
                                 for t, ids in (samples or {}).items())),
        )

    @classmethod
    def from_results(cls, data: Mapping[str, Any]) -> EvalIdentity:
        """From an lm-eval results file (``cola_num_fewshot`` and ``cola_samples`` are
        written by the evaluator hook; without them, each task's own few-shot count and no
        ``--samples`` are assumed, as before they were written)."""
        config = data.get("config") or {}
        template = data.get("chat_template")
        applied = template is not None or bool(data.get("chat_template_sha"))
        system = data.get("system_instruction")
        identity = cls.make(chat_template=(template or "") if applied else None,
                            chat_template_sha=data.get("chat_template_sha") or None,
                            system_instruction=system if isinstance(system, str) else None,
                            fewshot_as_multiturn=bool(data.get("fewshot_as_multiturn")),
                            num_fewshot=config.get("cola_num_fewshot"),
                            gen_kwargs=config.get("gen_kwargs"),
                            samples=config.get("cola_samples") or None)
        sha = data.get("system_instruction_sha")
        if sha and identity.system_instruction is None:  # the text was not kept, its hash was
            identity = cls(**{**identity._asdict(), "system_instruction": str(sha)})
        return identity

    def _asdict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def hash_fields(self) -> dict[str, Any]:
        """The settings that are not the default, for a hash: empty for the default."""
        default = EvalIdentity()
        out = {}
        for name, value in self._asdict().items():
            if value != getattr(default, name):
                out[name] = [list(v) if isinstance(v, tuple) else v for v in value] \
                    if isinstance(value, tuple) else value
        return out

    @property
    def key(self) -> str:
        """Equal for runs whose prompts and decoding are the same (a row key's part)."""
        return json.dumps(self.hash_fields(), sort_keys=True)

    def describe(self) -> list[str]:
        """The non-default settings as a leaderboard's settings column shows them."""
        parts = []
        if self.chat_template is not None:
            sha = "" if self.chat_template == APPLIED else f" {self.chat_template[:7]}"
            parts.append(f"chat template{sha}")
            if self.fewshot_as_multiturn:
                parts.append("multi-turn few-shot")
        if self.system_instruction is not None:
            parts.append(f"system instruction {self.system_instruction[:7]}")
        if self.num_fewshot is not None:
            parts.append(f"{self.num_fewshot}-shot")
        if self.gen_kwargs:
            parts.append("gen_kwargs " + ",".join(f"{k}={v}" for k, v in self.gen_kwargs))
        if self.samples:
            parts.append(f"--samples ({sum(len(ids) for _, ids in self.samples)} docs)")
        return parts

    def difference(self, other: EvalIdentity) -> str | None:
        """The first setting that differs, as ``<setting> <mine> != <other's>``; None: the
        same prompts and decoding. An APPLIED template equals any applied template."""
        def shown(name: str, value: Any) -> str:
            if value in (None, (), False):
                return {"chat_template": "none (plain prompts)", "num_fewshot":
                        "the task's default", "fewshot_as_multiturn": "false"}.get(name, "none")
            if name in ("chat_template", "system_instruction") and value != APPLIED:
                return f"sha256 {str(value)[:12]}"
            if name == "gen_kwargs":
                return ",".join(f"{k}={v}" for k, v in value)
            return str(value).lower() if isinstance(value, bool) else str(value)

        for name, mine in self._asdict().items():
            theirs = getattr(other, name)
            if name == "chat_template" and mine is not None and theirs is not None \
                    and APPLIED in (mine, theirs):
                continue
            if name == "fewshot_as_multiturn" and (self.chat_template is None
                                                   or other.chat_template is None):
                continue  # plain prompts: the chat template's difference says it all
            if mine != theirs:
                label = name.replace("_", " ") if name != "gen_kwargs" else "gen_kwargs"
                return f"{label} {shown(name, mine)} != {shown(name, theirs)}"
        return None
