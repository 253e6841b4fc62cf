"""``lm-eval-cola verify --tolerance T`` (#24 item 6): a recorded decision that flips on
re-run is a rounding flip, counted apart and not failing, when the re-run's deciding scores
(the best gold choice's and the best other choice's) are within ``T x max(1, |top|)``;
anything else, and every flip without ``--tolerance``, is a mismatch. A fake task, model and
records file stand in for a run (no model is loaded)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lm_eval_cola.cli import main
from lm_eval_cola.cli import verify as verify_cli
from lm_eval_cola.compat.lm_eval_private import hash_doc
from lm_eval_cola.results.records import Record
from lm_eval_cola.search.judge import TaskJudge

pytestmark = pytest.mark.quick

FULL = (0, 1, 2, 3)
DOCS = [{"question": f"q{i}", "choices": ["a", "b", "c"], "gold": 1} for i in range(3)]


class FakeTask:
    """A multiple-choice task judged by ``acc`` (argmax of the raw log-likelihoods)."""

    OUTPUT_TYPE = "multiple_choice"

    def __init__(self, output_type: str = "multiple_choice"):
        self.OUTPUT_TYPE = output_type
        self.config = SimpleNamespace(task="fake_mc", metric_list=[{"metric": "acc"}],
                                      doc_to_choice=None)
        self.eval_docs = DOCS
        self._metric_fn_list = {"acc": None}

    def doc_to_choice(self, doc):
        return doc["choices"]

    def doc_to_target(self, doc):
        return doc["gold"]

    def doc_to_text(self, doc):
        return doc["question"]

    def process_results(self, doc, results):
        lls = [r[0] for r in results]
        return {"acc": float(lls.index(max(lls)) == doc["gold"])}


def fake_lm(scores: dict[tuple[int, tuple[int, ...]], list[float]], task: FakeTask):
    """A model whose re-run of (doc, chain) gives ``scores`` (one log-likelihood a choice)."""

    def run(kind, requests, chain):
        doc_id = int(requests[0].arguments[0][1:])
        return [(ll, False) for ll in scores[(doc_id, tuple(chain))]]

    return SimpleNamespace(judges=SimpleNamespace(task=lambda name: task, expect_attached=True),
                           num_layers=4, max_chain_length=8, runner=SimpleNamespace(run=run))


def record(doc_id: int, best_chain: str, best_correct: bool, full_correct: bool) -> dict:
    doc = DOCS[doc_id]
    return Record(task="fake_mc", doc_id=doc_id, doc_hash=hash_doc(doc), model="fake",
                  searcher="mcts", oracle=True, settings={}, seed=0, num_layers=4,
                  full_correct=full_correct, best_chain=best_chain, best_length=2,
                  best_correct=best_correct, best_score=0.0, evaluations=2, seconds=0.0,
                  responses=[], request_type="loglikelihood",
                  requests=[[doc["question"], f" {c}"] for c in doc["choices"]],
                  load_args={"pretrained": "fake"}).to_json()


@pytest.fixture
def run_verify(tmp_path, monkeypatch, capsys):
    """Verify records against fake re-run scores: (exit code, printed lines); the last
    run's stderr in ``go.err``."""

    def go(rows: list[dict], scores: dict, *flags: str, task: FakeTask | None = None):
        lm = fake_lm(scores, task or FakeTask())
        monkeypatch.setattr("lm_eval_cola.harness.models.ColaHFLM",
                            lambda include_path=None, **args: lm)
        monkeypatch.setattr(verify_cli, "_MODELS", {})
        path = tmp_path / "cola-records_fake.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        code = main(["verify", str(path), *flags])
        printed = capsys.readouterr()
        go.err = printed.err
        return code, printed.out.strip().splitlines()

    return go


# Re-run scores (choices a, b, c; gold b). Doc 0 and 1 were recorded with the best chain
# right; on re-run doc 0's gold loses by a rounding-sized gap (1e-6 at |top| ~ 2), doc 1's
# by 0.5. Doc 2 reproduces. The full chain reproduces everywhere (recorded wrong).
SCORES = {
    (0, (0, 1)): [-2.0, -2.000001, -5.0],
    (1, (0, 1)): [-2.0, -2.5, -5.0],
    (2, (0, 1)): [-3.0, -1.0, -5.0],
    **{(d, FULL): [-1.0, -4.0, -5.0] for d in range(3)},
}
ROWS = [record(0, "0-1", True, False), record(1, "0-1", True, False),
        record(2, "0-1", True, False)]


