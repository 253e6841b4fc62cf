"""The learned router: it learns a planted rule, masks what records do not know, decides by
its documented rule, answers each sample exactly as its chain does under cola_hf, and
never reads the gold."""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

import pytest

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.errors import UserError
from lm_eval_cola.harness.router import (
    Router,
    RouterFile,
    candidates_from_records,
    choose,
    executed_length,
    fit,
    labels_from_records,
)

pytestmark = pytest.mark.tiny

needs_data = pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                                reason="needs COLA_DATA_DIR (local benchmark data)")
FULL, SHORT_A, SHORT_B = "0-5", "0-1+3-5", "0-3+5"


def planted(n: int, seed: int) -> tuple[list[list[float]], list]:
    """Features (4 numbers) and fake records: chain A answers a sample iff its first
    feature is positive, chain B iff it is not; the full chain answers none."""
    rng = random.Random(seed)
    features, records = [], []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(4)]
        a = x[0] > 0
        features.append(x)
        records.append(SimpleNamespace(
            num_layers=6, doc_id=len(records),
            chains=[{"chain": FULL, "correct": False}, {"chain": SHORT_A, "correct": a},
                    {"chain": SHORT_B, "correct": not a}]))
    return features, records


def spec_of(fitted, candidates, length_penalty=0.0) -> RouterFile:
    return RouterFile(candidates=[format_chain(c) for c in candidates], num_layers=6,
                      hidden_size=2, feature_layers=1, weights=fitted.weights.tolist(),
                      bias=fitted.bias.tolist(), mean=fitted.mean.tolist(),
                      scale=fitted.scale.tolist(), length_penalty=length_penalty)


@pytest.mark.quick  # no model
def test_a_router_trained_on_fake_records_learns_the_planted_rule():
    features, records = planted(200, seed=1)
    candidates = candidates_from_records(records, 6, k=4)
    assert [format_chain(c) for c in candidates][0] == FULL
    assert {format_chain(c) for c in candidates[1:]} == {SHORT_A, SHORT_B}
    labels, known = labels_from_records(records, candidates, 6)
    router = Router(spec_of(fit(features, labels, known), candidates))
    test_features, test_records = planted(200, seed=2)  # samples it never saw
    right = 0
    for x, record in zip(test_features, test_records, strict=True):
        picked = format_chain(router.chains[router.pick(x)[0]])
        right += any(e["chain"] == picked and e["correct"] for e in record.chains)
    assert right >= 190


@pytest.mark.quick  # no model
def test_labels_a_search_never_evaluated_are_unknown_not_wrong():
    features, records = planted(120, seed=3)
    for record in records:  # chain B was only ever evaluated where it is right
        record.chains = [e for e in record.chains if e["chain"] != SHORT_B or e["correct"]]
    candidates = candidates_from_records(records, 6, k=4)
    labels, known = labels_from_records(records, candidates, 6)
    b = [format_chain(c) for c in candidates].index(SHORT_B)
    assert all(not k[b] for k, x in zip(known, features, strict=True) if x[0] > 0)
    masked = Router(spec_of(fit(features, labels, known, l2_grid=(1.0,)), candidates))
    as_wrong = Router(spec_of(fit(features, labels, None, l2_grid=(1.0,)), candidates))
    where_unknown = [2.0, 0.0, 0.0, 0.0]
    # masked: nothing says B is wrong where it was never evaluated; taken as wrong, the
    # same labels would teach that B fails there
    assert masked.probabilities(where_unknown)[b] > 0.5
    assert as_wrong.probabilities(where_unknown)[b] < 0.2
    assert masked.probabilities(where_unknown)[0] < 0.1  # the full chain is never right
    old = SimpleNamespace(num_layers=6, doc_id=9, chains=[])
    with pytest.raises(UserError, match="record_chains=all"):
        labels_from_records([old], candidates, 6)


@pytest.mark.quick  # no model
def test_decision_rule_and_executed_depth():
    chains = [(0, 1, 2, 3), (0, 1, 3), (0, 2)]
    assert choose([0.5, 0.5, 0.5], chains, 4, 0.0) == 2  # a tie goes to the shorter
    assert choose([0.9, 0.5, 0.5], chains, 4, 0.0) == 0
    assert choose([0.6, 0.5, 0.4], chains, 4, 0.5) == 2  # 0.4 - 0.25 > 0.6 - 0.5
    assert executed_length((0, 1, 3), 2) == 3  # shares both feature layers
    assert executed_length((0, 2, 3), 2) == 4  # layer 1 ran for the features only
    assert executed_length((1, 2), 2) == 4


@pytest.mark.quick  # no model
def test_router_file_round_trip_and_bad_files(tmp_path):
    features, records = planted(30, seed=4)
    candidates = candidates_from_records(records, 6, k=2)
    labels, known = labels_from_records(records, candidates, 6)
    spec = spec_of(fit(features, labels, known, l2_grid=(1.0,)), candidates)
    spec.write(tmp_path / "r.json")
    again = RouterFile.read(tmp_path / "r.json")
    assert Router(again).pick(features[0]) == Router(spec).pick(features[0])
    with pytest.raises(UserError, match="does not exist"):
        RouterFile.read(tmp_path / "missing.json")
    (tmp_path / "chain.json").write_text(json.dumps({"chain": "0-5"}))
    with pytest.raises(UserError, match="not a router file"):
        RouterFile.read(tmp_path / "chain.json")


