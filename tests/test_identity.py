"""A run's identity (``identity.EvalIdentity``): the prompt and decoding settings name the
records file, so runs under other prompts never share one, while runs under the defaults
keep the names older versions gave them (and so resume from their records)."""

from __future__ import annotations

import hashlib
import json

import pytest

from lm_eval_cola.harness.conditions import RunConditions
from lm_eval_cola.results.identity import APPLIED, EvalIdentity
from lm_eval_cola.search.driver import RunFacts, jsonable, records_path
from lm_eval_cola.search.searchers import get_searcher

pytestmark = pytest.mark.quick


def facts(**evaluation) -> RunFacts:
    return RunFacts(model="/models/tiny", load_args={}, num_layers=4,
                    searcher=get_searcher("mcts", budget=4, max_len=8), seed=1234,
                    keep_correct=5, dtype="torch.float32",
                    evaluation=EvalIdentity.make(**evaluation))


def old_hash(run: RunFacts) -> str:
    """The records file's hash as versions before the identity (and before the `parallel`
    setting) computed it."""
    settings = {k: v for k, v in jsonable(run.searcher.settings).items() if k != "parallel"}
    identity = {"model": run.model, "dtype": run.dtype, "searcher": run.searcher.name,
                "settings": settings, "seed": run.seed,
                "oracle_metric": run.oracle_metric, "oracle_filter": run.oracle_filter,
                "max_chain_length": run.max_chain_length}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def test_default_settings_keep_the_old_records_name():
    default = facts()
    assert default.config_hash() == old_hash(default)
    # multi-turn few-shot means nothing without a chat template (simple_evaluate's default)
    assert facts(fewshot_as_multiturn=True).config_hash() == old_hash(default)
    assert facts(gen_kwargs="").config_hash() == old_hash(default)


def test_runs_the_judging_rules_changed_get_new_records_names():
    """Decoy-controlled and graded-reward runs were judged under other rules before #21
    (decoys, stop rule, NaN verdicts, graded generation reward): a resume must not mix them
    with records an older version wrote. Other runs keep their names."""
    def run(control=None, **settings) -> RunFacts:
        return RunFacts(model="/models/tiny", load_args={}, num_layers=4,
                        searcher=get_searcher("mcts", budget=4, max_len=8, **settings),
                        seed=1234, keep_correct=5, dtype="torch.float32", control=control)

    def before_rules(facts: RunFacts) -> str:
        settings = {k: v for k, v in jsonable(facts.searcher.settings).items()
                    if k != "parallel"}
        identity = {"model": facts.model, "dtype": facts.dtype, "searcher": "mcts",
                    "settings": settings, "seed": facts.seed, "oracle_metric": None,
                    "oracle_filter": None, "max_chain_length": 0}
        if facts.control:
            identity["control"] = facts.control
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]

    assert run().config_hash() == before_rules(run())
    assert run(mode="deep").config_hash() != before_rules(run(mode="deep"))  # graded reward
    assert run("decoy").config_hash() != before_rules(run("decoy"))
    assert run("decoy").config_hash() != run().config_hash()


def test_parallel_names_the_records_file_only_away_from_its_default():
    def run(**settings) -> RunFacts:
        return RunFacts(model="/models/tiny", load_args={}, num_layers=4,
                        searcher=get_searcher("mcts", budget=4, max_len=8, **settings),
                        seed=1234, keep_correct=5, dtype="torch.float32")
    assert run(parallel=1).config_hash() == run().config_hash() == old_hash(run())
    assert run(parallel=4).config_hash() != run().config_hash()


@pytest.mark.parametrize("setting", [
    {"chat_template": "{{ messages }}"},
    {"chat_template": "{{ messages }}", "fewshot_as_multiturn": True},
    {"system_instruction": "Answer briefly."},
    {"num_fewshot": 5},
    {"num_fewshot": 0},
    {"gen_kwargs": "max_gen_toks=32"},
    {"samples": {"arc_easy": [0, 4]}},
])
def test_prompt_settings_give_another_records_file(setting, tmp_path):
    name = records_path(None, str(tmp_path), "mcts", facts(**setting).config_hash())
    default = records_path(None, str(tmp_path), "mcts", old_hash(facts()))
    assert name != default and name.parent == default.parent


def test_each_setting_is_its_own_identity():
    hashes = {facts(chat_template="a").config_hash(), facts(chat_template="b").config_hash(),
              facts(chat_template="a", fewshot_as_multiturn=True).config_hash(),
              facts(num_fewshot=3).config_hash(), facts(num_fewshot=5).config_hash(),
              facts(gen_kwargs="max_gen_toks=32").config_hash(),
              facts(gen_kwargs="max_gen_toks=33").config_hash(),
              facts(system_instruction="x").config_hash()}
    assert len(hashes) == 8


def test_gen_kwargs_text_and_the_dict_lm_eval_stores_are_one_identity():
    text = EvalIdentity.make(gen_kwargs="max_gen_toks=8,do_sample=false,temperature=0.5")
    stored = EvalIdentity.make(gen_kwargs={"max_gen_toks": 8, "do_sample": False,
                                           "temperature": 0.5})
    assert text == stored and text.difference(stored) is None
    assert text.describe() == ["gen_kwargs do_sample=false,max_gen_toks=8,temperature=0.5"]


