"""Fake lm-eval tasks, judged as lm-eval's ConfigurableTask judges them, for the judge,
decoy and search tests (no model, no data)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

NAN = float("nan")


class FakeChoiceTask:
    """A multiple-choice task judged as lm-eval's ConfigurableTask judges one: argmax of
    the log-likelihoods (raw for acc, per character for acc_norm)."""

    OUTPUT_TYPE = "multiple_choice"
    multiple_input = False

    def __init__(self, metric: str = "acc"):
        self.config = SimpleNamespace(task="fake_mc", metric_list=[{"metric": metric}],
                                      doc_to_choice="choices")
        self._metric_fn_list = {metric: None}
        self._filters: list = []

    def doc_to_choice(self, doc):
        return doc["choices"]

    def doc_to_target(self, doc):
        return doc["gold"]

    def process_results(self, doc, results):
        lls = np.array([float(r[0]) for r in results])
        lengths = np.array([float(len(c)) for c in doc["choices"]])
        return {"acc": float(np.argmax(lls) == doc["gold"]),
                "acc_norm": float(np.argmax(lls / lengths) == doc["gold"])}


class FakeGenTask:
    """A generation task with exact-match scoring and no filter."""

    OUTPUT_TYPE = "generate_until"

    def __init__(self, answers: list[str]):
        self.config = SimpleNamespace(task="fake_gen", metric_list=[{"metric": "exact_match"}],
                                      doc_to_choice=None)
        self._filters: list = []
        self.eval_docs = [{"question": f"q{i}", "answer": a} for i, a in enumerate(answers)]

    def doc_to_target(self, doc):
        return doc["answer"]

    def process_results(self, doc, results):
        return {"exact_match": float(results[0].strip() == doc["answer"])}


def pairs(*lls):
    """Responses with these log-likelihoods, none of them greedy."""
    return [(ll, False) for ll in lls]
