"""Tiny random decoder models built from configs: cheap, offline, one per architecture."""

from __future__ import annotations

import torch
import transformers as T

_BASE = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    head_dim=8,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_MOE = dict(num_experts_per_tok=2)
_SLIDING_TYPES = ["sliding_attention", "full_attention"] * 2


def tiny_configs() -> dict[str, T.PretrainedConfig]:
    """One config per supported architecture; several with per-layer sliding windows."""
    no_head_dim = {k: v for k, v in _BASE.items() if k != "head_dim"}
    return {
        "llama": T.LlamaConfig(**_BASE),
        "mistral": T.MistralConfig(**_BASE, sliding_window=4),
        "mixtral": T.MixtralConfig(**_BASE, **_MOE, num_local_experts=4),
        "qwen2": T.Qwen2Config(**_BASE, use_sliding_window=True, sliding_window=4,
                               max_window_layers=2),
        "qwen2_moe": T.Qwen2MoeConfig(**_BASE, **_MOE, num_experts=4, moe_intermediate_size=32,
                                      shared_expert_intermediate_size=32),
        "qwen3": T.Qwen3Config(**_BASE),
        "qwen3_moe": T.Qwen3MoeConfig(**_BASE, **_MOE, num_experts=4, moe_intermediate_size=32),
        "gemma": T.GemmaConfig(**_BASE),
        "gemma2": T.Gemma2Config(**_BASE, sliding_window=4),
        "gemma3_text": T.Gemma3TextConfig(**_BASE, sliding_window=4, layer_types=_SLIDING_TYPES),
        "phi3": T.Phi3Config(**no_head_dim),
        "olmo": T.OlmoConfig(**_BASE),
        "olmo2": T.Olmo2Config(**_BASE),
        "olmoe": T.OlmoeConfig(**_BASE, **_MOE, num_experts=4),
        "granite": T.GraniteConfig(**_BASE),
    }


def tiny_model(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(tiny_configs()[kind]).eval()


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained here on a few sentences: offline and small."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "Question: Which of these is a mammal? Answer: the whale is a mammal.",
        "The answer is 42. Let us think step by step about the numbers.",
        "Plants need sunlight and water to grow; animals need food.",
    ] * 20
    tokenizer.train_from_iterator(corpus, trainer)
    return T.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def save_tiny_model(folder, kind: str = "llama", seed: int = 0) -> str:
    """A tiny random model of `kind` with the tiny tokenizer, saved for `pretrained=`."""
    tokenizer = tiny_tokenizer()
    config = tiny_configs()[kind]
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = 0, 1, 2
    # Large random weights: answers then depend on the chain, as a real model's do.
    config.initializer_range = 0.5
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
