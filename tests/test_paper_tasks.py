"""The paper's task suite (lm_eval_cola/tasks/, tasks/arc.py, tasks/dart.py).

quick: prompts, the letter parses, the boxed extraction and math-verify judgement on
hand-picked docs and answers; the same through lm-eval's own task objects (filters, metric) and
the oracle's judge; the seeded 500 (stable, nested, pinned); the task-path hook. real (marked):
the literal ``lm_eval --tasks cola_paper`` CLI with no include path. tiny (marked): ``cola_hf``
end to end on ``cola_arc_challenge``, and an oracle search that judges through the task's filter
and metric.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lm_eval_cola.compat import task_path
from lm_eval_cola.tasks.arc import (
    INVALID,
    arc_doc_to_target,
    arc_doc_to_text,
    arc_process_results,
    flexible_letter,
    sample_order,
    strict_letter,
)
from lm_eval_cola.tasks.dart import (
    boxed_filter,
    dart_doc_to_target,
    dart_process_results,
    last_boxed,
    math_equal,
)

pytestmark = pytest.mark.quick

REPO = Path(__file__).resolve().parents[1]
DATA = os.environ.get("COLA_DATA_DIR", "").strip()
needs_data = pytest.mark.skipif(not DATA, reason="needs COLA_DATA_DIR (local benchmark data)")
ARC_TASKS = ["cola_arc_easy", "cola_arc_challenge"]
DART_TASKS = [f"cola_dart_{n}" for n in range(1, 6)]


def arc_doc(labels: list[str], answer: str, question: str = "Which one?") -> dict:
    return {"id": "x", "question": question, "answerKey": answer,
            "choices": {"label": labels, "text": [f"choice {label}" for label in labels]}}


FOUR = arc_doc(["A", "B", "C", "D"], "B")
THREE = arc_doc(["A", "B", "C"], "C")
FIVE = arc_doc(["A", "B", "C", "D", "E"], "E")
NUMERIC = arc_doc(["1", "2", "3", "4"], "3")
MATH_DOC = {"problem": "What is $1/2 + 0$?", "level": "Level 1", "type": "Algebra",
            "solution": "We have $\\frac{1}{2}$, so the answer is $\\boxed{\\frac{1}{2}}$."}


# ----------------------------------------------------------------------- ARC: prompt, parse


@pytest.mark.parametrize("doc, listed, kind", [
    (FOUR, "(A, B, C or D)", "letter"), (THREE, "(A, B or C)", "letter"),
    (FIVE, "(A, B, C, D or E)", "letter"), (NUMERIC, "(1, 2, 3 or 4)", "number"),
])
def test_arc_prompt_lists_the_items_own_labels(doc, listed, kind):
    text = arc_doc_to_text(doc)
    labels = doc["choices"]["label"]
    assert text.splitlines()[0] == "Question: Which one?"
    assert text.splitlines()[1:-1] == [f"{label}. choice {label}" for label in labels]
    assert text.splitlines()[-1] == f"Answer with the {kind} of the correct choice {listed} only."
    assert arc_doc_to_target(doc) == doc["answerKey"]


@pytest.mark.parametrize("response, labels, strict, flexible", [
    ("B", "ABCD", "B", "B"),
    ("B. Because plants need light.", "ABCD", "B", "B"),   # a letter with trailing text
    (" (C) rust", "ABCD", "C", "C"),
    ("E) the last one", "ABCDE", "E", "E"),                # a 5-choice item
    ("D", "ABC", INVALID, INVALID),                        # a 3-choice item: no D
    ("3, since", "1234", "3", "3"),                        # numeric labels
    ("10", "1234", INVALID, INVALID),
    ("Bacteria", "ABCD", INVALID, INVALID),
    ("b", "ABCD", INVALID, INVALID),
    ("A plant needs water", "ABCD", INVALID, INVALID),     # the article, not a label
    ("The answer is B.", "ABCD", INVALID, "B"),
    ("I think **C** is right", "ABCD", INVALID, "C"),
    ("answer: (D)", "ABCD", INVALID, "D"),
    ("none of these", "ABCD", INVALID, INVALID),
])
def test_letter_parses(response, labels, strict, flexible):
    assert strict_letter(response, list(labels)) == strict
    assert flexible_letter(response, list(labels)) == flexible


def test_arc_metric_compares_labels_as_strings():
    assert arc_process_results(NUMERIC, ["3"]) == {"exact_match": 1.0}
    assert arc_process_results(NUMERIC, ["C"]) == {"exact_match": 0.0}
    assert arc_process_results(FOUR, [INVALID]) == {"exact_match": 0.0}


# ----------------------------------------------------------------------- DART: box, verify


@pytest.mark.parametrize("text, content", [
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),                   # nested braces
    ("\\boxed{1} then \\boxed{\\{x : x^{2} > 1\\}}", "\\{x : x^{2} > 1\\}"),  # the last box
    ("$x = \\boxed 9$.", "9"),
    ("\\fbox{7}", "7"),
    ("no box at all: 0.5", None),                                        # a missing box
    ("cut off \\boxed{\\frac{1}{", None),                                # never closed
])
def test_last_boxed(text, content):
    assert last_boxed(text) == content


@pytest.mark.parametrize("answer, equal", [
    ("\\boxed{0.5}", True), ("\\boxed{\\dfrac12}", True), ("\\boxed{1/2}", True),
    ("\\boxed{\\frac{2}{4}}", True), ("\\boxed{\\frac{1}{3}}", False), (INVALID, False),
    ("", False),
])
def test_math_equal_is_equivalence_not_spelling(answer, equal):
    assert math_equal("\\frac{1}{2}", answer) is equal


def test_dart_strict_needs_a_box_and_flexible_does_not():
    boxed = "Adding zero changes nothing: $\\boxed{\\dfrac{1}{2}}$"
    unboxed = "Adding zero changes nothing, so the answer is 0.5"
    assert dart_doc_to_target(MATH_DOC) == "\\frac{1}{2}"
    strict = boxed_filter([[boxed], [unboxed]], [MATH_DOC, MATH_DOC])
    assert strict == [["\\boxed{\\dfrac{1}{2}}"], [INVALID]]
    assert dart_process_results(MATH_DOC, strict[0]) == {"math_verify": 1.0}
    assert dart_process_results(MATH_DOC, strict[1]) == {"math_verify": 0.0}
    assert dart_process_results(MATH_DOC, [unboxed]) == {"math_verify": 1.0}  # flexible


def test_math_verify_outside_the_main_thread():
    # signal.alarm only works in the main thread: there the time limit must be off, not fail.
    found: list = []
    worker = threading.Thread(target=lambda: found.append(
        math_equal("2\\sqrt{2}", "\\boxed{\\sqrt{8}}")))
    worker.start()
    worker.join(60)
    assert found == [True]


# ----------------------------------------------------------------------- the seeded sample


def test_sample_order_is_seeded_nested_and_independent():
    keys = [f"doc{i}" for i in range(2000)]
    order = sample_order(keys, 500)
    assert len(order) == len(set(order)) == 500
    assert order == sample_order(list(keys), 500)
    assert sample_order(keys, 20) == order[:20]                    # --limit: a sample of its own
    assert sample_order(keys, 500, seed=7) != order
    assert sorted(sample_order(keys[:30], 500)) == list(range(30))  # fewer: all of them
    # a doc's place depends on its own key only: dropping other docs keeps the relative order
    kept = [i for i in order if i % 2 == 0]
    assert [2 * j for j in sample_order(keys[::2], 1000)][: len(kept)] == kept


@pytest.fixture(scope="module")
def paper_tasks() -> dict:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False, include_path=str(task_path.tasks_dir()))
    return manager.load(["cola_paper"])


def _keys(task) -> list[str]:
    docs = list(task.eval_docs)
    if "id" in docs[0]:
        return [d["id"] for d in docs]
    return [f"{d['type']}|{d['problem']}" for d in docs]


@needs_data
def test_every_task_has_its_seeded_500(paper_tasks):
    assert sorted(paper_tasks["tasks"]) == sorted(ARC_TASKS + DART_TASKS)
    assert paper_tasks["group_map"]["cola_paper"] == ["cola_arc", "cola_dart"]
    for name, task in paper_tasks["tasks"].items():
        docs = list(task.eval_docs)
        assert len(docs) == 500 and len(set(_keys(task))) == 500, name
        if name.startswith("cola_dart_"):
            assert {d["level"] for d in docs} == {f"Level {name[-1]}"}
            assert len({d["type"] for d in docs}) == 7          # all subjects
            assert all(dart_doc_to_target(d) for d in docs)      # every doc has a gold
    labels = [d["choices"]["label"] for d in paper_tasks["tasks"]["cola_arc_challenge"].eval_docs]
    assert {len(x) for x in labels} == {3, 4, 5} and any(x[0] == "1" for x in labels)


@needs_data
def test_the_sample_is_the_same_on_another_run(paper_tasks):
    # a fresh interpreter with another hash seed: no dependence on Python's hash randomisation
    script = ("import json; from lm_eval.tasks import TaskManager; "
              "from lm_eval_cola.compat.task_path import tasks_dir; "
              "from tests.test_paper_tasks import _keys; "
              "t = TaskManager(include_defaults=False, include_path=str(tasks_dir()))"
              ".load(['cola_arc_challenge', 'cola_dart_3'])['tasks']; "
              "print(json.dumps({n: _keys(v) for n, v in t.items()}))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    other = json.loads(out.strip().splitlines()[-1])
    for name in ("cola_arc_challenge", "cola_dart_3"):
        assert other[name] == _keys(paper_tasks["tasks"][name])
    # pinned: the same items on every machine (a changed sampler or data must fail here)
    assert _keys(paper_tasks["tasks"]["cola_arc_challenge"])[:3] == [
        "Mercury_7008610", "MDSA_2007_8_24", "Mercury_400780"]
    assert _keys(paper_tasks["tasks"]["cola_arc_easy"])[:3] == [
        "Mercury_412148", "Mercury_7014560", "NYSEDREGENTS_2013_8_9"]
    first = paper_tasks["tasks"]["cola_dart_1"].eval_docs[0]["problem"]
    assert first == "Compute $\\tan 225^\\circ$."


# ---------------------------------------------------- lm-eval's task objects and the oracle


def _filtered(task, filter_name: str, doc: dict, response: str) -> str:
    ensemble = next(f for f in task._filters if f.name == filter_name)
    resps = [[response]]
    for make in ensemble.filters:
        resps = make().apply(resps, [doc])
    return list(resps)[0]  # take_first gives a map


@needs_data
@pytest.mark.parametrize("doc", [FOUR, THREE, FIVE, NUMERIC])
def test_arc_task_filters_metric_and_oracle_judge(paper_tasks, doc):
    from lm_eval_cola.search.judge import TaskJudge

    task = paper_tasks["tasks"]["cola_arc_challenge"]
    gold = doc["answerKey"]
    assert task.doc_to_target(doc) == gold and task.doc_to_text(doc) == arc_doc_to_text(doc)
    assert [f.name for f in task._filters] == ["strict-match", "flexible-extract"]
    trailing, wordy = f"{gold}. because", f"The answer is {gold}"
    assert _filtered(task, "strict-match", doc, trailing) == gold
    assert _filtered(task, "strict-match", doc, wordy) == INVALID
    assert _filtered(task, "flexible-extract", doc, wordy) == gold
    judge = TaskJudge(task, None, None)  # the defaults a user gets without oracle_* settings
    assert (judge.metric, judge.filter_name) == ("exact_match", "strict-match")
    assert judge.judge(doc, [trailing]).correct and judge.judge(doc, [trailing]).answer == gold
    assert not judge.judge(doc, [wordy]).correct
    assert TaskJudge(task, None, "flexible-extract").judge(doc, [wordy]).correct
    assert task.process_results(doc, [gold]) == {"exact_match": 1.0}


@needs_data
def test_dart_task_filters_metric_and_oracle_judge(paper_tasks):
    from lm_eval_cola.search.judge import TaskJudge

    task = paper_tasks["tasks"]["cola_dart_2"]
    doc = dict(MATH_DOC, level="Level 2")
    prompt = task.doc_to_text(doc)
    assert "\\boxed{}" in prompt and prompt.endswith("Problem: What is $1/2 + 0$?")
    assert task.config.generation_kwargs["max_gen_toks"] == 1024
    nested = "So $x = \\boxed{\\frac{1}{\\sqrt{4}}}$"   # nested braces, equivalent, other spelling
    unboxed = "so the answer is 0.5"
    assert _filtered(task, "strict-match", doc, nested) == "\\boxed{\\frac{1}{\\sqrt{4}}}"
    assert _filtered(task, "strict-match", doc, unboxed) == INVALID
    judge = TaskJudge(task, None, None)
    assert (judge.metric, judge.filter_name) == ("math_verify", "strict-match")
    assert judge.judge(doc, [nested]).correct
    assert not judge.judge(doc, [unboxed]).correct
    assert not judge.judge(doc, ["\\boxed{0.25}"]).correct
    assert TaskJudge(task, None, "flexible-extract").judge(doc, [unboxed]).correct


# ----------------------------------------------------------------------- the task path


def test_task_path_puts_ours_first_and_keeps_the_users(tmp_path):
    from lm_eval.tasks import TaskManager

    was = task_path.is_installed()
    task_path.install()
    try:
        assert task_path.install() is False  # idempotent
        (tmp_path / "mine.yaml").write_text(  # a user's task of the same name wins
            "task: cola_arc_easy\ndataset_path: json\noutput_type: generate_until\n"
            "doc_to_text: q\ndoc_to_target: a\n")
        assert task_path.with_cola_tasks([str(tmp_path), str(task_path.tasks_dir())]) == [
            str(task_path.tasks_dir()), str(tmp_path)]
        from lm_eval.tasks import _index

        index = _index.TaskIndex.build(
            [Path(p) for p in task_path.with_cola_tasks(str(tmp_path))])
        assert index["cola_arc_easy"].yaml_path == tmp_path / "mine.yaml"
        assert "cola_paper" in index
        alone = TaskManager(include_defaults=False, include_path=str(tmp_path))
        assert "cola_paper" not in alone.all_tasks  # include_defaults=False: left alone
        assert alone.include_path == str(tmp_path)
    finally:
        if not was:
            task_path.uninstall()


@pytest.mark.real  # the lm-eval CLI in a subprocess, on the local benchmark data
@needs_data
def test_lm_eval_cli_finds_cola_paper_without_include_path(tmp_path):
    # the literal CLI in a fresh interpreter: only the installed start-up hook adds our tasks
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("LM_EVAL_COLA_NO_AUTOLOAD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "dummy", "--tasks", "cola_paper",
         "--limit", "2", "--output_path", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    assert set(ARC_TASKS + DART_TASKS) <= set(results["results"])
    assert {"cola_paper", "cola_arc", "cola_dart"} <= set(results["groups"]) | set(
        results["results"])
    assert results["results"]["cola_arc_easy"]["exact_match,strict-match"] == 0.0  # "lol"
    assert "math_verify,strict-match" in results["results"]["cola_dart_1"]


# ----------------------------------------------------------------------- tiny model, end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny random model, our hooks installed (the start-up hook does this when installed)."""
    from lm_eval_cola.compat import hooks, local_data
    from tests.support.tiny_models import save_tiny_model

    local_data.install()
    task_path.install()
    hooks.install_evaluator_hook()
    import lm_eval_cola.harness.models  # noqa: F401

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "llama")


