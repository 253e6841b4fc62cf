"""A chain as a standalone Hugging Face checkpoint (the library of ``lm-eval-cola export``;
its arguments and run are in ``cli/export.py``).

``--mergekit FILE`` (with or without ``--out``) writes the chain as a mergekit passthrough
config instead of, or beside, the checkpoint; it reads only the source's config, and
``mergekit-yaml FILE OUT`` then builds the same model (``tests/test_mergekit.py``).

The checkpoint is a plain model of the source architecture whose decoder layer ``p`` is a
copy of source layer ``chain[p]``: ``config.json`` with the chain's layer count (and the
per-layer config lists re-indexed for the new order), the weights as safetensors, the
tokenizer, the generation config, and a ``README.md`` model card naming the source model,
the chain and how it was found. ``lm_eval --model hf``, transformers and serving engines
load it with no plugin, and it gives the log-likelihoods ``cola_hf chain=CHAIN`` gives
(``tests/test_export.py``, every supported architecture).

What is re-indexed, position by position (``chain[p]`` is the source layer at ``p``):

- the layer count (``architectures.yaml``: ``layer_count``);
- the per-layer attention types (``layer_types``): a sliding-window layer stays one;
- Qwen MoE's dense-vs-sparse layers (``mlp_only_layers``, ``decoder_sparse_step``), so a
  dense layer moved to another position is still built dense;
- ``layer_idx`` needs nothing: a freshly built model numbers its layers 0..len-1.

The new model is built from the new config and the copied weights are loaded into it
strictly, so any per-layer structure the config failed to describe fails here, not at
load time elsewhere.

Looped layers: a standard checkpoint has no way to say "layer 12 is layer 9" that plain
transformers and serving engines honour (``save_pretrained`` drops shared tensors it does
not know as tied, and loading would then leave them untrained), so each position gets its
own copy. The cost is the repeated layers' weights once more per extra visit; it is logged
and written in the model card (``ExportReport.duplicated_bytes``).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.files import ChainFile
from lm_eval_cola.chains.syntax import Chain, format_chain, parse_chain
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    out: Path
    chain: str
    source_layers: int
    layers: int
    parameters: int
    duplicated_parameters: int  # weights written more than once (looped layers' copies)
    duplicated_bytes: int


def _moe_sparse(config: Any, index: int) -> bool | None:
    """Whether Qwen-MoE-style config builds layer ``index`` sparse (None: not such a config)."""
    if not hasattr(config, "mlp_only_layers") or not hasattr(config, "decoder_sparse_step"):
        return None
    experts = getattr(config, "num_experts", 0) or 0
    return (index not in (config.mlp_only_layers or [])
            and experts > 0 and (index + 1) % config.decoder_sparse_step == 0)


def chain_config(config: Any, chain: Chain) -> Any:
    """A copy of ``config`` describing the model whose layer ``p`` is source layer
    ``chain[p]``."""
    from lm_eval_cola.engine.architectures import of_config

    arch = of_config(config)
    new = copy.deepcopy(config)
    setattr(new, arch.layer_count, len(chain))
    types = getattr(config, arch.layer_types, None) if arch.layer_types else None
    if types is not None:
        setattr(new, arch.layer_types, [types[i] for i in chain])
    if _moe_sparse(config, 0) is not None:
        new.decoder_sparse_step = 1
        new.mlp_only_layers = [p for p, i in enumerate(chain) if not _moe_sparse(config, i)]
    new.__dict__.pop("quantization_config", None)  # a GGUF source is written de-quantized
    return new


def chain_model(model: Any, chain: Chain) -> tuple[Any, int]:
    """(a new model whose layer ``p`` is a copy of ``model``'s layer ``chain[p]``, the
    number of parameters written more than once)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lm_eval_cola.engine.apply import architecture_of, find_layers

    arch = architecture_of(model)
    stack = find_layers(model)
    chain = parse_chain(list(chain), stack.num_layers, max(len(chain), 1))
    config = chain_config(model.config, chain)
    dtype = next(model.parameters()).dtype
    built = AutoModelForCausalLM.from_config(config, dtype=dtype)
    prefix = arch.layers + "."
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    seen: set[int] = set()
    duplicated = 0
    for position, index in enumerate(chain):
        layer = stack.layers[index]
        for key, value in layer.state_dict().items():
            state[f"{prefix}{position}.{key}"] = value
        if index in seen:
            duplicated += sum(p.numel() for p in layer.parameters())
        seen.add(index)
    with torch.no_grad():
        built.load_state_dict(state, strict=True)  # copies: no tensor shared with `model`
    built.eval()
    if getattr(model, "generation_config", None) is not None:
        built.generation_config = copy.deepcopy(model.generation_config)
    return built, duplicated


