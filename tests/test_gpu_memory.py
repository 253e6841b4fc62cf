"""Memory budgets from the device (#24 item 6): ``prefix_cache_bytes`` and
``generation_kv_bytes`` left unset take a share of a CUDA device's free memory at model load
(``torch.cuda.mem_get_info``, mocked here), 1 GiB each on a CPU; given values are kept; the
choice is logged once; both are neutral for a run's identity."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from lm_eval_cola.engine import memory
from lm_eval_cola.engine.memory import (
    CPU_DEFAULT_BYTES,
    FREE_SHARE,
    MIN_AUTO_BYTES,
    model_device,
    resolve_budgets,
)
from lm_eval_cola.errors import UserError
from lm_eval_cola.harness.conditions import RunConditions
from lm_eval_cola.harness.config import ColaConfig
from lm_eval_cola.results.identity import EvalIdentity

pytestmark = pytest.mark.quick

GIB = 1 << 30


@pytest.fixture
def cuda_free(monkeypatch):
    """A CUDA device with ``free[0]`` bytes free (mem_get_info mocked); the calls it got."""
    free = [40 * GIB]
    asked: list = []

    def mem_get_info(device=None):
        asked.append(device)
        return free[0], 80 * GIB

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(memory, "_logged", set())
    return SimpleNamespace(free=free, asked=asked)


def test_cpu_keeps_one_gib_each_and_given_values(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        lambda *a: pytest.fail("a CPU model must not ask CUDA"))
    got = resolve_budgets("cpu", None, None)
    assert (got.cache_bytes, got.kv_bytes) == (CPU_DEFAULT_BYTES, CPU_DEFAULT_BYTES) == (GIB, GIB)
    got = resolve_budgets(torch.device("cpu"), 5000, None)
    assert (got.cache_bytes, got.kv_bytes) == (5000, GIB)


def test_cuda_takes_a_share_of_the_free_memory_for_each_unset_budget(cuda_free):
    got = resolve_budgets(torch.device("cuda", 1), None, None)
    assert cuda_free.asked == [torch.device("cuda", 1)]  # the model's device, not device 0
    assert got.cache_bytes == got.kv_bytes == int(40 * GIB * FREE_SHARE) == 10 * GIB
    assert "40.0 GiB free" in got.source
    # a given value is kept, the other still follows the device
    got = resolve_budgets("cuda", 123, None)
    assert (got.cache_bytes, got.kv_bytes) == (123, 10 * GIB)
    got = resolve_budgets("cuda", None, 0)
    assert (got.cache_bytes, got.kv_bytes) == (10 * GIB, 0)
    # both given: the device is not asked
    cuda_free.asked.clear()
    got = resolve_budgets("cuda", 7, 8)
    assert (got.cache_bytes, got.kv_bytes, got.source) == (7, 8, "given")
    assert cuda_free.asked == []


def test_a_nearly_full_device_still_gets_the_floor(cuda_free):
    cuda_free.free[0] = 10 << 20  # 10 MiB free
    got = resolve_budgets("cuda", None, None)
    assert got.cache_bytes == got.kv_bytes == MIN_AUTO_BYTES


def test_the_choice_is_logged_once(cuda_free, caplog):
    with caplog.at_level(logging.INFO, logger="lm_eval_cola.engine.memory"):
        resolve_budgets("cuda", None, None)
        resolve_budgets("cuda", None, None)  # e.g. a second runner on the same model
    lines = [r.getMessage() for r in caplog.records if "memory budgets" in r.getMessage()]
    assert len(lines) == 1
    assert f"prefix_cache_bytes={10 * GIB}" in lines[0]
    assert f"generation_kv_bytes={10 * GIB}" in lines[0]
    cuda_free.free[0] = 20 * GIB  # another choice is logged again
    with caplog.at_level(logging.INFO, logger="lm_eval_cola.engine.memory"):
        resolve_budgets("cuda", None, None)
    assert sum("memory budgets" in r.getMessage() for r in caplog.records) == 2


def test_the_runner_resolves_unset_budgets_from_its_models_device(cuda_free, monkeypatch):
    from lm_eval_cola.engine import runner as runner_module
    from lm_eval_cola.engine.runner import ChainRunner

    devices = []

    def on_cuda(model):
        devices.append(model)
        return torch.device("cuda", 0)

    monkeypatch.setattr(runner_module, "model_device", on_cuda)
    model = object()
    lm = SimpleNamespace(model=model)
    built = ChainRunner(lm, True, None, None, share_prompts=True)  # type: ignore[arg-type]
    assert devices == [model]
    assert (built.cache_bytes, built.kv_bytes) == (10 * GIB, 10 * GIB)
    assert built.prompt_cache is not None
    given = ChainRunner(lm, True, 1 << 20, 1 << 21)  # type: ignore[arg-type]
    assert (given.cache_bytes, given.kv_bytes) == (1 << 20, 1 << 21)


def test_model_device_is_the_first_weights_device():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(object()) == torch.device("cpu")  # a stand-in without weights


def test_config_defaults_to_automatic_and_checks_given_values():
    engine = ColaConfig.from_model_args({}, None, set())[0].engine
    assert engine.prefix_cache_bytes is None and engine.generation_kv_bytes is None
    engine = ColaConfig.from_model_args(
        {"prefix_cache_bytes": 2e9, "generation_kv_bytes": 0}, None, set())[0].engine
    assert (engine.prefix_cache_bytes, engine.generation_kv_bytes) == (2_000_000_000, 0)
    for name in ("prefix_cache_bytes", "generation_kv_bytes"):
        with pytest.raises(UserError, match=f"bad {name} -1; allowed: bytes >= 0"):
            ColaConfig.from_model_args({name: -1}, None, set())


def test_both_budgets_are_neutral_for_a_runs_identity():
    base = RunConditions.make({"pretrained": "m"}, EvalIdentity())
    for name in ("prefix_cache_bytes", "generation_kv_bytes"):
        other = RunConditions.make({"pretrained": "m", name: "8000000000"}, EvalIdentity())
        assert other.difference(base) is None, name
    # a model_arg that is not neutral is still compared (the check can fail)
    other = RunConditions.make({"pretrained": "m", "revision": "v2"}, EvalIdentity())
    assert other.difference(base) is not None
