"""One chain-file reader for every form, and mergekit passthrough configs both ways (#23)."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import yaml

from lm_eval_cola.chains.files import (
    ChainFile,
    declared_layer_count,
    mergekit_config,
    provenance,
    write_mergekit,
)
from lm_eval_cola.chains.syntax import ChainError, format_chain, parse_chain, read_chain_file
from lm_eval_cola.cli import main
from lm_eval_cola.errors import UserError

pytestmark = pytest.mark.quick

L = 30
HAS_MERGEKIT = importlib.util.find_spec("mergekit") is not None
needs_mergekit = pytest.mark.skipif(
    not HAS_MERGEKIT, reason="mergekit is not installed (pip install --no-deps mergekit==0.1.5 "
                             "immutables peft): its own config class and merge are the check")
# Repeats, skips (layer 0 too), reorders, a reverse, a loop: what a chain can be.
CHAINS = [(0, 1, 2, 3), (0, 1, 1, 3), (1, 3), (3, 2, 0, 1, 1, 2), (3, 2, 1, 0), (0, 1, 0, 1, 2)]

# A frankenmerge config as mergekit's README shows it (passthrough, one model).
REAL_MERGEKIT = """\
slices:
  - sources:
      - model: HuggingFaceTB/SmolLM2-135M-Instruct
        layer_range: [0, 10]
  - sources:
      - model: HuggingFaceTB/SmolLM2-135M-Instruct
        layer_range: [8, 20]
  - sources:
      - model: HuggingFaceTB/SmolLM2-135M-Instruct
        layer_range: [25, 30]
