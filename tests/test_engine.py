"""The chain engine against the plain model and against a model rebuilt with the chain's layers."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from lm_eval_cola.engine import architectures
from lm_eval_cola.engine.apply import (
    UnsupportedArchitectureError,
    chain_applied,
    find_layers,
)
from tests.support.near_tie import assert_same_tokens
from tests.support.reference_paths import materialized
from tests.support.tiny_models import tiny_configs, tiny_model

pytestmark = pytest.mark.tiny

ARCHITECTURES = sorted(tiny_configs())
# A repeat, skips (layer 0 too), and a reorder with a repeat at the end.
CHAINS = [(0, 1, 1, 2, 3), (1, 3), (3, 2, 1, 0, 0), (0, 1, 2, 3, 2, 3)]


def test_every_supported_architecture_has_a_tiny_model():
    assert set(architectures.supported()) == set(ARCHITECTURES)


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
        rebuilt = materialized(model, chain)
        reference = rebuilt.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True)

        def next_logits(prefix: list[int], rebuilt=rebuilt) -> torch.Tensor:
            return rebuilt(torch.tensor([prefix])).logits[0, -1]

        # Three paths (cached, recomputed, rebuilt model) agree up to a float near-tie.
        assert_same_tokens(cached[0].tolist(), fresh[0].tolist(), next_logits, (kind, chain))
        assert_same_tokens(cached[0].tolist(), reference[0].tolist(), next_logits,
                           (kind, chain))


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


# ------------------------------------------------------------------ architectures.yaml


def test_unsupported_architecture_error_from_the_config_alone():
    with pytest.raises(UnsupportedArchitectureError, match="'gpt2'.*supported: gemma.*qwen3_moe"):
        architectures.of_config(T.GPT2Config())


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_architecture_data_matches_transformers(kind):
    """The data file names exactly the modules that hold layer_idx (a module it missed
    would share one cache slot between chain positions), and a cache keyword each forward
    takes."""
    import inspect

    model = tiny_model(kind)
    arch = architectures.get(kind)
    layer = find_layers(model).layers[0]
    holders = {name for name, module in layer.named_modules() if hasattr(module, "layer_idx")}
    assert holders == set(arch.layer_idx), kind
    assert arch.cache_keyword(model.forward) in inspect.signature(model.forward).parameters
    layer_parameters = inspect.signature(layer.forward).parameters
    assert set(arch.layer_cache_keywords) & set(layer_parameters), kind
    assert getattr(model.config, arch.layer_count) == 4


WINDOWS = {"mistral": 4, "qwen2": 4, "gemma2": 4, "gemma3_text": 4}


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_sliding_window_from_the_data(kind):
    assert architectures.get(kind).window(tiny_configs()[kind]) == WINDOWS.get(kind), kind


def test_sliding_window_switch_and_layer_types_turn_it_off():
    qwen2 = architectures.get("qwen2")
    config = tiny_configs()["qwen2"]
    assert qwen2.window(config) == 4
    config.layer_types = ["full_attention"] * 4  # no layer uses the window
    assert qwen2.window(config) is None
    config = T.Qwen2Config(use_sliding_window=False, sliding_window=4)
    assert qwen2.window(config) is None


def test_layer_idx_data_that_does_not_match_is_refused(monkeypatch):
    import dataclasses

    table = dict(architectures.load())
    table["llama"] = dataclasses.replace(table["llama"], layer_idx=("mlp",))
    monkeypatch.setattr(architectures, "load", lambda path=None: table)
    with pytest.raises(UnsupportedArchitectureError, match="llama.*mlp.layer_idx"):
        find_layers(tiny_model("llama"))


BASE_ENTRY = "architectures:\n  toy:\n    layers: model.layers\n    layer_idx: [self_attn]\n"
DEFAULTS = ("defaults:\n  layer_count: num_hidden_layers\n  layer_types: layer_types\n"
            "  sliding_window: null\n  sliding_switch: null\n  cache_keywords: [cache]\n"
            "  layer_cache_keywords: [cache]\n  layer_output: probe\n")


def test_architecture_file_parses_with_defaults():
    toy = architectures.parse(DEFAULTS + BASE_ENTRY)["toy"]
    assert toy.layers_path == ("model", "layers") and toy.layer_idx == ("self_attn",)
    assert toy.layer_output == "probe" and toy.cache_keywords == ("cache",)


@pytest.mark.parametrize("text, message", [
    (DEFAULTS + BASE_ENTRY + "    layer_outputs: tensor\n", "unknown field 'layer_outputs'"),
    (DEFAULTS + BASE_ENTRY + "    layer_output: list\n", "layer_output must be one of"),
    (DEFAULTS + BASE_ENTRY + "    layers: model..layers\n", "layers must be an attribute path"),
    (DEFAULTS + BASE_ENTRY + "    layer_idx: 3\n", "layer_idx must be a list of strings"),
    (BASE_ENTRY, "missing field"),
    ("architectures: [llama]\n", "needs a mapping"),
    ("architectures: {a: 1\n", "not valid YAML"),
])
def test_bad_architecture_file_names_the_entry_and_field(text, message):
    with pytest.raises(architectures.ArchitectureDataError, match=message) as err:
        architectures.parse(text, "arch.yaml")
    assert str(err.value).startswith("arch.yaml")


def test_the_data_file_ships_inside_the_package():
    from importlib import resources

    assert resources.files("lm_eval_cola.engine").joinpath(architectures.DATA_FILE).is_file()
