"""GPU readiness (#24 item 6), what a CPU can check: the attention-implementation guard of
the log-likelihood fast path, OLMoE, the chained prefix store, the chunked LM head, ranks from
the launch, and a model split over two devices with accelerate's hooks (two real devices only
where CUDA is; on a CPU alone both halves are the CPU). docs/performance.md lists the rest."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from lm_eval_cola.engine import architectures, fast
from lm_eval_cola.engine.apply import architecture_of, chain_applied
from lm_eval_cola.engine.fast import PAD_MULTIPLE, SampleScorer, head_chunk_rows, pack, score_many
from lm_eval_cola.harness.ranks import adopt_launch_ranks, launch_ranks
from lm_eval_cola.search.driver import records_path
from tests.support.reference_paths import plain_scores, sample_pairs, varied_pairs
from tests.support.tiny_models import tiny_configs, tiny_model

pytestmark = pytest.mark.tiny

CPU = torch.device("cpu")
CHAINS = [(0, 1, 2, 3), (0, 1, 1, 2, 3), (3, 2, 1, 0), (1, 3), (2, 0, 3)]


# ---------------------------------------------------------------- attention implementation


def test_flash_attention_sends_samples_to_lm_evals_path_logged_once(monkeypatch, caplog):
    """FlashAttention-2 takes no 4D additive mask: the packed sample's requests would see
    each other. The fast scorer refuses such a model, and says so once."""
    monkeypatch.setattr(fast, "_REFUSED_ATTENTION", set())
    model = tiny_model("llama")
    sample = pack(sample_pairs(0), max_length=256)
    assert SampleScorer.usable(model, sample)  # sdpa
    model.config._attn_implementation = "flash_attention_2"
    with caplog.at_level(logging.WARNING, logger="lm_eval_cola.engine.fast"):
        assert not SampleScorer.usable(model, sample)
        assert not SampleScorer.usable(model, sample)
    logged = [r for r in caplog.records if "flash_attention_2" in r.getMessage()]
    assert len(logged) == 1
    model.config._attn_implementation = "eager"
    assert SampleScorer.usable(model, sample)


# ---------------------------------------------------------------- OLMoE


def test_olmoe_has_an_architecture_entry_and_a_tiny_model():
    """One of the paper's models; every per-architecture test iterates tiny_configs()."""
    assert "olmoe" in tiny_configs()
    model = tiny_model("olmoe")
    assert architecture_of(model) == architectures.get("olmoe")
    pairs = sample_pairs(1)
    scorer = SampleScorer(model, pack(pairs, max_length=256), CPU)
    for chain in CHAINS[:3]:
        got, want = scorer(chain), plain_scores(model, pairs, chain)
        assert [g for _, g in got] == [g for _, g in want]
        assert [s for s, _ in got] == pytest.approx([s for s, _ in want], abs=1e-4)


# ---------------------------------------------------------------- prefix store


def test_loglikelihood_store_keeps_a_chains_first_positions():
    """Past the byte cap the scorer's store drops a chain's end, not its start: a chain
    sharing only the first position with a stored one still runs one layer fewer (plain LRU
    evicted the first position, the oldest entry, first)."""
    model = tiny_model("llama")
    sample = pack(sample_pairs(0), max_length=256)
    row_bytes = sample.padded_length * model.config.hidden_size * 4  # one (1, P, H) fp32 row
    scorer = SampleScorer(model, sample, CPU, cache_bytes=3 * row_bytes)
    assert scorer.store.chained
    scorer((0, 1, 2, 3))  # four prefixes into room for three
    assert scorer.store.bytes <= 3 * row_bytes
    before = scorer.layers_run
    scorer((0, 3))
    assert scorer.layers_run - before == 1  # (0,) was kept; only layer 3 ran


# ---------------------------------------------------------------- chunked LM head