merge_method: passthrough
dtype: bfloat16
"""


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_real_mergekit_passthrough_config_loads_as_its_chain(tmp_path):
    path = write(tmp_path, "frankenmerge.yaml", REAL_MERGEKIT)
    assert format_chain(parse_chain(path, L)) == "0-9+8-19+25-29"
    source = read_chain_file(path)
    assert (source.form, source.model, source.dtype) == (
        "mergekit", "HuggingFaceTB/SmolLM2-135M-Instruct", "bfloat16")
    # The model it names is kept with the run's results.
    assert provenance(path) == {"file": path, "method": "mergekit:passthrough",
                                "model": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert declared_layer_count(path) is None  # a mergekit config declares no layer count


@pytest.mark.parametrize(("text", "needles"), [
    (REAL_MERGEKIT.replace("model: HuggingFaceTB/SmolLM2-135M-Instruct\n        layer_range: "
                           "[8, 20]", "model: other/Model\n        layer_range: [8, 20]"),
     ("names 2 models", "HuggingFaceTB/SmolLM2-135M-Instruct", "other/Model",
      "one model in every slice")),
    (REAL_MERGEKIT.replace("passthrough", "slerp"), ("merge_method 'slerp'", "passthrough")),
    ("slices:\n  - sources:\n      - {model: a, layer_range: [0, 2]}\n"
     "      - {model: a, layer_range: [2, 4]}\n", ("slice 1", "has 2 sources", "allowed: one")),
    ("merge_method: passthrough\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 2]}\n"
     "    parameters: {scale: 0.5}\n", ("mergekit parameters",)),
    ("merge_method: linear\nmodels:\n  - model: a\n", ("with models", "passthrough")),
    ("slices:\n  - sources:\n      - {model: a, layer_range: [4, 2]}\n", ("[4, 2]", "start < end")),
    ("slices:\n  - sources:\n      - {model: a}\n", ("needs 'model' and 'layer_range'",)),
    ("slices:\n  - layer_range: [0, 2]\n    repeat: 0\n", ("repeat must be >= 1",)),
    ("slices:\n  - {range: [0, 2]}\n", ("bad slice", "layer_range")),
    ("chain: other.yaml\n", ("names a file",)),
    ("slices: [\n", ("is not valid yaml",)),
])
def test_a_bad_chain_file_fails_in_one_line(tmp_path, text, needles):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ChainError) as err:
        parse_chain(path, L)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_the_forms_that_were_there_still_load(tmp_path):
    short = write(tmp_path, "short.yaml", "slices:\n  - layer_range: [0, 10]\n"
                  "  - layer_range: [9, 10]\n    repeat: 2\n  - layer_range: [12, 30]\n")
    assert format_chain(parse_chain(short, L)) == "0-9+9*2+12-29"
    assert parse_chain(write(tmp_path, "layers.yaml", "layers: [0, 1, 1, 2]\n"), L) == (0, 1, 1, 2)
    assert parse_chain(write(tmp_path, "bare.json", "[3, 2]"), L) == (3, 2)
    assert format_chain(parse_chain(write(tmp_path, "text.yml", "chain: 0-9+9*2\n"), L)) == \
        "0-9+9*2"
    # The JSON chain file with provenance: the same reader, its layer count and origin kept.
    path = ChainFile.make((0, 1, 1, 3), 4, model="tiny", method="sleb", task="piqa",
                          split="train", samples=8).write(tmp_path / "found.json")
    assert parse_chain(str(path), 4) == (0, 1, 1, 3)
    assert ChainFile.read(path).method == "sleb" and declared_layer_count(str(path)) == 4
    assert provenance(str(path))["method"] == "sleb"
    assert provenance(short) == {} and declared_layer_count(short) is None
    with pytest.raises(UserError, match="needs the keys 'chain' and 'num_layers'"):
        ChainFile.read(short)


@pytest.mark.parametrize("chain", CHAINS)
def test_chain_to_mergekit_yaml_to_chain_is_the_identity(tmp_path, chain):
    path = write_mergekit(tmp_path / "chain.yaml", chain, "some/model", "float32")
    assert parse_chain(str(path), 4) == chain
    data = yaml.safe_load(path.read_text())
    assert data["merge_method"] == "passthrough" and data["dtype"] == "float32"
    assert all(len(s["sources"]) == 1 and s["sources"][0]["model"] == "some/model"
               for s in data["slices"])
    # One slice per maximal ascending run: no slice continues where the one before ended.
    ranges = [s["sources"][0]["layer_range"] for s in data["slices"]]
    assert all(first[1] != second[0] for first, second in zip(ranges, ranges[1:], strict=False))


def test_runs_become_slices_and_repeats_repeated_slices():
    config = mergekit_config((0, 1, 2, 9, 9, 9, 12, 13), "m", None)
    assert "dtype" not in config
    assert [s["sources"][0]["layer_range"] for s in config["slices"]] == [
        [0, 3], [9, 10], [9, 10], [9, 10], [12, 14]]


@pytest.mark.tiny  # builds a tiny model
def test_export_mergekit_writes_a_config_without_loading_the_weights(tiny_llama_dir, tmp_path,
                                                                     monkeypatch, capsys):
    import lm_eval_cola.cli.export as export  # the subcommand looks load_source up here

    def no_loading(*_args, **_kwargs):
        raise AssertionError("--mergekit alone must not load the model")

    monkeypatch.setattr(export, "load_source", no_loading)
    path = tmp_path / "merge.yaml"
    assert main(["export", "3-2+0-1*2", "--mergekit", str(path),
                 "--model_args", f"pretrained={tiny_llama_dir}"]) == 0
    assert "mergekit-yaml" in capsys.readouterr().out
    data = yaml.safe_load(path.read_text())
    assert data["dtype"] == "float32"  # the tiny model's own dtype
    assert {s["sources"][0]["model"] for s in data["slices"]} == {tiny_llama_dir}
    assert parse_chain(str(path), 4) == (3, 2, 0, 1, 0, 1)
    # The model's depth is checked from its config alone.
    assert main(["export", "0-5", "--mergekit", str(tmp_path / "deep.yaml"),
                 "--model_args", f"pretrained={tiny_llama_dir}"]) == 2
    assert "this model has 4 layers" in capsys.readouterr().err
    assert not (tmp_path / "deep.yaml").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["export", "0-1"], "needs --out DIR, --mergekit FILE or both"),
    (["export", "0-1", "--mergekit", "x.txt"], "not a .yaml file path"),
])
def test_export_arguments_fail_in_one_line(argv, needle, capsys):
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors


def test_a_mergekit_file_for_another_model_warns(tiny_llama_dir, tmp_path, caplog):
    from lm_eval_cola.deploy.export import resolve_chain

    path = str(write_mergekit(tmp_path / "c.yaml", (0, 1, 3), "org/Another-Model"))
    with caplog.at_level(logging.WARNING, logger="lm_eval_cola.chains.files"):
        assert resolve_chain(path, 4, tiny_llama_dir)[0] == (0, 1, 3)
    assert "written for model 'org/Another-Model'" in caplog.text
    caplog.clear()
    same = str(write_mergekit(tmp_path / "s.yaml", (0, 1, 3), tiny_llama_dir))
    with caplog.at_level(logging.WARNING, logger="lm_eval_cola.chains.files"):
        resolve_chain(same, 4, tiny_llama_dir)
    assert "written for model" not in caplog.text


@needs_mergekit
@pytest.mark.parametrize("chain", CHAINS)
def test_mergekit_accepts_what_export_writes(tmp_path, chain):
    from mergekit.config import MergeConfiguration

    path = write_mergekit(tmp_path / "c.yaml", chain, "some/model", "bfloat16")
    config = MergeConfiguration.model_validate(yaml.safe_load(path.read_text()))
    assert config.merge_method == "passthrough"
    layers = [i for s in config.slices for i in range(*s.sources[0].layer_range)]
    assert tuple(layers) == chain
    # And what mergekit writes back out reads as the same chain.
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml())
    assert parse_chain(str(again), 4) == chain


@needs_mergekit
def test_mergekit_builds_the_model_the_chain_runs(tiny_llama_dir, tmp_path):
    import torch
    import transformers as T
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from lm_eval_cola.engine.apply import chain_applied

    chain = (3, 2, 0, 1, 1, 2)
    path = tmp_path / "merge.yaml"
    assert main(["export", format_chain(chain), "--mergekit", str(path),
                 "--model_args", f"pretrained={tiny_llama_dir}"]) == 0
    config = MergeConfiguration.model_validate(yaml.safe_load(path.read_text()))
    run_merge(config, str(tmp_path / "merged"),
              MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
    merged = T.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    source = T.AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    assert merged.config.num_hidden_layers == len(chain)
    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        with chain_applied(source, chain):
            expected = source(ids).logits
        plain = source(ids).logits
        got = merged(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got - plain).abs().max() > 1e-3  # the chain changed the model
