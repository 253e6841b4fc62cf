"""What a router sees of a sample: hidden states of its prompt, never its answer.

A sample is one doc's lm-eval requests. Its *prompt* is the token prefix its requests'
contexts share (a multiple-choice doc's choices share the question; a generation request
is its context alone), cut to the model's last ``max_length`` tokens. Continuations (the
choices) and the doc's gold are not read. The features are the hidden state after the
first ``feature_layers`` layers of the full chain (through the model's own forward, final
norm included), mean-pooled over the prompt and at its last token: ``2 x hidden_size``
numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lm_eval_cola.engine.apply import chain_applied
from lm_eval_cola.engine.fast import common_prefix


def prompt_tokens(lm: Any, requests: Sequence[Any]) -> list[int]:
    """The tokens of the requests' shared context (see the module docstring)."""
    encoded = [lm.tok_encode(r.args[0]) for r in requests]
    shared = common_prefix(encoded)
    tokens = encoded[0][:shared] if shared else encoded[0]
    if not tokens:  # an empty context: the model's prefix token stands for it
        tokens = [lm.prefix_token_id]
    return tokens[-lm.max_length:]


@torch.no_grad()
def hidden_features(lm: Any, tokens: Sequence[int], feature_layers: int) -> list[float]:
    """Mean-pooled and last-token hidden state after layers ``0..feature_layers-1``."""
    ids = torch.tensor([list(tokens)], device=lm.device)
    with chain_applied(lm.model, tuple(range(feature_layers))):
        try:
            out = lm.model(input_ids=ids, output_hidden_states=True, logits_to_keep=1)
        except TypeError:  # a model whose forward has no logits_to_keep
            out = lm.model(input_ids=ids, output_hidden_states=True)
    hidden = out.hidden_states[-1][0].float()
    return torch.cat([hidden.mean(0), hidden[-1]]).tolist()
