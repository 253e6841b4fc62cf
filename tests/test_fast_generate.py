"""Fast greedy generation (prompt prefix reuse, a neighbour's answer as draft) equals
``model.generate`` with lm-eval's stop criteria, chain by chain, on several architectures."""

from __future__ import annotations

import pytest
import torch

from lm_eval_cola.engine.apply import chain_applied
from lm_eval_cola.engine.fast_generate import SampleGenerator
from tests.support.near_tie import assert_same_tokens
from tests.support.reference_paths import generation_model, plain_generate, reference_logits
from tests.support.tiny_models import tiny_tokenizer

pytestmark = pytest.mark.tiny

# Neighbouring chains as a search tries them, with repeats, skips and a reorder.
CHAINS = [(0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 1, 2, 3), (0, 1, 2), (0, 2, 3), (1, 3),
          (0, 1, 1, 2), (3, 2, 1, 0), (0, 1, 2, 3)]
KINDS = ["llama", "mistral", "qwen2", "qwen3_moe", "gemma2", "gemma3_text", "phi3", "olmo2"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize("kind", KINDS)
def test_fast_generation_equals_generate(kind, tokenizer):
    model = generation_model(kind, len(tokenizer))
    generator = SampleGenerator(model, tokenizer)
    context = torch.tensor([tokenizer.encode("Question: Which of these is a mammal? Answer:")])
    max_length, stop = context.shape[1] + 24, ["Question:", "</s>"]
    for chain in CHAINS:
        with chain_applied(model, chain):
            expected = plain_generate(model, tokenizer, context, max_length, stop)
        generator.chain = chain
        assert generator.usable(context, max_length, {"do_sample": False})
        got = generator.generate(context, max_length, stop)
        assert_same_tokens(got[0].tolist(), expected[0].tolist(),
                           reference_logits(model, chain), where=(kind, chain))
    # The work was really reused: prompt layers replayed and draft tokens kept.
    assert generator.prompt_layers_run < generator.prompt_layers_total
    assert generator.tokens_from_drafts > 0


def test_stop_sequences_and_eos_end_generation_as_generate_does(tokenizer):
    model = generation_model("llama", len(tokenizer), seed=3)
    context = torch.tensor([tokenizer.encode("The answer is")])
    chain = (0, 1, 2, 3)
    with chain_applied(model, chain):
        free = plain_generate(model, tokenizer, context, context.shape[1] + 40, [])
        text = tokenizer.decode(free[0, context.shape[1]:])
        # Stop on a piece of what the model writes anyway: generation must end there.
        stop = [text[len(text) // 2:][:3]] if len(text) > 6 else ["e"]
        expected = plain_generate(model, tokenizer, context, context.shape[1] + 40, stop)
    generator = SampleGenerator(model, tokenizer)
    generator.chain = chain
    for _ in range(2):  # the second time the first answer is the draft
        got = generator.generate(context, context.shape[1] + 40, stop)
        assert_same_tokens(got[0].tolist(), expected[0].tolist(),
                           reference_logits(model, chain), where=chain)
    assert expected.shape[1] < free.shape[1] or free[0, -1] == 2


def test_not_usable_where_generate_would_do_more(tokenizer):
    model = generation_model("llama", len(tokenizer))
    generator = SampleGenerator(model, tokenizer)
    generator.chain = (0, 1, 2, 3)
    context = torch.tensor([[5, 6, 7]])
    assert generator.usable(context, 20, {"do_sample": False})
    assert not generator.usable(context, 20, {"do_sample": True})
    assert not generator.usable(context, 20, {"num_beams": 2})
    assert not generator.usable(context, 20, {})  # lm-eval always states do_sample
    greedy = {"do_sample": False, "temperature": 0.0}
    assert generator.usable(context, 20, greedy)
    assert not generator.usable(torch.tensor([[5, 6, 7], [5, 6, 8]]), 20, greedy)
    padded = {**greedy, "attention_mask": torch.tensor([[0, 1, 1]])}
    assert not generator.usable(context, 20, padded)
    model.generation_config.repetition_penalty = 1.3
    assert not generator.usable(context, 20, greedy)
    short = generation_model("mistral", len(tokenizer))
    short.config.sliding_window = 8
    window = SampleGenerator(short, tokenizer)
    window.chain = (0, 1, 2, 3)
    assert not window.usable(context, 20, greedy)


def test_prompt_cache_shares_a_few_shot_start_across_samples(tokenizer):
    """Two samples whose prompts share their start (few-shot examples): the second runs only
    its own tail under chains the first one ran, and still equals generate."""
    from lm_eval_cola.engine.fast_generate import PromptCache

    model = generation_model("qwen2", len(tokenizer))  # sliding and full layers
    shots = "Question: Which of these is a mammal? Answer: the whale is a mammal.\n" * 2
    cache = PromptCache()
    generators = []
    for question in ("Plants need sunlight and water", "The answer is 42. Let us think"):
        context = torch.tensor([tokenizer.encode(shots + "Question: " + question)])
        max_length, stop = context.shape[1] + 16, ["Question:"]
        generator = SampleGenerator(model, tokenizer, prompt_cache=cache)
        for chain in CHAINS[:5]:
            with chain_applied(model, chain):
                expected = plain_generate(model, tokenizer, context, max_length, stop)
            generator.chain = chain
            got = generator.generate(context, max_length, stop)
            assert_same_tokens(got[0].tolist(), expected[0].tolist(),
                               reference_logits(model, chain), where=chain)
        generators.append(generator)
    assert generators[0].prompt_tokens_from_cache == 0
    assert generators[1].prompt_tokens_from_cache > generators[1].prompt_tokens_total // 2
    assert 0 < cache.bytes <= cache.max_bytes