def _evaluate(model: str, model_args: str, limit: int = 2) -> dict:
    import lm_eval

    return lm_eval.simple_evaluate(model=model, model_args=model_args,
                                   tasks=["cola_arc_challenge"], limit=limit, log_samples=True)


@pytest.mark.tiny
@needs_data
def test_cola_hf_runs_cola_arc_challenge(tiny_run, paper_tasks):
    results = _evaluate("cola_hf", f"pretrained={tiny_run},device=cpu")
    scores = results["results"]["cola_arc_challenge"]
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(scores)
    first_two = list(paper_tasks["tasks"]["cola_arc_challenge"].eval_docs)[:2]  # --limit 2
    for name, parse in (("strict-match", strict_letter), ("flexible-extract", flexible_letter)):
        samples = [s for s in results["samples"]["cola_arc_challenge"] if s["filter"] == name]
        assert [s["doc"]["id"] for s in samples] == [d["id"] for d in first_two]
        for sample in samples:
            response, labels = sample["resps"][0][0], sample["doc"]["choices"]["label"]
            assert sample["filtered_resps"][0] == parse(response, labels)
            assert sample["exact_match"] == float(
                parse(response, labels) == sample["doc"]["answerKey"])
            assert sample["arguments"][0][0].endswith(" only.\nAnswer:")  # the prompt


