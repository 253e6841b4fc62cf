"""lm-eval's requests as samples and back (``harness.requests``), the steps the search
path, the router and calibrate share: one sample per (task, document), each request kept
once per ``Instance`` (never merged by equal arguments), answers back in request order,
each handed to lm-eval's response cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lm_eval_cola.harness.requests import answer_requests, group_by_doc

pytestmark = pytest.mark.quick


def _request(task: str, doc_id: int, args: tuple) -> SimpleNamespace:
    return SimpleNamespace(task_name=task, doc_id=doc_id, args=args, doc={"id": doc_id})


class _Cache:
    def __init__(self) -> None:
        self.added: list[tuple] = []

    def add_partial(self, kind: str, args: tuple, result) -> None:
        self.added.append((kind, args, result))


def test_samples_keep_each_instance_once_and_equal_arguments_apart():
    a0, a1 = _request("a", 0, ("Q", " yes")), _request("a", 0, ("Q", " yes"))  # equal choices
    b0, a2 = _request("b", 0, ("R", " x")), _request("a", 1, ("S", " z"))
    # lm-eval hands a request with repeats as the same object several times
    samples = group_by_doc([a0, b0, a1, a0, a2])
    assert [s.key for s in samples] == [("a", 0), ("b", 0), ("a", 1)]
    assert [r for r in samples[0].requests] == [a0, a1]
    assert samples[0].requests[0] is a0 and samples[0].requests[1] is a1
    assert samples[1].requests == [b0] and samples[2].requests == [a2]


def test_samples_use_lm_evals_document_ids():
    # under --samples a request's doc_id is its place among the chosen documents
    ids = {"a": [5, 9]}
    samples = group_by_doc([_request("a", 1, ("Q", "x")), _request("b", 1, ("R", "y"))],
                           lambda task, place: ids[task][place] if task in ids else place)
    assert [s.key for s in samples] == [("a", 9), ("b", 1)]


def test_answers_come_back_in_request_order_and_reach_the_cache():
    a0, a1 = _request("a", 0, ("Q", " yes")), _request("a", 0, ("Q", " yes"))
    b0 = _request("b", 3, ("R", " no"))
    requests = [b0, a0, a1, a0]
    seen: list[list] = []

    def respond(samples):
        seen.append([s.key for s in samples])
        # as a record stores them: JSON lists, one per request of the sample
        return {("a", 0): [[-1.5, True], [-2.5, False]], ("b", 3): [[-0.5, True]]}

    cache = _Cache()
    results = answer_requests("loglikelihood", requests, respond, lambda t, d: d, cache)
    assert seen == [[("b", 3), ("a", 0)]]
    assert results == [(-0.5, True), (-1.5, True), (-2.5, False), (-1.5, True)]
    assert all(isinstance(r, tuple) for r in results)  # lm-eval expects tuples
    assert cache.added == [("loglikelihood", r.args, x)
                           for r, x in zip(requests, results, strict=True)]


def test_a_sample_answered_with_too_few_responses_is_an_error():
    requests = [_request("a", 0, ("Q", " x")), _request("a", 0, ("Q", " y"))]
    with pytest.raises(ValueError):
        answer_requests("loglikelihood", requests, lambda samples: {("a", 0): [[-1.0, True]]},
                        lambda t, d: d, _Cache())
