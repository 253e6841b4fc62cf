"""The chain engine against the plain model and against a model rebuilt with the chain's layers."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as T

from lm_eval_cola.engine import (
    SUPPORTED_ARCHITECTURES,
    UnsupportedArchitectureError,
    chain_applied,
    find_layers,
)
from tests.tiny_models import tiny_configs, tiny_model

ARCHITECTURES = sorted(tiny_configs())
# A repeat, skips (layer 0 too), and a reorder with a repeat at the end.
CHAINS = [(0, 1, 1, 2, 3), (1, 3), (3, 2, 1, 0, 0), (0, 1, 2, 3, 2, 3)]


def materialized(model: torch.nn.Module, chain: tuple[int, ...]) -> torch.nn.Module:
    """An independent reference: a fresh model whose layer p is a copy of layer chain[p]."""
    config = copy.deepcopy(model.config)
    types = getattr(config, "layer_types", None)
    config.num_hidden_layers = len(chain)
    if types is not None:
        config.layer_types = [types[i] for i in chain]
    clone = T.AutoModelForCausalLM.from_config(config).eval()
    state = {k: v for k, v in model.state_dict().items() if ".layers." not in k}
    for position, index in enumerate(chain):
        for key, value in model.model.layers[index].state_dict().items():
            state[f"model.layers.{position}.{key}"] = value
    clone.load_state_dict(state, strict=False)
    return clone


def test_every_supported_architecture_has_a_tiny_model():
    assert set(SUPPORTED_ARCHITECTURES) == set(ARCHITECTURES)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_identity_chain_equals_plain_model(kind):
    model = tiny_model(kind)
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(ids).logits
        with chain_applied(model, tuple(range(4))):
            chained = model(ids).logits
        after = model(ids).logits
    torch.testing.assert_close(chained, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(after, plain, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_chains_equal_a_model_rebuilt_from_their_layers(kind):
    model = tiny_model(kind)
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(ids).logits
        for chain in CHAINS:
            reference = materialized(model, chain)(ids).logits
            with chain_applied(model, chain):
                chained = model(ids).logits
            torch.testing.assert_close(chained, reference, atol=1e-5, rtol=0)
            # Nothing silently ran the identity chain.
            assert (chained - plain).abs().max() > 1e-3, chain


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_cached_generation_equals_recomputed(kind):
    model = tiny_model(kind)
    prompt = torch.randint(3, 128, (1, 7), generator=torch.Generator().manual_seed(3))
    for chain in CHAINS:
        with chain_applied(model, chain):
            cached = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True)
            fresh = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False)
        reference = materialized(model, chain).generate(
            prompt, max_new_tokens=12, do_sample=False, use_cache=True
        )
        assert cached.tolist() == fresh.tolist(), chain
        assert cached.tolist() == reference.tolist(), chain


def test_model_is_restored_after_an_error():
    model = tiny_model("gemma2")
    layers, types = model.model.layers, list(model.config.layer_types)
    with pytest.raises(RuntimeError, match="boom"):
        with chain_applied(model, (1, 1, 0)):
            raise RuntimeError("boom")
    assert model.model.layers is layers
    assert model.config.num_hidden_layers == 4 and model.config.layer_types == types
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2, 3]


def test_unsupported_architecture_lists_the_supported_ones():
    config = T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64)
    model = T.AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedArchitectureError, match="'gpt2'.*supported: gemma"):
        find_layers(model)
