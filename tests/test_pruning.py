"""Static pruning baselines: block influence (ShortGPT) and SLEB, on tiny models."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lm_eval_cola.deploy.pruning import (
    Perplexity,
    block_influence,
    drop_lowest,
    sleb,
    target_layers,
)
from lm_eval_cola.engine.apply import chain_applied
from lm_eval_cola.errors import UserError
from tests.support.tiny_models import tiny_model

pytestmark = pytest.mark.tiny

TEXTS = [[5, 9, 17, 33, 2, 71, 8, 8, 40], [3, 4, 5, 6, 7, 100, 101, 12], [90, 80, 70, 60, 5, 6]]


def plain_nll(model, chain, texts=TEXTS) -> float:
    """Calibration NLL per token, the plain way: a full forward per text under the chain."""
    total, tokens = 0.0, 0
    with torch.no_grad(), chain_applied(model, chain):
        for ids in texts:
            x = torch.tensor([ids])
            logprobs = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
            total -= float(logprobs.gather(-1, x[0, 1:, None]).sum())
            tokens += len(ids) - 1
    return total / tokens


def with_a_no_op_layer(kind: str, index: int) -> torch.nn.Module:
    """A tiny model whose layer ``index`` adds nothing to the residual stream."""
    model = tiny_model(kind)
    layer = model.model.layers[index]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    return model


def test_target_depth_from_layers_or_fraction():
    assert target_layers(30, None, 0.75) == 22
    assert target_layers(30, 22, None) == 22
    assert target_layers(4, None, 0.5) == 2
    for layers, depth in ((None, None), (3, 0.5), (0, None), (31, None), (None, 1.5)):
        with pytest.raises(UserError):
            target_layers(30, layers, depth)


def test_drop_lowest_keeps_order_and_count():
    assert drop_lowest([0.5, 0.1, 0.9, 0.2, 0.3], 3) == (0, 2, 4)
    assert drop_lowest([0.2, 0.2, 0.2], 2) == (0, 1)  # ties: the later layer goes first


def test_block_influence_is_one_minus_cosine_of_each_layers_input_and_output():
    model = tiny_model("llama")
    influence = block_influence(model, TEXTS)
    # Independent: hidden_states[i] enters layer i, hidden_states[i+1] leaves it (the last
    # entry has the final norm applied, so the last layer is checked by the no-op test).
    sums, count = torch.zeros(3), 0
    with torch.no_grad():
        for ids in TEXTS:
            states = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for i in range(3):
                cos = torch.nn.functional.cosine_similarity(states[i][0], states[i + 1][0], -1)
                sums[i] += (1 - cos).sum()
            count += len(ids)
    for i in range(3):
        assert influence[i] == pytest.approx(float(sums[i] / count), abs=1e-5)


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_a_no_op_layer_has_no_influence_and_goes_first(kind):
    model = with_a_no_op_layer(kind, 2)
    influence = block_influence(model, TEXTS)
    assert influence[2] == pytest.approx(0.0, abs=1e-6)
    assert min(influence[i] for i in (0, 1, 3)) > 1e-3
    assert drop_lowest(influence, 3) == (0, 1, 3)


@pytest.mark.parametrize("kind", ["llama", "mistral"])  # mistral: a window shorter than a text
def test_perplexity_equals_a_plain_forward_under_the_chain(kind):
    model = tiny_model(kind)
    perplexity = Perplexity(model, TEXTS)
    chains = [(0, 1, 2, 3), (0, 2, 3), (1, 3), (0, 1, 1, 3)]
    for chain, value in zip(chains, perplexity(chains), strict=True):
        assert value == pytest.approx(plain_nll(model, chain), abs=1e-4)
    assert perplexity.evaluations == 4


def test_sleb_removes_greedily_by_calibration_perplexity():
    model = tiny_model("llama", seed=3)
    chain, steps = sleb(Perplexity(model, TEXTS), 4, keep=2)
    # Brute force, the plain way: at each step, drop the layer whose removal is best.
    expected = (0, 1, 2, 3)
    for _ in range(2):
        options = [expected[:k] + expected[k + 1:] for k in range(len(expected))]
        expected = min(options, key=lambda c: plain_nll(model, c))
    assert chain == expected
    assert [s["removed"] for s in steps[1:]] == sorted(set(range(4)) - set(chain),
                                                       key=[s["removed"] for s in steps[1:]].index)
    assert steps[-1]["nll"] == pytest.approx(plain_nll(model, chain), abs=1e-4)


def test_removing_a_no_op_layer_leaves_the_perplexity_unchanged_and_oneshot_ranks_it():
    model = with_a_no_op_layer("llama", 1)
    perplexity = Perplexity(model, TEXTS)
    full, without = perplexity([(0, 1, 2, 3), (0, 2, 3)])
    assert without == pytest.approx(full, abs=1e-6)
    chain, steps = sleb(Perplexity(model, TEXTS), 4, keep=1, oneshot=True)
    alone = {s["removed"]: s["nll_alone"] for s in steps[1:]}
    assert alone[1] == pytest.approx(full, abs=1e-6)
    assert len(chain) == 1 and sorted(alone) == sorted(set(range(4)) - set(chain))
    # one-shot drops the layers whose single removals scored lowest
    kept_alone = plain_nll(model, tuple(i for i in range(4) if i != chain[0]))
    assert max(alone.values()) <= kept_alone + 1e-5


@pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"), reason="needs COLA_DATA_DIR")
def test_prune_command_writes_a_chain_file_and_refuses_the_evaluated_split(tiny_llama_dir,
                                                                           tmp_path, capsys):
    from lm_eval_cola.cli import main

    out = tmp_path / "bi.json"
    args = ["prune", "--tasks", "arc_challenge", "--model_args", f"pretrained={tiny_llama_dir}",
            "--limit", "6", "--depth", "0.5"]
    assert main([*args, "--split", "train", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["method"] == "block_influence" and written["split"] == "train"
    assert written["length"] == 2 and written["num_layers"] == 4 and written["samples"] == 6
    assert len(written["score"]["block_influence"]) == 4
    assert main([*args, "--split", "test", "--out", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --split 'test' is the split 'arc_challenge' is evaluated on")
    assert not (tmp_path / "no.json").exists()
