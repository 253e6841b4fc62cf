"""lm-eval's requests as samples, and samples' responses back as lm-eval's answers.

The two steps every cola model that picks a chain per sample shares (the oracle search,
the router) and that ``deploy.calibrate`` uses to build its calibration samples:
``group_by_doc`` (requests -> samples) and ``answer_requests`` (samples' responses ->
one answer per request, in request order, each also handed to lm-eval's response cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.engine.runner import SampleEvaluator, evaluate_many
from lm_eval_cola.search.driver import Sample

SampleKey = tuple[str, int]  # (task, lm-eval's document id)
# a sample's responses, one per request of the sample, in its request order
Respond = Callable[[list[Sample]], Mapping[SampleKey, Sequence[Any]]]


def group_by_doc(requests: Iterable[Any],
                 doc_id: Callable[[str, int], int] | None = None) -> list[Sample]:
    """One sample per (task, document), in order of first request, each lm-eval request
    in it once, in request order. ``doc_id(task, place)``: lm-eval's id of the document a
    request's ``doc_id`` points at (under ``--samples`` that is its place among them).

    The one rule for duplicates: a request is kept once per ``Instance`` object, never
    merged with another of equal arguments. lm-eval hands a request with ``repeats`` as
    the same object several times, and a task's ``process_results`` wants one result
    per instance (two choices of equal text are still two results)."""
    samples: dict[SampleKey, Sample] = {}
    seen: dict[SampleKey, set[int]] = {}
    for request in requests:
        place = request.doc_id
        key = (request.task_name,
               place if doc_id is None else doc_id(request.task_name, place))
        sample = samples.setdefault(key, Sample(key[0], key[1], []))
        if id(request) not in seen.setdefault(key, set()):
            seen[key].add(id(request))
            sample.requests.append(request)
    return list(samples.values())


def answer_requests(kind: str, requests: list, respond: Respond,
                    doc_id: Callable[[str, int], int], cache_hook: Any) -> list:
    """lm-eval's answers to ``requests`` (in their order): grouped into samples
    (``group_by_doc``), answered per sample by ``respond``, each answer also handed to
    lm-eval's response cache (``cache_hook``) as lm-eval's own request methods do."""
    samples = group_by_doc(requests, doc_id)
    responses = respond(samples)
    answers: dict[int, Any] = {}
    for sample in samples:
        for request, response in zip(sample.requests, responses[sample.key], strict=True):
            answers[id(request)] = restore(kind, response)
    results = [answers[id(r)] for r in requests]
    for request, result in zip(requests, results, strict=True):
        cache_hook.add_partial(kind, request.args, result)
    return results


def evaluate_in_batches(model: Any, asks: Sequence[tuple[SampleKey, SampleEvaluator, Chain]],
                        size: int) -> dict[SampleKey, Any]:
    """Each (key, evaluator, chain) ask's responses, ``size`` asks per ``evaluate_many``
    call (its batched forwards hold that many samples' rows at once)."""
    out: dict[SampleKey, Any] = {}
    for start in range(0, len(asks), size):
        part = asks[start:start + size]
        done = evaluate_many(model, [(evaluator, chain) for _, evaluator, chain in part])
        out.update((key, answer) for (key, _, _), answer in zip(part, done, strict=True))
    return out


def restore(kind: str, response: Any) -> Any:
    """A response as lm-eval expects it: JSON (a record's responses) turns
    (loglikelihood, is_greedy) tuples into lists."""
    if kind == "loglikelihood" and isinstance(response, list):
        return (float(response[0]), bool(response[1]))
    return response