def test_without_tolerance_every_flip_is_a_mismatch(run_verify):
    code, lines = run_verify(ROWS, SCORES)
    assert code == 1
    assert sum(line.startswith("MISMATCH fake_mc doc ") for line in lines) == 2
    assert lines[-1] == "verified 3 samples (6 chains): 4 reproduced, 2 mismatched"


def test_a_flip_within_the_tolerance_is_a_rounding_flip_and_does_not_fail(run_verify):
    code, lines = run_verify(ROWS[::2], SCORES, "--tolerance", "1e-4")
    assert code == 0
    assert lines[0].startswith("ROUNDING FLIP fake_mc doc 0 best chain 0-1: recorded "
                               "correct=True, re-run correct=False (re-run score gap 1e-06")
    assert lines[-1] == ("verified 2 samples (4 chains): 3 reproduced, 1 rounding flips "
                         "(tolerance 0.0001), 0 mismatched")


def test_a_flip_beyond_the_tolerance_is_still_a_mismatch(run_verify):
    code, lines = run_verify(ROWS, SCORES, "--tolerance", "1e-4")
    assert code == 1
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ROUNDING FLIP fake_mc doc 0 best chain 0-1", "MISMATCH fake_mc doc 1 best chain 0-1"]
    assert lines[-1].endswith("4 reproduced, 1 rounding flips (tolerance 0.0001), 1 mismatched")
    # a tolerance wide enough for doc 1's gap (0.5 <= 0.3 x 2) takes it too
    code, lines = run_verify(ROWS, SCORES, "--tolerance", "0.3")
    assert code == 0 and lines[-1].endswith("2 rounding flips (tolerance 0.3), 0 mismatched")


def test_the_gold_against_the_best_other_choice_decides_not_the_top_two():
    """Recorded right, re-run wrong with the two *wrong* choices nearly tied far above the
    gold: the gold moved by a real margin, so this is no rounding flip."""
    judge = TaskJudge(FakeTask(), None, None)
    doc = DOCS[0]
    far = [(-1.0, False), (-3.0, False), (-1.0000001, False)]
    assert verify_cli.deciding_gap(judge, doc, far) == pytest.approx((2.0, -1.0))
    assert verify_cli.near_tie(judge, doc, far, 1e-3) is None
    close = [(-1.0, False), (-1.0000005, False), (-9.0, False)]
    gap, bound = verify_cli.near_tie(judge, doc, close, 1e-3)
    assert gap == pytest.approx(5e-7) and bound == pytest.approx(1e-3)  # max(1, |top|) = 1
    # relative: a gap of 0.01 at |top| = 50 is within 1e-3 x 50
    assert verify_cli.near_tie(judge, doc, [(-50.0, 0), (-50.01, 0), (-60.0, 0)], 1e-3)
    assert verify_cli.near_tie(judge, doc, [(-5.0, 0), (-5.01, 0), (-60.0, 0)], 1e-3) is None


def test_no_deciding_scores_no_tolerance():
    """Generation and loglikelihood tasks, and non-finite scores: always a mismatch."""
    doc = DOCS[0]
    for output_type in ("generate_until", "loglikelihood"):
        judge = TaskJudge(FakeTask(output_type), None, None)
        assert verify_cli.deciding_gap(judge, doc, [(-1.0, False), (-1.0, False)]) is None
    judge = TaskJudge(FakeTask(), None, None)
    assert verify_cli.deciding_gap(judge, doc, [(float("nan"), 0), (-1.0, 0), (-2.0, 0)]) is None


def test_a_generation_flip_is_a_mismatch_whatever_the_tolerance(run_verify, monkeypatch):
    judged = []

    def judge(self, doc, responses, full=False):
        judged.append(full)
        return SimpleNamespace(correct=full)  # the full chain right, every other chain wrong

    monkeypatch.setattr(TaskJudge, "judge", judge)
    monkeypatch.setattr(TaskJudge, "_pick_filter", lambda self, name: None)
    rows = [dict(ROWS[0], request_type="generate_until", full_correct=True)]
    code, lines = run_verify(rows, SCORES, "--tolerance", "1", task=FakeTask("generate_until"))
    assert judged == [False, True]
    assert code == 1 and lines[0].startswith("MISMATCH fake_mc doc 0 best chain 0-1")


def test_a_bad_tolerance_is_refused_in_one_line(run_verify):
    for bad in ("-1", "nan"):
        code, lines = run_verify(ROWS, SCORES, "--tolerance", bad)
        assert code == 2 and lines == []
        assert run_verify.err.startswith(f"error: bad --tolerance {float(bad)!r}; allowed: ")
