"""numerics=fast for log-likelihood search, and the W chains of one sample in one forward.

- fast numerics (rows laid end to end, no padding, samples of any length in one forward:
  ``engine/flat_rows.py``) decides as exact numerics does on the tiny models: the share of
  (sample, chain) evaluations with the same decision (the chosen answer and each request's
  greedy flag) is at least AGREEMENT (measured: 1,188 of 1,188 alike, 11 architectures),
  scores within 1e-4;
- exact numerics is unchanged: a sample's W chains scored in one forward are bitwise what
  scoring them one at a time gives, and their common prefix runs once, in one row;
- numerics=exact (or not given) leaves records names, row keys and the same-run checks as
  before the setting; numerics=fast changes each.
"""

from __future__ import annotations

import random

import pytest
import torch

from lm_eval_cola.engine.fast import SampleScorer, pack, score_many
from lm_eval_cola.engine.score_plan import SCORE_STATS, common_length, plan_jobs
from lm_eval_cola.harness.conditions import RunConditions
from lm_eval_cola.results.identity import EvalIdentity, deciding_args
from lm_eval_cola.search.driver import RunFacts
from lm_eval_cola.search.searchers import get_searcher
from tests.support.tiny_models import tiny_configs, tiny_model

pytestmark = pytest.mark.tiny

AGREEMENT = 0.99  # the stated bound: fast decisions equal exact ones on >= 99% of evaluations
CPU = torch.device("cpu")