@pytest.mark.tiny
@needs_data
def test_oracle_search_judges_with_the_tasks_filter_and_metric(tiny_run, tmp_path, monkeypatch):
    import lm_eval_cola.tasks.arc as paper

    # The random model's text never parses as a label; make the strict parse read a label off
    # any text (one that depends on the text), so chains differ in answer and in correctness.
    def any_label(text: str, labels) -> str:
        return list(labels)[len(text) % len(labels)]

    monkeypatch.setattr(paper, "strict_letter", any_label)
    records = tmp_path / "records.jsonl"
    results = _evaluate("cola_mcts", f"pretrained={tiny_run},device=cpu,budget=4,"
                        f"record_chains=all,records={records}")
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert (row["oracle_metric"], row["oracle_filter"]) == ("exact_match", "strict-match")
        doc = next(s["doc"] for s in results["samples"]["cola_arc_challenge"]
                   if s["doc_id"] == row["doc_id"])
        labels = doc["choices"]["label"]
        assert row["chains"] and all(c["answer"] in labels for c in row["chains"])
        assert all(c["correct"] == (c["answer"] == doc["answerKey"]) for c in row["chains"])
        best = next(c for c in row["chains"] if c["chain"] == row["best_chain"])
        assert best["answer"] == any_label(row["responses"][0], labels)
    # lm-eval scores the best chains' answers with the same filter and metric
    oracle = results["results"]["cola_arc_challenge"]["exact_match,strict-match"]
    assert oracle == sum(r["best_correct"] for r in rows) / len(rows)