def forced_router(path, chain: str, num_layers: int, hidden: int, feature_layers: int = 1):
    """A router file that always picks ``chain`` (a huge bias), for a model of this size."""
    dims = 2 * hidden
    full = f"0-{num_layers - 1}"
    RouterFile(candidates=[full, chain], num_layers=num_layers, hidden_size=hidden,
               feature_layers=feature_layers, weights=[[0.0] * dims, [0.0] * dims],
               bias=[-50.0, 50.0], mean=[0.0] * dims, scale=[1.0] * dims,
               length_penalty=0.0).write(path)


class NoGold(dict):
    """A doc that fails the test if anything reads it."""

    def __getitem__(self, key):
        raise AssertionError(f"the router read doc[{key!r}]")

    def get(self, key, default=None):
        raise AssertionError(f"the router read doc.get({key!r})")


def instances(kind: str, docs: list[tuple[str, list[str]]]):
    from lm_eval.api.instance import Instance

    out = []
    for doc_id, (context, choices) in enumerate(docs):
        for k, choice in enumerate(choices):
            args = (context, choice) if kind == "loglikelihood" else \
                (context, {"until": ["\n"], "max_gen_toks": 5, "do_sample": False})
            out.append(Instance(kind, NoGold(), args, k, ("arc_challenge", doc_id, 1)))
    return out


DOCS = [("Question: which is a planet?\nAnswer:", [" Mars", " the Sun", " a comet"]),
        ("Question: water boils at\nAnswer:", [" 100 C", " 10 C"]),
        ("Question: 2 + 2 =\nAnswer:", [" 4", " 5", " 22", " four"])]


@pytest.mark.parametrize("kind", ["loglikelihood", "generate_until"])
def test_cola_router_answers_as_its_chain_does_and_never_reads_the_gold(tiny_llama_dir,
                                                                         tmp_path, kind):
    from lm_eval_cola.harness.models import ColaHFLM, ColaRouter

    chain = "0+2+2-3"
    forced_router(tmp_path / "r.json", chain, 4, hidden=32)
    routed = ColaRouter(pretrained=tiny_llama_dir, device="cpu", router=str(tmp_path / "r.json"))
    fixed = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", chain=chain)
    docs = DOCS if kind == "loglikelihood" else [(c, ch[:1]) for c, ch in DOCS]
    got = getattr(routed, kind)(instances(kind, docs), disable_tqdm=True)
    want = getattr(fixed, kind)(instances(kind, docs), disable_tqdm=True)
    if kind == "loglikelihood":
        assert [g[1] for g in got] == [w[1] for w in want]
        assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4)
    else:
        assert got == want
    info = routed.get_model_info()
    assert info["cola_router_picks"] == {chain: len(docs)}
    assert info["cola_oracle"] is False and info["cola_depth_ratio"] == 1.0
    assert info["cola_executed_depth_ratio"] == 1.0  # layer 0 is both feature and chain


def test_router_features_read_the_shared_prompt_only(tiny_llama_dir):
    from lm_eval_cola.engine.features import hidden_features, prompt_tokens
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")
    one = instances("loglikelihood", [DOCS[0]])
    other = instances("loglikelihood", [(DOCS[0][0], [" Venus", " Pluto"])])
    assert prompt_tokens(lm, one) == prompt_tokens(lm, other) == lm.tok_encode(DOCS[0][0])
    first = hidden_features(lm, prompt_tokens(lm, one), 2)
    assert len(first) == 64
    assert first != hidden_features(lm, prompt_tokens(lm, one), 1)


def test_cola_router_refuses_bad_settings_in_one_line(tiny_llama_dir, tmp_path):
    from lm_eval_cola.harness.models import ColaRouter

    with pytest.raises(UserError, match="needs router=FILE"):
        ColaRouter(pretrained=tiny_llama_dir, device="cpu")
    forced_router(tmp_path / "six.json", "0-4", 6, hidden=32)
    with pytest.raises(UserError, match="6-layer model; this model has 4"):
        ColaRouter(pretrained=tiny_llama_dir, device="cpu", router=str(tmp_path / "six.json"))
    forced_router(tmp_path / "r.json", "0-2", 4, hidden=32)
    with pytest.raises(UserError, match="without searcher= and chain="):
        ColaRouter(pretrained=tiny_llama_dir, device="cpu", router=str(tmp_path / "r.json"),
                   chain="0-2")


@needs_data
def test_search_then_train_router_then_cola_router_end_to_end(tiny_llama_dir, tmp_path,
                                                               capsys):
    from lm_eval_cola.cli import main

    records = tmp_path / "train.jsonl"
    model = f"pretrained={tiny_llama_dir}"
    search = ["search", "--tasks", "arc_challenge", "--limit", "8",
              "--records", str(records), "--model_args", f"{model},budget=6"]
    assert main([*search, "--split", "test"]) == 2
    assert "evaluated on" in capsys.readouterr().err
    assert main([*search, "--split", "train"]) == 0
    lines = records.read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["chains"] for line in lines)
    out = tmp_path / "router.json"
    assert main(["train-router", "--tasks", "arc_challenge", "--split", "train", "--records",
                 str(records), "--model_args", model, "--candidates", "3", "--out",
                 str(out)]) == 0
    spec = RouterFile.read(out)
    assert spec.samples == 8 and spec.split == "train" and len(spec.candidates) <= 4
    assert 0.0 <= spec.score["cv_router_accuracy"] <= spec.score["candidate_oracle_accuracy"]
    from lm_eval_cola.harness.models import ColaRouter

    lm = ColaRouter(pretrained=tiny_llama_dir, device="cpu", router=str(out))
    from lm_eval import evaluator

    from lm_eval_cola.search.judge import task_manager

    results = evaluator.simple_evaluate(model=lm, tasks=["arc_challenge"], limit=6,
                                        task_manager=task_manager())
    assert results["config"]["cola_oracle"] is False
    assert sum(results["config"]["cola_router_picks"].values()) == 6