def test_head_chunk_rows_bound_rows_times_vocab():
    for vocab in (128, 32_000, 128_256, 262_144):
        rows = head_chunk_rows(vocab)
        assert rows % PAD_MULTIPLE == 0 and rows * vocab <= fast.HEAD_LOGITS
        assert (rows + PAD_MULTIPLE) * vocab > fast.HEAD_LOGITS
    assert head_chunk_rows(10**9) == PAD_MULTIPLE  # at least one padded chunk


@pytest.mark.parametrize("kind", ["llama", "gemma2"])  # gemma2: final-logit softcapping
def test_chunked_head_equals_one_pass(kind, monkeypatch):
    """The LM head in chunks of PAD_MULTIPLE rows gives bitwise the scores of one pass over
    all rows (on this CPU; each chunk is a padded multiple of PAD_MULTIPLE rows)."""
    model = tiny_model(kind)
    lengths = (5, 9, 20, 7, 12, 3, 30, 11)  # 4 scored rows each: 32, two chunks
    samples = [pack(varied_pairs(seed, n), max_length=256) for seed, n in enumerate(lengths)]
    jobs_of = lambda: [(SampleScorer(model, s, CPU), CHAINS[k % len(CHAINS)])  # noqa: E731
                       for k, s in enumerate(samples)]  # fresh stores: every layer runs
    whole = score_many(model, jobs_of())
    calls = []
    head = fast._head_logits
    monkeypatch.setattr(fast, "_head_logits", lambda m, rows: calls.append(len(rows))
                        or head(m, rows))
    monkeypatch.setattr(fast, "HEAD_LOGITS", PAD_MULTIPLE * model.config.vocab_size)
    chunked = score_many(model, jobs_of())
    assert len(calls) > 1 and max(calls) == PAD_MULTIPLE
    assert chunked == whole


# ---------------------------------------------------------------- ranks


def _launched_lm(rank: int, world_size: int, accelerator=None, device: str = "cuda"):
    """A ColaHFLM as HFLM leaves it (rank/world size it chose), without loading a model."""
    from lm_eval_cola.harness.models import ColaHFLM

    lm = object.__new__(ColaHFLM)
    lm._rank, lm._world_size, lm._device = rank, world_size, torch.device(device)
    lm.accelerator = accelerator
    return lm


def _accelerator(process_index: int, num_processes: int, local_index: int):
    return SimpleNamespace(process_index=process_index, num_processes=num_processes,
                           local_process_index=local_index, device=torch.device("cuda"))


def test_one_gpu_per_process_gets_the_launch_ranks(monkeypatch):
    """CUDA_VISIBLE_DEVICES per rank: HFLM sees one GPU and leaves rank 0 of 1 on every
    rank; the launch's ranks are taken instead, so each rank searches its share."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    lms = [_launched_lm(0, 1, _accelerator(r, 4, 0)) for r in range(4)]
    for lm in lms:
        adopt_launch_ranks(lm)
    assert [(lm.rank, lm.world_size) for lm in lms] == [(r, 4) for r in range(4)]


def test_two_nodes_name_records_by_global_rank(monkeypatch, tmp_path):
    """Two nodes of two GPUs: HFLM numbers ranks by the local index (0, 1, 0, 1); the records
    files must have four names."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    names = set()
    for node in range(2):
        for local in range(2):
            lm = _launched_lm(local, 4, _accelerator(2 * node + local, 4, local))
            adopt_launch_ranks(lm)
            names.add(records_path(None, str(tmp_path), "mcts", "abc", lm.rank, lm.world_size))
    assert len(names) == 4


def test_launch_ranks_sources(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert launch_ranks() == launch_ranks(_accelerator(0, 1, 0))  # one process: not accelerate
    assert (launch_ranks().rank, launch_ranks().world_size) == (3, 8)
    assert launch_ranks(_accelerator(5, 8, 1)).rank == 5
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 6)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 16)
    assert launch_ranks(_accelerator(5, 8, 1)).rank == 6


