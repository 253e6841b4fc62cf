"""The GPU benchmark kit (benchmarks/gpu/): the random model of a named shape, and the check
that the carried wheels meet every requirement on the GPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.scripts import load_script
from tests.support.tiny_models import tiny_tokenizer

pytestmark = pytest.mark.tiny

make = load_script("benchmarks/gpu/make_random_model.py")
wheels = load_script("benchmarks/gpu/check_wheels.py")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer().save_pretrained(str(folder))
    return folder


def _build(tmp_path: Path, tokenizer_dir: Path, name: str, **kwargs) -> Path:
    out = tmp_path / name
    make.main(["--shape", "tiny", "--tokenizer", str(tokenizer_dir), "--out", str(out),
               *[f"--{k}={v}" for k, v in kwargs.items()]])
    return out


def test_tiny_model_loads_with_the_preset_shape_and_the_tokenizer_vocabulary(
        tmp_path, tokenizer_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _build(tmp_path, tokenizer_dir, "model", dtype="bfloat16")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    config, shape = model.config, make.SHAPES["tiny"]
    assert (config.model_type, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.num_key_value_heads,
            config.intermediate_size) == ("llama", shape.hidden_size, shape.num_hidden_layers,
                                          shape.num_attention_heads,
                                          shape.num_key_value_heads, shape.intermediate_size)
    assert config.vocab_size == len(tokenizer) == len(tiny_tokenizer())
    assert model.get_input_embeddings().weight.shape == (len(tokenizer), shape.hidden_size)
    assert model.dtype == torch.bfloat16
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    # random, not left empty: the default init's spread (normal, std 0.02) within 10%
    weight = model.model.layers[0].mlp.up_proj.weight.float()
    assert weight.std().item() == pytest.approx(0.02, rel=0.1)
    # every id the tokenizer makes is a valid row of the embedding
    ids = tokenizer("The answer is 42.", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_the_seed_fixes_the_weights_and_the_dtype_only_rounds_them(tmp_path, tokenizer_dir):
    from safetensors.torch import load_file

    def weights(name: str, **kwargs) -> dict[str, torch.Tensor]:
        return load_file(str(_build(tmp_path, tokenizer_dir, name, **kwargs)
                             / "model.safetensors"))

    first, again = weights("a", dtype="float32"), weights("b", dtype="float32")
    other_seed, bf16 = weights("c", dtype="float32", seed=1), weights("d", dtype="bfloat16")
    key = "model.layers.1.self_attn.q_proj.weight"
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first[key], other_seed[key])
    # drawn in float32, then cast: the bf16 model is the float32 one rounded
    assert torch.equal(bf16[key], first[key].to(torch.bfloat16))


def test_llama_1b_preset_is_llama_3_2_1b_shaped():
    from transformers import AutoModelForCausalLM

    class Vocabulary:  # SmolLM2's tokenizer, as far as the config reads it
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 2

        def __len__(self) -> int:
            return 49152

    config = make.llama_config(make.SHAPES["llama-1b"], Vocabulary())
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.head_dim,
            config.tie_word_embeddings) == (2048, 16, 32, 8, 8192, 64, True)
    assert config.rope_parameters["rope_theta"] == 500000.0
    assert config.rope_parameters["rope_type"] == "llama3"
    with torch.device("meta"):  # no memory: only the parameter count
        model = AutoModelForCausalLM.from_config(config)
    # 16 x (attention 10,485,760 + MLP 50,331,648 + norms 4,096) + embedding 100,663,296
    # (tied head) + final norm 2,048
    assert sum(p.numel() for p in model.parameters()) == 1_073_809_408


def test_a_shape_or_tokenizer_that_is_not_there_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make.main(["--shape", "llama-70b", "--tokenizer", ".", "--out", str(tmp_path)])
    assert "invalid choice: 'llama-70b'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make.main(["--tokenizer", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert f"--tokenizer {tmp_path / 'none'}: no tokenizer_config.json there" in err
    assert not (tmp_path / "m").exists()


def _wheel(name: str, version: str, *requires: str) -> object:
    return wheels.Wheel(name, Version(version), tuple(Requirement(r) for r in requires),
                        f"{name}-{version}-py3-none-any.whl")


@pytest.mark.quick
def test_wheel_check_finds_unmet_conflicting_and_duplicate_requirements():
    device = {"numpy": Version("2.5.2"), "pyyaml": None}
    carried = [
        _wheel("lm-eval", "0.4.13", "datasets>=2.16", "numpy", "word2number"),
        _wheel("datasets", "5.2.0", "dill<0.4.2", "pyyaml>=5.1", "numpy<2",
               "typepy[datetime]"),
        _wheel("dill", "0.4.2"),
        _wheel("typepy", "1.3.5", "pytz; extra == 'datetime'", "mbstrdecoder",
               "tomli; python_version < '3.11'"),
        _wheel("dill", "0.4.1"),
    ]
    found, notes = wheels.problems(carried, device)
    assert sorted(found) == sorted([
        "two wheels of dill: dill-0.4.2-py3-none-any.whl, dill-0.4.1-py3-none-any.whl",
        "word2number (for lm-eval): neither carried nor on the machine",
        "numpy<2 (for datasets): the machine has 2.5.2",
        # the extra asked by datasets is followed; tomli's marker is false on 3.12
        "pytz; extra == \"datetime\" (for typepy): neither carried nor on the machine",
        "mbstrdecoder (for typepy): neither carried nor on the machine",
    ])
    assert notes == ["pyyaml>=5.1: on the machine, version not listed"]
    # the later dill wheel is the one checked against datasets' pin: 0.4.1 meets it
    assert not any("dill<0.4.2" in line for line in found)


@pytest.mark.quick
def test_device_package_list_reads_names_and_listed_versions():
    """The device list parses, names the packages the kit leans on, and gives versions
    where KINDS.md does."""
    device = wheels.device_packages()
    assert device["torch"] == Version("2.11.0")
    assert device["huggingface-hub"] == Version("1.33.0")
    assert "pyarrow" in device and device["pyarrow"] is None
    assert "lm-eval" not in device and "datasets" not in device
