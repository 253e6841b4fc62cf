"""The embedded real model (SmolLM2-135M-Instruct, 30 layers) through lm-eval's evaluator."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.lm_eval_setup import install_cola

pytestmark = [pytest.mark.real, pytest.mark.skipif(
    not os.environ.get("COLA_DATA_DIR"), reason="needs COLA_DATA_DIR (local benchmark data)"
)]


@pytest.fixture(scope="module")
def smollm():
    """The embedded model, loaded once and shared by `hf` and `cola_*` (same weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_eval_cola.harness.default_model import DefaultModelMissingError, default_model, prepare

    install_cola()

    try:
        embedded = default_model()
    except DefaultModelMissingError as err:
        pytest.skip(str(err))
    load = prepare(embedded)  # the converted copy (made on first use)
    model = AutoModelForCausalLM.from_pretrained(load["pretrained"])
    tokenizer = AutoTokenizer.from_pretrained(load["pretrained"])
    return {"pretrained": model.eval(), "tokenizer": tokenizer, "device": "cpu"}


def test_the_converted_default_model_equals_the_gguf_file(smollm):
    """The cached conversion has the GGUF file's weights and tokenizer, exactly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_eval_cola.harness.default_model import default_model

    embedded = default_model()
    assert "gguf_file" not in embedded.load_args()  # the fixture converted it
    gguf = AutoModelForCausalLM.from_pretrained(embedded.folder, gguf_file=embedded.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(embedded.folder, gguf_file=embedded.gguf_file)
    texts = ["Question: Which gas do plants absorb?\nAnswer: carbon dioxide",
             "Janet’s ducks lay 16 eggs per day. #### 18", "<|im_start|>user\nHi<|im_end|>"]
    for text in texts:
        assert smollm["tokenizer"](text).input_ids == tokenizer(text).input_ids
    ids = torch.tensor([tokenizer(texts[0]).input_ids])
    with torch.no_grad():
        assert torch.equal(smollm["pretrained"](ids).logits, gguf.eval()(ids).logits)


def evaluate(model, args, limit):
    import lm_eval

    return lm_eval.simple_evaluate(model=model, model_args=args, tasks=["arc_challenge"],
                                   limit=limit)


def test_identity_cola_hf_equals_hf_on_arc(smollm):
    plain = evaluate("hf", dict(smollm), 20)["results"]["arc_challenge"]
    cola = evaluate("cola_hf", dict(smollm, chain="identity"), 20)["results"]["arc_challenge"]
    assert cola["acc,none"] == plain["acc,none"]
    assert cola["acc_norm,none"] == plain["acc_norm,none"]


def test_mcts_oracle_accuracies_are_counted_from_records_that_all_verify(smollm, tmp_path):
    """The reported acc is the oracle's; both accuracies count the records' outcomes (the
    oracle is at least the full chain by construction, so that is not asserted)."""
    from lm_eval_cola.cli.verify import verify_records

    records = tmp_path / "records.jsonl"
    results = evaluate("cola_mcts", dict(smollm, budget=12, records=str(records)), 10)
    summary = results["config"]["cola_summary"]
    assert summary["samples"] == 10
    assert results["results"]["arc_challenge"]["acc,none"] == summary["oracle_accuracy"]
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 10
    # summaries round their means to 4 decimals
    assert summary["oracle_accuracy"] == pytest.approx(
        sum(r["best_correct"] for r in rows) / 10, abs=1e-4)
    assert summary["full_chain_accuracy"] == pytest.approx(
        sum(r["full_correct"] for r in rows) / 10, abs=1e-4)
    checks = verify_records([records], {"pretrained": smollm["pretrained"],
                                        "tokenizer": smollm["tokenizer"], "device": "cpu"})
    assert len(checks) == 20 and all(check.ok for check in checks)
