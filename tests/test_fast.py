"""The fast scorer (packed context, prefix reuse, scored logits only) equals the plain path."""

from __future__ import annotations

import pytest
import torch

from lm_eval_cola.engine.fast import PAD_MULTIPLE, PrefixStore, SampleScorer, pack, score_many
from tests.support.reference_paths import plain_scores, sample_pairs, varied_pairs
from tests.support.tiny_models import tiny_configs, tiny_model

pytestmark = pytest.mark.tiny

CHAINS = [(0, 1, 2, 3), (0, 1, 1, 2, 3), (0, 1, 2), (1, 3), (0, 1, 1, 2), (3, 2, 1, 0)]


@pytest.mark.parametrize("kind", sorted(tiny_configs()))
def test_fast_scores_equal_plain_scores(kind):
    model = tiny_model(kind)
    pairs = sample_pairs(0)
    sample = pack(pairs, max_length=256)
    if not SampleScorer.usable(model, sample):
        # Sliding windows shorter than the packed sample: the model falls back to lm-eval's path.
        assert getattr(model.config, "sliding_window", None) is not None
        pytest.skip("sliding window shorter than the sample")
    scorer = SampleScorer(model, sample, torch.device("cpu"))
    for chain in CHAINS:
        fast, plain = scorer(chain), plain_scores(model, pairs, chain)
        assert [g for _, g in fast] == [g for _, g in plain]
        for (a, _), (b, _) in zip(fast, plain, strict=True):
            assert a == pytest.approx(b, abs=1e-4)
    # Prefix reuse ran fewer layers than the chains hold.
    assert scorer.layers_run < sum(len(c) for c in CHAINS)


@pytest.mark.parametrize("kind", sorted(tiny_configs()))
def test_batched_scores_are_bitwise_the_scores_of_one_sample_alone(kind):
    """score_many over several samples (two padded lengths, different chains, some with
    stored prefixes) gives each sample exactly what scoring it alone gives."""
    model = tiny_model(kind)
    samples = [pack(varied_pairs(seed, n), max_length=256)
               for seed, n in enumerate((5, 9, PAD_MULTIPLE + 4))]
    assert len({s.padded_length for s in samples}) == 2
    if not all(SampleScorer.usable(model, s) for s in samples):
        pytest.skip("sliding window shorter than the sample")
    cpu = torch.device("cpu")
    batched = [SampleScorer(model, s, cpu) for s in samples]
    for round_ in range(len(CHAINS)):
        chains = [CHAINS[(round_ + k) % len(CHAINS)] for k in range(len(samples))]
        together = score_many(model, list(zip(batched, chains, strict=True)))
        alone = [SampleScorer(model, s, cpu)(c) for s, c in zip(samples, chains, strict=True)]
        if "moe" in kind or kind == "mixtral":
            # Experts multiply however many rows the router sends them, and MKL's rounding
            # depends on that count: equal up to rounding only (models/README say so).
            for a, b in zip(together, alone, strict=True):
                assert [g for _, g in a] == [g for _, g in b]
                assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-5)
        else:
            assert together == alone
    # Later rounds reused stored prefixes.
    assert sum(s.layers_run for s in batched) < len(samples) * sum(len(c) for c in CHAINS)


def test_padding_is_masked_out():
    sample = pack(varied_pairs(0, 5), max_length=256)
    assert sample.padded_length % PAD_MULTIPLE == 0 and sample.padded_length > sample.length
    model = tiny_model("llama")
    unpadded = pack(varied_pairs(0, 5), max_length=256, pad_multiple=1)
    assert unpadded.padded_length == unpadded.length == sample.length
    cpu = torch.device("cpu")
    for chain in CHAINS:
        padded_scores = SampleScorer(model, sample, cpu)(chain)
        plain = SampleScorer(model, unpadded, cpu)(chain)
        for (a, ga), (b, gb) in zip(padded_scores, plain, strict=True):
            assert ga == gb and a == pytest.approx(b, abs=1e-5)


def test_prefix_store_evicts_by_bytes():
    store = PrefixStore(max_bytes=3 * 4 * 10)
    for k in range(5):
        store.put((k,), torch.zeros(10))
    assert store.bytes <= store.max_bytes
    assert store.longest((0,))[0] == 0 and store.longest((4,))[0] == 1


def test_chained_prefix_store_keeps_a_chains_start():
    """Generation replays every position's entry (``run``): past the bound a chained store
    drops the ends of stored chains, never a start that longer prefixes need; plain LRU
    would drop the oldest entry, the first position, and with it the whole chain."""
    chained, plain = PrefixStore(max_bytes=4 * 4 * 10, chained=True), PrefixStore(4 * 4 * 10)
    for store in (chained, plain):
        for k in range(1, 4):
            store.put((0, 1, 2)[:k], torch.zeros(10))
        store.put((0, 1, 5), torch.zeros(10))  # a second chain, diverging at position 2
        store.put((0, 1, 5, 6), torch.zeros(10))  # over the bound: one entry goes
        assert store.bytes <= store.max_bytes
    assert len(chained.run((0, 1, 5, 6))) == 4 and len(chained.run((0, 1, 2))) == 2
    assert plain.run((0, 1, 5, 6)) == []  # LRU dropped (0,): nothing replays
    chained.put((7, 8), torch.zeros(10))  # its one-shorter prefix is not stored: refused
    assert chained.run((7, 8)) == [] and chained.bytes <= chained.max_bytes


def test_pack_shares_the_context_once():
    pairs = sample_pairs(1)
    sample = pack(pairs, max_length=256)
    plain_tokens = sum(len(c) + len(t) - 1 for c, t in pairs)
    assert sample.length < plain_tokens
    # The shared prefix is the whole 9-token context; the last request adds nothing to it.
    assert int((sample.segments == 0).sum()) == 9
    assert int(sample.segments.max()) == 3


@pytest.mark.parametrize("pinned", ["tensor", "tuple"])
def test_pinned_layer_output_is_used_and_checked(monkeypatch, pinned):
    """architectures.yaml may pin what layers return instead of `probe`: the right value
    scores as before, a wrong one stops with an error naming the data file."""
    import dataclasses

    from lm_eval_cola.engine import architectures

    table = dict(architectures.load())
    table["llama"] = dataclasses.replace(table["llama"], layer_output=pinned)
    monkeypatch.setattr(architectures, "load", lambda path=None: table)
    model = tiny_model("llama")
    pairs = sample_pairs(0)
    scorer = SampleScorer(model, pack(pairs, max_length=256), torch.device("cpu"))
    if pinned == "tuple":  # transformers 5 layers return the tensor
        with pytest.raises(RuntimeError, match="architectures.yaml.*llama.*layer_output"):
            scorer(CHAINS[1])
        return
    fast, plain = scorer(CHAINS[1]), plain_scores(model, pairs, CHAINS[1])
    assert [g for _, g in fast] == [g for _, g in plain]
    assert [x for x, _ in fast] == pytest.approx([x for x, _ in plain], abs=1e-4)
