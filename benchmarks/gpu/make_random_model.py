"""Write a random-initialised Hugging Face causal LM of a real model's shape, no download.

    # here, once (needs the embedded SmolLM2 package): a small tokenizer folder to carry
    python benchmarks/gpu/make_random_model.py --save_tokenizer .gpu-data/tokenizer
    # anywhere with torch and transformers (the GPU machine): the model itself
    python benchmarks/gpu/make_random_model.py --shape llama-1b --dtype bfloat16 \
        --tokenizer .gpu-data/tokenizer --out /tmp/models/llama-1b

Timing a search needs a model of a real size, not real weights: a random model runs the
same kernels on the same shapes. Llama-3.2-1B's weights cannot travel to the GPU machine
(2.5 GB in bf16 against 64 MiB a call) and nothing can be downloaded there, so the model
is built there from a named shape (``SHAPES``) with a fixed seed. The weights are drawn in
float32 on the CPU and then cast, so a shape and seed give the same model on any machine
and in any dtype (up to that cast).

The vocabulary is the tokenizer's (SmolLM2's 49,152 tokens), so every token id is valid;
Llama-3.2-1B's own is 128,256, so its LM head is 2.6x this one's (the decoder layers, most
of the work, are the same). A random model never says a stop sequence: every generation
runs to ``max_gen_toks``, the slowest case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

# Rope of Llama 3.x (its config's rope_scaling, as transformers 5 names it).
_LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}


@dataclasses.dataclass(frozen=True)
class Shape:
    """The sizes of a Llama-architecture decoder (what its config.json says)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int
    rope_parameters: dict[str, Any]
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


SHAPES: dict[str, Shape] = {
    # meta-llama/Llama-3.2-1B's config.json (vocabulary aside, see the docstring)
    "llama-1b": Shape(2048, 16, 32, 8, 8192, 131072, _LLAMA3_ROPE),
    # the embedded default model, SmolLM2-135M-Instruct, with random weights
    "smollm2-135m": Shape(576, 30, 9, 3, 1536, 8192,
                          {"rope_type": "default", "rope_theta": 100000.0}),
    # smoke tests on a CPU
    "tiny": Shape(64, 4, 4, 2, 128, 2048, {"rope_type": "default", "rope_theta": 10000.0}),
}

DTYPES = ("float32", "bfloat16", "float16")


def llama_config(shape: Shape, tokenizer: Any):
    """A LlamaConfig of ``shape`` whose vocabulary and special ids are ``tokenizer``'s."""
    from transformers import LlamaConfig

    fields = dataclasses.asdict(shape)
    eos = tokenizer.eos_token_id
    return LlamaConfig(
        **fields, head_dim=shape.head_dim, vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)


def build(shape_name: str, out: Path, tokenizer_dir: Path, dtype: str = "bfloat16",
          seed: int = 0) -> dict[str, Any]:
    """Save the random model of ``shape_name`` and the tokenizer into ``out``; return what
    was written (also saved as ``out/random_model.json``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = llama_config(SHAPES[shape_name], tokenizer)
    torch.manual_seed(seed)
    # drawn in float32 on the CPU whatever the target: the same weights on every machine
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    facts = {"shape": shape_name, "seed": seed, "dtype": dtype, "vocab_size": len(tokenizer),
             "parameters": sum(p.numel() for p in model.parameters()),
             "layers": config.num_hidden_layers, "tokenizer": str(tokenizer_dir)}
    (out / "random_model.json").write_text(json.dumps(facts, indent=1) + "\n")
    return facts


def save_default_tokenizer(out: Path) -> Path:
    """Save the embedded SmolLM2 model's tokenizer into ``out`` (a few MB): from the
    converted copy in the cache when there is one, else from the GGUF file (needs gguf)."""
    from transformers import AutoTokenizer

    from lm_eval_cola.harness.default_model import default_model

    args = default_model().load_args()
    tokenizer = AutoTokenizer.from_pretrained(
        args.pop("pretrained"), **args)  # gguf_file= when no converted copy exists
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    parser.add_argument("--out", type=Path, help="folder to write the model into")
    parser.add_argument("--tokenizer", type=Path,
                        help="a saved tokenizer folder (see --save_tokenizer)")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save_tokenizer", type=Path, metavar="DIR",
                        help="only save the embedded SmolLM2 model's tokenizer into DIR")
    args = parser.parse_args(argv)
    if args.save_tokenizer is not None:
        print(f"tokenizer saved in {save_default_tokenizer(args.save_tokenizer)}")
        return
    if args.out is None or args.tokenizer is None:
        parser.error("--out and --tokenizer are needed to build a model "
                     "(or --save_tokenizer DIR to save the tokenizer only)")
    if not (args.tokenizer / "tokenizer_config.json").is_file():
        parser.error(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there; save one "
                     f"with --save_tokenizer {args.tokenizer}")
    facts = build(args.shape, args.out, args.tokenizer, args.dtype, args.seed)
    print(f"wrote {args.out}: {json.dumps(facts)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
