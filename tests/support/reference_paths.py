"""The plain paths the engine is compared with (one full forward a request,
``model.generate``, a model rebuilt from a chain's layers), and the requests and models
those comparisons use."""

from __future__ import annotations

import copy

import torch

from lm_eval_cola.engine.apply import chain_applied
from tests.support.tiny_models import tiny_configs


def plain_scores(model, pairs, chain, device: str | torch.device = "cpu"):
    """One full forward per request with full logits, as lm-eval scores a request:
    ``(log-likelihood, greedy)`` per ``(context, continuation)`` token pair."""
    out = []
    with chain_applied(model, chain), torch.no_grad():
        for context, continuation in pairs:
            inputs = torch.tensor([(context + continuation)[:-1]], device=device)
            logprobs = torch.log_softmax(model(inputs).logits[0].float(), dim=-1).cpu()
            rows = logprobs[inputs.shape[1] - len(continuation):]
            targets = torch.tensor(continuation)
            ll = rows[torch.arange(len(continuation)), targets].sum().item()
            out.append((ll, bool((rows.argmax(-1) == targets).all())))
    return out


def sample_pairs(seed: int):
    g = torch.Generator().manual_seed(seed)
    context = torch.randint(3, 128, (9,), generator=g).tolist()
    # Three choices after one context, and one request whose context differs at the end.
    return [(context, [5, 6, 7]), (context, [8]), (context, [9, 10]),
            (context[:-2], context[-2:] + [11])]


def varied_pairs(seed: int, context_length: int):
    g = torch.Generator().manual_seed(seed)
    context = torch.randint(3, 128, (context_length,), generator=g).tolist()
    return [(context, [5, 6, 7]), (context, [8]), (context, [9, 10])]


def generation_model(kind: str, vocab: int, seed: int = 0):
    import transformers as T

    config = tiny_configs()[kind]
    config.vocab_size = vocab
    config.initializer_range = 0.5  # peaked logits: answers depend on the chain
    if getattr(config, "sliding_window", None):
        config.sliding_window = 200  # longer than prompt + answer: the fast path applies
    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(config).eval()


def reference_logits(model, chain):
    """The plain model's next-token logits under ``chain``: the reference for near-ties."""
    def next_logits(prefix: list[int]) -> torch.Tensor:
        with chain_applied(model, chain):
            return model(torch.tensor([prefix])).logits[0, -1]
    return next_logits


def plain_generate(model, tokenizer, context, max_length, stop):
    from lm_eval.models.utils_hf import stop_sequences_criteria

    criteria = stop_sequences_criteria(tokenizer, stop, context.shape[1], 1)
    return model.generate(input_ids=context, max_length=max_length, stopping_criteria=criteria,
                          do_sample=False, pad_token_id=0, use_cache=True)


def materialized(model: torch.nn.Module, chain: tuple[int, ...]) -> torch.nn.Module:
    """An independent reference: a fresh model whose layer p is a copy of layer chain[p]."""
    import transformers

    config = copy.deepcopy(model.config)
    types = getattr(config, "layer_types", None)
    config.num_hidden_layers = len(chain)
    if types is not None:
        config.layer_types = [types[i] for i in chain]
    clone = transformers.AutoModelForCausalLM.from_config(config).eval()
    state = {k: v for k, v in model.state_dict().items() if ".layers." not in k}
    for position, index in enumerate(chain):
        for key, value in model.model.layers[index].state_dict().items():
            state[f"model.layers.{position}.{key}"] = value
    clone.load_state_dict(state, strict=False)
    return clone