def model_card(source: str, chain: Chain, num_layers: int, report_bytes: int,
               duplicated: int, found: ChainFile | None) -> str:
    """The checkpoint's README.md."""
    text = format_chain(chain)
    used = set(chain)
    skipped = [i for i in range(num_layers) if i not in used]
    repeated = sorted({i for i in chain if chain.count(i) > 1})
    reordered = any(b < a for a, b in zip(chain, chain[1:], strict=False) if b not in (a,))
    lines = [
        "---",
        f"base_model: {source}",
        "tags: [lm-eval-cola, chain-of-layers, layer-pruning]",
        "---",
        "",
        f"# {source}, chain {text}",
        "",
        f"The decoder layers of **{source}** ({num_layers} layers) arranged as the chain "
        f"`{text}`: {len(chain)} layers (depth ratio {len(chain) / num_layers:.3f}). Layer "
        "p of this checkpoint is a copy of source layer chain[p]; nothing was trained.",
        "",
        f"- skipped source layers: {', '.join(map(str, skipped)) or 'none'}",
        f"- repeated source layers: {', '.join(map(str, repeated)) or 'none'}",
        f"- order changed: {'yes' if reordered else 'no'}",
        f"- layers as a list: `{list(chain)}`",
        "",
    ]
    if duplicated:
        lines += [f"Repeated layers are stored once per visit (a standard checkpoint cannot "
                  f"share a layer's weights between positions): {duplicated:,} parameters "
                  f"({report_bytes / 2**20:.1f} MiB) are duplicates.", ""]
    lines += ["## How the chain was found", ""]
    if found is None:
        lines += ["Given by hand (no chain file).", ""]
    else:
        facts = {"method": found.method, "task": found.task, "calibration split": found.split,
                 "calibration samples": found.samples, "settings": found.settings or None,
                 "score": found.score or None, "created": found.created,
                 "lm-eval-cola version": found.version}
        lines += [f"- {k}: `{v}`" for k, v in facts.items() if v not in (None, "")]
        lines.append("")
    lines += [
        "## Use",
        "",
        "A standard checkpoint of the source architecture:",
        "",
        "```bash",
        "lm_eval --model hf --model_args pretrained=<this folder> --tasks <task>",
        "```",
        "",
        "gives the scores of `lm_eval --model cola_hf --model_args "
        f"pretrained=<source>,chain={text}` (lm-eval-cola).",
        "",
    ]
    return "\n".join(lines)


def check_out(out: Path) -> None:
    """A UserError unless ``out`` is a new or empty folder that can be made and written:
    checked before anything is loaded or written, so a bad --out costs nothing and
    overwrites nothing."""
    allowed = "allowed: a new or empty folder"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is an existing file; {allowed}")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {str(out)!r} exists and is not empty; {allowed}")
    parent = out.absolute()
    while not parent.exists():  # the nearest existing folder is where it will be made
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {str(out)!r} cannot be made: {str(parent)!r} is a file; "
                        f"{allowed}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {str(out)!r} cannot be made: {str(parent)!r} is not "
                        f"writable; {allowed}")


def export_chain(model: Any, tokenizer: Any, chain: Chain, out: str | Path, source: str,
                 found: ChainFile | None = None) -> ExportReport:
    """Write ``model`` with its layers arranged as ``chain`` to ``out`` (see the module
    docstring)."""
    out = Path(out)
    check_out(out)
    from lm_eval_cola.engine.apply import find_layers

    num_layers = find_layers(model).num_layers
    built, duplicated = chain_model(model, chain)
    element = next(built.parameters()).element_size()
    out.mkdir(parents=True, exist_ok=True)
    built.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(source, tuple(chain), num_layers,
                                              duplicated * element, duplicated, found))
    if found is not None:
        found_path = out / "cola_chain.json"
        found.write(found_path)
    report = ExportReport(out=out, chain=format_chain(chain), source_layers=num_layers,
                          layers=len(chain), parameters=sum(p.numel() for p in
                                                            built.parameters()),
                          duplicated_parameters=duplicated,
                          duplicated_bytes=duplicated * element)
    if duplicated:
        logger.info("looped layers stored once per visit: %d duplicated parameters (%.1f MiB)",
                    duplicated, report.duplicated_bytes / 2**20)
    logger.info("exported chain %s (%d of %d layers) to %s", report.chain, report.layers,
                num_layers, out)
    return report