def samples_of(seed: int, count: int = 6):
    """Multiple-choice samples of varied lengths (contexts of 5 to 40 tokens, 2-4 choices)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        context = [rng.randrange(3, 128) for _ in range(rng.randrange(5, 41))]
        choices = [[rng.randrange(3, 128) for _ in range(rng.randrange(1, 4))]
                   for _ in range(rng.randrange(2, 5))]
        out.append(pack([(context, c) for c in choices], max_length=256))
    return out


def edit(chain: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
    """``chain`` with a block of 1-2 positions skipped or looped once more."""
    at = rng.randrange(len(chain))
    size = rng.randrange(1, 3)
    block = chain[at:at + size]
    if rng.random() < 0.5 and len(chain) > size:
        return chain[:at] + chain[at + size:]
    return chain[:at + size] + block + chain[at + size:]


def chain_rounds(seed: int, layers: int, rounds: int = 5, width: int = 3):
    """Per round, ``width`` new chains a sample asks at once, as a search asks them: one or
    two edits of the full chain (skipped or looped blocks), so they share prefixes."""
    rng = random.Random(seed)
    full = tuple(range(layers))
    seen: set[tuple[int, ...]] = set()
    out = []
    for _ in range(rounds):
        chains: list[tuple[int, ...]] = []
        while len(chains) < width:
            chain = edit(full, rng)
            if rng.random() < 0.5:
                chain = edit(chain, rng)
            if chain not in seen:
                seen.add(chain)
                chains.append(chain)
        out.append(chains)
    return out


def usable_kinds() -> list[str]:
    """Architectures whose tiny model takes the fast scorer on these samples (a sliding
    window shorter than a sample sends it to lm-eval's path)."""
    kinds = []
    for kind in sorted(tiny_configs()):
        model = tiny_model(kind)
        if all(SampleScorer.usable(model, s) for s in samples_of(0)):
            kinds.append(kind)
    return kinds


KINDS = usable_kinds()


def decision(scores: list[tuple[float, bool]]) -> tuple[int, tuple[bool, ...]]:
    """What a judge decides from a sample's scores: the chosen choice and greedy flags."""
    best = max(range(len(scores)), key=lambda k: scores[k][0])
    return best, tuple(greedy for _, greedy in scores)


def search_like(model, samples, rounds, numerics: str):
    """Every sample's rounds of chains, all samples' asks of a round in one score_many."""
    scorers = [SampleScorer(model, s, CPU, numerics=numerics) for s in samples]
    out = {}
    for chains in rounds:
        asks = [(scorer, chain) for scorer in scorers for chain in chains]
        for (scorer, chain), scores in zip(asks, score_many(model, asks), strict=True):
            out[(scorers.index(scorer), chain)] = scores
    return out


def test_fast_numerics_decides_as_exact_on_the_tiny_models():
    same = total = 0
    for kind in KINDS:
        model = tiny_model(kind)
        samples = samples_of(1)
        rounds = chain_rounds(2, model.config.num_hidden_layers, rounds=6)
        exact = search_like(model, samples, rounds, "exact")
        fast = search_like(model, samples, rounds, "fast")
        assert exact.keys() == fast.keys()
        for key, scores in exact.items():
            total += 1
            same += decision(scores) == decision(fast[key])
            for (a, _), (b, _) in zip(scores, fast[key], strict=True):
                assert a == pytest.approx(b, abs=1e-4), (kind, key)
    assert total >= 1000
    print(f"fast numerics: {same}/{total} evaluations decided as exact")
    assert same / total >= AGREEMENT, f"{same}/{total} evaluations decided alike"


@pytest.mark.parametrize("kind", ["llama", "gemma2", "qwen3_moe"])
def test_fast_numerics_runs_samples_of_any_length_in_one_forward(kind):
    if kind not in KINDS:
        pytest.skip("sliding window shorter than the samples")
    model = tiny_model(kind)
    samples = samples_of(3)
    assert len({s.padded_length for s in samples}) > 1
    chain = tuple(range(model.config.num_hidden_layers))
    forwards = {}
    for numerics in ("exact", "fast"):
        SCORE_STATS.reset()
        scorers = [SampleScorer(model, s, CPU, numerics=numerics) for s in samples]
        score_many(model, [(scorer, chain) for scorer in scorers])
        forwards[numerics] = SCORE_STATS.forwards
        if numerics == "fast":  # rows laid end to end: no token is padding
            assert SCORE_STATS.token_layers == sum(s.length for s in samples) * len(chain)
    assert forwards == {"exact": len({s.padded_length for s in samples}), "fast": 1}


def trie_positions(chains) -> int:
    """Chain positions a set of chains needs when each distinct prefix is computed once."""
    return len({chain[:n] for chain in chains for n in range(1, len(chain) + 1)})


@pytest.mark.parametrize("kind", KINDS)
def test_w_chains_in_one_forward_are_bitwise_the_chains_one_at_a_time(kind):
    """Exact numerics: a sample's W chains in one score_many equal them scored one at a time
    (which reads the shared prefix back from the store), and the forward computes each
    shared prefix once."""
    model = tiny_model(kind)
    sample = samples_of(4, count=1)[0]
    for chains in chain_rounds(5, model.config.num_hidden_layers, rounds=3, width=4):
        together = SampleScorer(model, sample, CPU)
        SCORE_STATS.reset()
        batched = score_many(model, [(together, c) for c in chains])
        assert SCORE_STATS.row_calls == trie_positions(chains)  # rows x layer calls
        alone = SampleScorer(model, sample, CPU)
        assert batched == [alone(c) for c in chains]


@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_a_chain_starts_from_the_longest_prefix_a_sibling_computes(numerics):
    model = tiny_model("llama")
    scorer = SampleScorer(model, samples_of(6, count=1)[0], CPU, numerics=numerics)
    scorer((0, 1))  # stored: (0,), (0, 1)
    chains = [(0, 1, 2, 3), (0, 1, 2, 2, 3), (0, 1, 3), (0, 1, 2)]
    jobs = plan_jobs([(scorer, c) for c in chains])
    assert [job.start for job in jobs] == [2, 3, 2, 3]
    assert [job.source for job in jobs] == [None, jobs[0], None, jobs[0]]
    assert not jobs[3].has_row  # a prefix of a sibling: its output is the sibling's row
    assert common_length(chains[0], chains[1]) == 3


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_w_chains_in_one_fast_forward_equal_them_one_at_a_time(kind):
    model = tiny_model(kind)
    sample = samples_of(7, count=1)[0]
    chains = chain_rounds(8, model.config.num_hidden_layers, rounds=1, width=5)[0]
    together = SampleScorer(model, sample, CPU, numerics="fast")
    batched = score_many(model, [(together, c) for c in chains])
    alone = SampleScorer(model, sample, CPU, numerics="fast")
    for got, want in zip(batched, [alone(c) for c in chains], strict=True):
        assert decision(got) == decision(want)
        assert [a for a, _ in got] == pytest.approx([b for b, _ in want], abs=1e-5)


def facts(numerics: str | None = None) -> RunFacts:
    extra = {} if numerics is None else {"numerics": numerics}
    return RunFacts(model="/models/tiny", load_args={}, num_layers=4,
                    searcher=get_searcher("mcts", budget=4, max_len=8), seed=1234,
                    keep_correct=5, dtype="torch.float32", **extra)


def test_numerics_names_the_records_file_only_when_fast():
    assert facts("exact").config_hash() == facts().config_hash()
    assert facts("fast").config_hash() != facts().config_hash()


def test_numerics_exact_is_as_if_not_given_in_row_keys_and_same_run_checks():
    plain = {"pretrained": "m", "searcher": "mcts"}
    assert deciding_args({**plain, "numerics": "exact"}) == deciding_args(plain)
    assert deciding_args({**plain, "numerics": "fast"}) == {**plain, "numerics": "fast"}
    identity = EvalIdentity()
    def conditions(**args):
        return RunConditions.make({**plain, **args}, identity)
    assert conditions(numerics="exact").difference(conditions()) is None
    assert conditions(numerics="exact") == conditions()
    found = conditions(numerics="fast").difference(conditions())
    assert found == "model_args numerics=fast != numerics=(not set)"