def test_identity_from_a_results_file_and_its_differences():
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    data = {"config": {"gen_kwargs": {"max_gen_toks": 32}, "cola_num_fewshot": 5},
            "chat_template": template,
            "chat_template_sha": hashlib.sha256(template.encode()).hexdigest(),
            "system_instruction": None, "fewshot_as_multiturn": True}
    identity = EvalIdentity.from_results(data)
    assert identity == EvalIdentity.make(chat_template=template, fewshot_as_multiturn=True,
                                         num_fewshot=5, gen_kwargs="max_gen_toks=32")
    assert identity.describe() == [f"chat template {identity.chat_template[:7]}",
                                   "multi-turn few-shot", "5-shot",
                                   "gen_kwargs max_gen_toks=32"]
    # compare asks for "the model's template": any applied template is that
    asked = EvalIdentity.make(chat_template=APPLIED, fewshot_as_multiturn=True, num_fewshot=5,
                              gen_kwargs="max_gen_toks=32")
    assert asked.difference(identity) is None
    plain = EvalIdentity.from_results({"config": {}, "fewshot_as_multiturn": True})
    assert plain == EvalIdentity()  # lm-eval writes multi-turn true for plain runs too
    assert plain.difference(identity) == ("chat template none (plain prompts) != sha256 "
                                          f"{identity.chat_template[:12]}")
    assert asked.difference(EvalIdentity.make(chat_template=APPLIED, num_fewshot=3,
                                              fewshot_as_multiturn=True,
                                              gen_kwargs="max_gen_toks=32")) \
        == "num fewshot 5 != 3"


def test_run_conditions_name_the_first_difference():
    base = RunConditions.make({"pretrained": "/m", "device": "cpu", "budget": "4"},
                              EvalIdentity(), dtype="torch.float32", max_len=8)
    same = RunConditions.make({"pretrained": "/m", "seed": "7", "actions": "skip",
                               "control": "decoy", "batch_size": "8"}, EvalIdentity(),
                              dtype="float32", max_len=8)
    assert same.difference(base) is None  # search and neutral model_args are not compared
    cases = [
        (RunConditions.make({"pretrained": "/m"}, EvalIdentity(), dtype="torch.bfloat16"),
         "dtype bfloat16 != float32"),
        (RunConditions.make({"pretrained": "/m", "oracle_filter": "flexible-extract"},
                            EvalIdentity()), "oracle filter flexible-extract != the task default"),
        (RunConditions.make({"pretrained": "/m"}, EvalIdentity(), max_len=6), "max_len 6 != 8"),
        (RunConditions.make({"pretrained": "/m", "revision": "v2"}, EvalIdentity()),
         "model_args revision=v2 != revision=(not set)"),
        (RunConditions.make({"pretrained": "/m"}, EvalIdentity.make(num_fewshot=2)),
         "num fewshot 2 != the task's default"),
    ]
    for conditions, line in cases:
        assert conditions.difference(base) == line
    # an unknown dtype (auto) or cap is not a difference
    assert RunConditions.make({"pretrained": "/m", "dtype": "auto"},
                              EvalIdentity()).difference(base) is None


# ------------------------------------------------------------------ at run time


class _FakeColaModel:
    def __init__(self):
        self.settings = None

    def attach_tasks(self, task_dict):
        pass

    def attach_evaluation(self, settings):
        self.settings = settings


def test_the_evaluator_hook_hands_the_model_its_prompt_settings():
    """lm-eval gives evaluate() the chat template, system instruction and multi-turn flag,
    and simple_evaluate() the few-shot count and gen_kwargs: the model gets them all."""
    from lm_eval import evaluator

    from lm_eval_cola.compat import hooks

    hooks.install_evaluator_hook()
    lm = _FakeColaModel()
    hooks.current_eval_args = {"num_fewshot": 5, "gen_kwargs": "max_gen_toks=4"}
    try:
        # limit and samples together: lm-eval's evaluate refuses right after our hook ran
        with pytest.raises(ValueError, match="limit"):
            evaluator.evaluate(lm, {"tasks": {}, "groups": {}}, limit=1, samples={"t": [0]},
                               system_instruction="Be brief.", apply_chat_template=True,
                               fewshot_as_multiturn=True)
    finally:
        hooks.current_eval_args = {}
    assert lm.settings == {"num_fewshot": 5, "gen_kwargs": "max_gen_toks=4",
                           "apply_chat_template": True, "system_instruction": "Be brief.",
                           "fewshot_as_multiturn": True, "samples": {"t": [0]}}


@pytest.mark.tiny
def test_the_model_names_its_records_file_after_the_settings(tiny_llama_dir, tmp_path):
    from lm_eval_cola.harness import models

    lm = models.ColaMCTS(pretrained=tiny_llama_dir, budget=3, device="cpu")
    default = lm.run_facts().config_hash()
    lm.attach_evaluation({"num_fewshot": None, "gen_kwargs": None, "samples": None,
                          "apply_chat_template": False, "system_instruction": None,
                          "fewshot_as_multiturn": True})
    assert lm.run_facts().config_hash() == default
    names = {default}
    for settings in ({"num_fewshot": 2}, {"gen_kwargs": "max_gen_toks=4"},
                     {"system_instruction": "Be brief."}):
        lm.attach_evaluation(settings)
        assert lm.run_facts().evaluation == EvalIdentity.make(**settings)
        names.add(lm.run_facts().config_hash())
    assert len(names) == 4