@pytest.mark.parametrize("env, message", [({"RANK": "x"}, "RANK='x'"),
                                          ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK=4")])
def test_bad_launch_environment_is_one_line(monkeypatch, env, message):
    from lm_eval_cola.errors import UserError

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message):
        launch_ranks()


# ---------------------------------------------------------------- layers on two devices


def split_model(model: torch.nn.Module, first: torch.device,
                second: torch.device) -> torch.nn.Module:
    """A tiny model laid out as ``parallelize=True`` lays a large one out: embeddings and the
    first half of the layers on ``first``, the rest, the final norm and the head on
    ``second``, each with accelerate's hook that moves its inputs to its device (every layer
    runs where its weights are; nothing is offloaded)."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    model = model.to(first)
    layers = model.model.layers
    for i, layer in enumerate(layers):
        device = first if i < len(layers) // 2 else second
        add_hook_to_module(layer.to(device), AlignDevicesHook(execution_device=device))
    for module in (model.model.norm, model.lm_head):
        add_hook_to_module(module.to(second), AlignDevicesHook(execution_device=second))
    add_hook_to_module(model, AlignDevicesHook(io_same_device=True))
    return model


DEVICE_PAIRS = [("cpu", "cpu")] + ([("cuda:0", "cpu")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("devices", DEVICE_PAIRS, ids="-".join)
def test_split_model_fast_scores_equal_plain(devices):
    """Batched fast scoring (row subsets of masks and rotary tables, merged rows, final
    states of chains ending on either device) on a split model equals its plain forward."""
    first, second = (torch.device(d) for d in devices)
    model = split_model(tiny_model("llama"), first, second)
    samples = [pack(varied_pairs(seed, n), max_length=256) for seed, n in enumerate((5, 9, 20))]
    scorers = [SampleScorer(model, s, first) for s in samples]
    for round_ in range(len(CHAINS)):
        chains = [CHAINS[(round_ + k) % len(CHAINS)] for k in range(len(samples))]
        got = score_many(model, list(zip(scorers, chains, strict=True)))
        for sample_pairs_, chain, scores in zip((varied_pairs(s, n) for s, n in
                                                 enumerate((5, 9, 20))), chains, got,
                                                strict=True):
            want = plain_scores(model, sample_pairs_, chain, first)
            assert [g for _, g in scores] == [g for _, g in want]
            assert [s for s, _ in scores] == pytest.approx([s for s, _ in want], abs=1e-4)


@pytest.mark.parametrize("devices", DEVICE_PAIRS, ids="-".join)
def test_split_model_batched_generation_equals_generate(devices):
    """Several chains decoded side by side (merged rows, final states on either device)
    on a split model equal its own ``generate``, chain by chain."""
    from lm_eval_cola.engine.fast_generate import SampleGenerator, generate_many
    from tests.support.near_tie import assert_same_tokens
    from tests.support.reference_paths import (
        generation_model,
        plain_generate,
        reference_logits,
    )
    from tests.support.tiny_models import tiny_tokenizer

    first, second = (torch.device(d) for d in devices)
    tokenizer = tiny_tokenizer()
    model = split_model(generation_model("llama", len(tokenizer)), first, second)
    prompt = tokenizer.encode("Question: Which of these is a mammal? Answer:")
    context = torch.tensor([prompt], device=first)
    max_length, stop = len(prompt) + 12, ["Question:"]
    generator = SampleGenerator(model, tokenizer)
    rows = [generator.row(chain, prompt, max_length, stop) for chain in CHAINS]
    generate_many(model, rows)
    for chain, row in zip(CHAINS, rows, strict=True):
        with chain_applied(model, chain):
            expected = plain_generate(model, tokenizer, context, max_length, stop)
        assert_same_tokens(row.sequence, expected[0].tolist(),
                           reference_logits(model, chain), where=(devices, chain))
