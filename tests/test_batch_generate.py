"""Batched greedy decoding (many samples x many chains, one forward a step) equals
``model.generate`` under each chain alone, token for token, on every supported
architecture; a sample's answers do not depend on which rows share its batch; stop
sequences, ``max_length`` and the KV bound hold per row; the runner's batched decoder
gives lm-eval's own generate_until texts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from lm_eval_cola.engine.apply import chain_applied
from lm_eval_cola.engine.fast_generate import DECODE_STATS, SampleGenerator, generate_many
from tests.support.reference_paths import generation_model
from tests.support.tiny_models import tiny_configs, tiny_tokenizer

pytestmark = pytest.mark.tiny

# Chains a search tries side by side: repeats, skips, a reorder, the full chain twice.
CHAINS = [(0, 1, 2, 3), (0, 1, 1, 2, 3), (0, 2, 3), (1, 3), (3, 2, 1, 0), (0, 1, 2, 3)]
PROMPTS = [  # (text, new tokens at most, stop sequences): each row its own
    ("Question: Which of these is a mammal? Answer:", 20, ["Question:", "</s>"]),
    ("Plants need sunlight and water", 9, ["."]),
    ("The answer is 42. Let us think step by step", 14, ["numbers", "</s>"]),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def rows_for(model, tokenizer, generators, chains, prompts=PROMPTS):
    rows = []
    for generator, (text, new, stop) in zip(generators, prompts, strict=True):
        prompt = tokenizer.encode(text)
        rows += [generator.row(chain, prompt, len(prompt) + new, stop) for chain in chains]
    return rows


@dataclass
class Expected:
    """``generate``'s tokens, and its top-2 logit margin at each generated position."""

    sequence: list[int]
    margins: list[float]

    def matches(self, got: list[int], tie: float = 1e-4) -> bool:
        """``got`` is these tokens, or leaves them first where ``generate``'s two best
        logits were within float rounding of each other (a tie batching may break the
        other way; tests count these)."""
        if got == self.sequence:
            return True
        start = len(self.sequence) - len(self.margins)
        first = next((i for i, (a, b) in enumerate(zip(got, self.sequence, strict=False))
                      if a != b), min(len(got), len(self.sequence)))
        return first >= start and self.margins[first - start] < tie


def expected_for(model, tokenizer, chains, prompts=PROMPTS) -> list[Expected]:
    from lm_eval.models.utils_hf import stop_sequences_criteria

    out = []
    for text, new, stop in prompts:
        context = torch.tensor([tokenizer.encode(text)])
        for chain in chains:
            criteria = stop_sequences_criteria(tokenizer, stop, context.shape[1], 1)
            with chain_applied(model, chain):
                result = model.generate(input_ids=context, max_length=context.shape[1] + new,
                                        stopping_criteria=criteria, do_sample=False,
                                        pad_token_id=0, use_cache=True, output_scores=True,
                                        return_dict_in_generate=True)
            margins = [float(top[0] - top[1]) for top in
                       (scores[0].topk(2).values for scores in result.scores)]
            out.append(Expected(result.sequences[0].tolist(), margins))
    return out