# ----------------------------------------------------------------------------- loading


def load_source(model_args: dict[str, Any]) -> tuple[Any, Any, str]:
    """(model, tokenizer, display name) as ``cola_hf`` would load them: ``pretrained=``
    (with ``dtype``, ``revision``, ``gguf_file``, ``trust_remote_code``), or the embedded
    default model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = dict(model_args)
    if args.get("pretrained") is None:
        from lm_eval_cola.harness.default_model import default_model, prepare

        default = default_model()
        args.update(prepare(default))
        label = default.name
    else:
        label = str(args["pretrained"])
        if label.startswith(("/", ".", "~")) and not Path(label).expanduser().exists():
            raise UserError(f"pretrained={label!r} does not exist; allowed: a local model "
                            "folder or a Hub id in the local cache")
    extra = {k: args[k] for k in ("gguf_file", "revision", "trust_remote_code") if k in args}
    dtype = args.get("dtype", "auto")
    try:
        model = AutoModelForCausalLM.from_pretrained(args["pretrained"], dtype=dtype, **extra)
        tokenizer = AutoTokenizer.from_pretrained(args["pretrained"], **extra)
    except (OSError, ValueError) as err:  # not a model folder, not in the local cache
        raise unreadable_model(args["pretrained"], err) from None
    return model.eval(), tokenizer, label


def unreadable_model(pretrained: Any, err: Exception) -> UserError:
    """One line for a model transformers could not load (``err``'s own first line)."""
    why = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return UserError(f"cannot load pretrained={str(pretrained)!r}: {why}; allowed: a local "
                     "model folder or a Hub id in the local cache")


def resolve_chain(spec: str, num_layers: int, pretrained: str | None = None
                  ) -> tuple[Chain, ChainFile | None]:
    """The chain of ``spec`` (chain text or a chain file) and its chain file, if any; a
    warning when a mergekit chain file names another model than ``pretrained``."""
    from lm_eval_cola.chains.files import check_layer_count, check_model, declared_layer_count

    found = None
    if declared_layer_count(spec) is not None:  # one of our chain files, with provenance
        check_layer_count(spec, num_layers)
        found = ChainFile.read(spec.strip().removeprefix("@"))
    check_model(spec, pretrained)
    return parse_chain(spec, num_layers), found


@dataclass(frozen=True)
class MergekitSource:
    """What a mergekit config needs of the source model, read from its config alone."""

    model: str  # the reference mergekit loads: pretrained=, with @revision when given
    num_layers: int
    dtype: str | None  # None: mergekit's default


def mergekit_source(model_args: dict[str, Any]) -> MergekitSource:
    """The source model as mergekit will see it, without loading its weights."""
    from transformers import AutoConfig

    from lm_eval_cola.engine.architectures import of_config

    args = dict(model_args)
    if args.get("pretrained") is None:
        from lm_eval_cola.harness.default_model import prepare

        args.update(prepare())  # the converted folder: mergekit cannot read GGUF
    if args.get("gguf_file"):
        raise UserError(f"--mergekit cannot use gguf_file={args['gguf_file']!r}: mergekit "
                        "reads no GGUF; allowed: a safetensors model folder or Hub id")
    extra = {k: args[k] for k in ("revision", "trust_remote_code") if k in args}
    try:
        config = AutoConfig.from_pretrained(args["pretrained"], **extra)
    except (OSError, ValueError) as err:
        raise unreadable_model(args["pretrained"], err) from None
    dtype = args.get("dtype", "auto")
    if dtype in (None, "auto"):
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    model = str(args["pretrained"])
    if args.get("revision"):
        model += f"@{args['revision']}"
    return MergekitSource(model=model, num_layers=int(getattr(config, of_config(config)
                                                               .layer_count)),
                          dtype=str(dtype).removeprefix("torch.") if dtype else None)


def export_mergekit(spec: str, path: str | Path, model_args: dict[str, Any]
                    ) -> tuple[Chain, MergekitSource]:
    """Write the mergekit passthrough config of chain ``spec`` over the source model."""
    from lm_eval_cola.chains.files import write_mergekit

    source = mergekit_source(model_args)
    chain, found = resolve_chain(spec, source.num_layers, source.model)
    note = f"from {found.method}" if found is not None and found.method else ""
    write_mergekit(path, chain, source.model, source.dtype, note)
    return chain, source
