"""A runner decodes generation through the hook it installs on the model while it decodes
(``runner.decoding_by``): any ``ChainRunner`` built on a cola model takes its own fast path
without being the model's ``lm.runner``; a model whose decoding step reads no hook is
refused in one line; a runner takes its settings as passed, not from the model."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.tiny

GREEDY = {"until": ["Question:", "."], "max_gen_toks": 8, "do_sample": False,
          "temperature": 0.0}
CHAINS = [(0, 1, 2, 3), (0, 2, 3), (1, 1, 3)]


def _request(text: str, doc_id: int, **kwargs):
    from lm_eval.api.instance import Instance

    return Instance("generate_until", {}, (text, {**GREEDY, **kwargs}), idx=0,
                    metadata=("t", doc_id, 1))


class _Untouchable:
    """Stands in for ``lm.runner``: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"lm.runner.{name} was used")


def test_a_second_runner_decodes_through_its_own_fast_path(tiny_llama_dir):
    from lm_eval_cola.engine.fast_generate import DECODE_STATS
    from lm_eval_cola.engine.runner import ChainRunner, SampleDecoder, evaluate_many
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")
    lm.runner = _Untouchable()  # the model's own runner is never asked
    other = ChainRunner(lm, True, 1 << 26)
    samples = [[_request("Question: Which of these is a mammal? Answer:", 0)],
               [_request("Plants need sunlight and", 1, max_gen_toks=5)]]
    decoders = [other.evaluator("generate_until", s, 1 << 26) for s in samples]
    assert all(isinstance(d, SampleDecoder) for d in decoders)
    DECODE_STATS.reset()
    got = evaluate_many(lm.model, [(d, c) for d in decoders for c in CHAINS])
    # every (sample, chain) row went through the batched decoder, none through lm-eval's
    assert DECODE_STATS.rows == len(samples) * len(CHAINS) and DECODE_STATS.steps > 0
    assert lm.decode_hook is None  # installed only while the runner decodes
    want = [other.run("generate_until", s, c) for s in samples for c in CHAINS]
    assert got == want  # lm-eval's own generate_until texts under each chain


def test_a_model_whose_decoding_step_reads_no_hook_is_refused(tiny_llama_dir):
    from lm_eval.models.huggingface import HFLM

    from lm_eval_cola.engine.runner import ChainRunner

    plain = HFLM(pretrained=tiny_llama_dir, device="cpu")  # lm-eval's own decoding step
    runner = ChainRunner(plain, True, 1 << 26)
    with pytest.raises(RuntimeError, match="made no decoding call through this runner"):
        runner.evaluator("generate_until", [_request("Plants need sunlight and", 0)], 1 << 26)


def test_a_runner_takes_its_settings_as_passed(tiny_llama_dir):
    from lm_eval_cola.engine.runner import ChainRunner
    from lm_eval_cola.harness.models import ColaHFLM
    from lm_eval_cola.search.searchers import get_searcher

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")  # share_prompts off, no searcher
    asked: list[int] = []
    runner = ChainRunner(lm, True, 1 << 26, kv_bytes=1 << 22, share_prompts=True,
                         teacher_forcing=lambda: asked.append(1) is None)
    assert runner.prompt_cache is not None and lm.runner.prompt_cache is None
    assert runner.kv_bytes == 1 << 22
    assert runner.teacher_forcing and asked == [1]  # a callable is asked each time
    assert ChainRunner(lm, True, 1 << 26, teacher_forcing=True).teacher_forcing
    assert not ChainRunner(lm, True, 1 << 26).teacher_forcing
    # the model hands its runner a callable: a searcher swapped in later is followed
    assert not lm.runner.teacher_forcing
    lm.searcher = get_searcher("mcts", mode="deep", budget=2, max_len=8)  # graded reward
    assert lm.runner.teacher_forcing