def check(rows, expected: list[Expected]) -> int:
    """Every row equals generate (up to near-ties); how many rows met a near-tie."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert want.matches(row.sequence), (row.chain, row.sequence, want.sequence)
    return sum(row.sequence != want.sequence for row, want in zip(rows, expected, strict=True))


@pytest.mark.parametrize("kind", sorted(tiny_configs()))
def test_batched_generation_equals_generate_chain_by_chain(kind, tokenizer):
    model = generation_model(kind, len(tokenizer))
    expected = expected_for(model, tokenizer, CHAINS)
    generators = [SampleGenerator(model, tokenizer) for _ in PROMPTS]
    DECODE_STATS.reset()
    ties = 0
    for _ in range(2):  # the second round replays stored prompt prefixes and uses drafts
        rows = rows_for(model, tokenizer, generators, CHAINS)
        generate_many(model, rows)
        ties += check(rows, expected)
    assert ties <= 2  # rows that met a near-tie (a margin under 1e-4): rare by far
    assert DECODE_STATS.max_rows == len(rows)  # all rows in one batch
    assert all(g.prompt_layers_run < g.prompt_layers_total for g in generators)
    assert sum(g.tokens_from_drafts for g in generators) > 0
    # Per-row limits: no row passed its own max_length.
    news = [new for _, new, _ in PROMPTS for _ in CHAINS]
    assert all(len(row.generated) <= new for row, new in zip(rows, news, strict=True))


@pytest.mark.parametrize("kind", ["llama", "gemma2", "qwen2", "phi3"])
def test_a_samples_answers_do_not_depend_on_its_batch(kind, tokenizer):
    """Sample 0 decoded alone, and beside other samples (other prompts, lengths, stops
    and chains, joining at other steps) gives the same tokens, in every round."""
    model = generation_model(kind, len(tokenizer), seed=1)
    alone_gen = SampleGenerator(model, tokenizer)
    shared_gens = [SampleGenerator(model, tokenizer) for _ in PROMPTS]
    for round_ in range(3):
        chains = [CHAINS[(round_ + k) % len(CHAINS)] for k in range(3)]
        alone = rows_for(model, tokenizer, [alone_gen], chains, PROMPTS[:1])
        generate_many(model, alone)
        together = rows_for(model, tokenizer, shared_gens, chains)
        generate_many(model, together[::-1])  # another order too
        assert [r.sequence for r in alone] == [r.sequence for r in together[:3]]


def test_kv_bound_makes_rows_wait_and_answers_stay(tokenizer):
    model = generation_model("llama", len(tokenizer))
    expected = expected_for(model, tokenizer, CHAINS[:3])
    rows = rows_for(model, tokenizer, [SampleGenerator(model, tokenizer) for _ in PROMPTS],
                    CHAINS[:3])
    smallest = min(row.bytes_needed(model) for row in rows)
    DECODE_STATS.reset()
    generate_many(model, rows, kv_bytes=2 * smallest)
    assert 1 <= DECODE_STATS.max_rows <= 2 < len(rows)  # never more than the bound allows
    assert check(rows, expected) == 0


def test_runner_decoder_gives_lm_evals_own_texts(tiny_llama_dir):
    """The runner's batched decoder (two samples, several chains, one evaluate_many call)
    returns exactly lm-eval's generate_until texts under each chain, and sampling
    kwargs take lm-eval's own path."""
    from lm_eval.api.instance import Instance

    from lm_eval_cola.engine.runner import ChainRunner, SampleDecoder, evaluate_many
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")
    greedy = {"until": ["Question:", "."], "max_gen_toks": 10, "do_sample": False,
              "temperature": 0.0}

    def request(text, kwargs, doc_id):
        return Instance("generate_until", {}, (text, kwargs), idx=0, metadata=("t", doc_id, 1))

    samples = [[request("Question: Which of these is a mammal? Answer:", greedy, 0)],
               [request("Plants need sunlight and", {**greedy, "max_gen_toks": 6}, 1)]]
    evaluators = [lm.runner.evaluator("generate_until", s, 1 << 26) for s in samples]
    assert all(isinstance(e, SampleDecoder) for e in evaluators)
    asks = [(e, c) for e in evaluators for c in CHAINS[:4]]
    got = evaluate_many(lm.model, asks)
    want = [lm.runner.run("generate_until", s, c) for s in samples for c in CHAINS[:4]]
    assert got == want
    sampled = [request("The answer is", {**greedy, "do_sample": True, "temperature": 1.0}, 2)]
    assert not isinstance(lm.runner.evaluator("generate_until", sampled, 1 << 26),
                          SampleDecoder)
    # A second runner on the same model decodes through its own hook (tests/test_runner_hook.py)
    other = ChainRunner(lm, True, 1 << 26)
    assert isinstance(other.evaluator("generate_until", samples[0], 1 << 26), SampleDecoder)
    # Prompts are shared across samples only where asked (share_prompts=True).
    assert lm.runner.prompt_cache is None
    shared = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", share_prompts=True)
    assert shared.runner.prompt_cache is not None
    decoders = [shared.runner.evaluator("generate_until", s, 1 << 26) for s in samples]
    assert evaluate_many(shared.model, [(d, c) for d in decoders for c in CHAINS[:4]]) == want


def test_streamed_decoding_answers_each_search_as_alone(tiny_llama_dir):
    """Through ``runner.Evaluations`` as a stream (searches submit while other searches'
    rows decode, rows join and leave the running batch), every submission gets exactly
    the texts it gets answered alone."""
    from lm_eval.api.instance import Instance

    from lm_eval_cola.engine.runner import Evaluations
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")
    texts = ["Question: Which of these is a mammal? Answer:", "Plants need sunlight and",
             "The answer is 42. Let us"]
    samples = [[Instance("generate_until", {}, (text, {"until": ["."], "max_gen_toks": 4 + 3 * k,
                                                       "do_sample": False}),
                         idx=0, metadata=("t", k, 1))] for k, text in enumerate(texts)]
    asks = {k: [(lm.runner.evaluator("generate_until", s, 1 << 26), c)
                for c in CHAINS[k:k + 2]] for k, s in enumerate(samples)}
    alone = {k: [lm.runner.run("generate_until", samples[k], c) for _, c in a]
             for k, a in asks.items()}
    stream = Evaluations(lm.model)
    stream.submit(0, asks[0])
    got: dict[int, list] = {}
    steps = 0
    while len(got) < len(asks):
        if steps in (1, 3):  # later searches join the batch in flight
            stream.submit(steps // 2 + 1, asks[steps // 2 + 1])
        got.update(stream.step())
        steps += 1
    assert got == alone
