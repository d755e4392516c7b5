"""lm-eval's Hugging Face wrapper (``HFLM``) over a tokenizer alone: token ids and chat prompts as lm-eval makes them.

``HFLM.__init__`` loads the model; the methods that only tokenise do not need it. ``_TokenizerOnlyHFLM`` is an
``HFLM`` that skips ``__init__`` and sets the few attributes those methods read, with lm-eval 0.4.13's defaults
(no ``add_bos_token``, no ``prefix_token_id``, no ``chat_template_args``, causal backend). So the code that runs is
lm-eval's own:

- ``encode_pairs``: ``TemplateLM.loglikelihood``'s tokenisation (``_encode_pair`` for a non-empty context: trailing
  whitespace of the context moves to the continuation, ``whole = tok_encode(context + continuation)``, the
  continuation is ``whole[len(tok_encode(context)):]``; an empty context is the prefix token, BOS else EOS).
  ``HFLM.tok_encode`` adds the tokenizer's default special tokens, none for a string already starting with BOS.
- ``chat_template_of``: ``HFLM.apply_chat_template`` (with its retry without the system message when the
  template refuses one), the callable lm-eval renders ``--apply_chat_template`` prompts with.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from first_eval.errors import InputError


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """``(context_ids, continuation_ids)`` per ``(context, continuation)``, as lm-eval's HF wrapper scores them.

    Two cases lm-eval cannot tokenise are answered here instead: a tokenizer with neither BOS nor EOS raises
    ``InputError`` (``HFLM.tok_encode`` decodes the prefix token, so lm-eval could not score such a model either),
    and an empty context with a continuation that tokenises to nothing gives ``([prefix], [])`` (lm-eval would
    index an empty list; callers refuse the pair by name).
    """
    lm = _tokenizer_only_hflm(tokenizer)
    prefix = lm.prefix_token_id
    if prefix is None:
        raise InputError("the tokenizer has neither a BOS nor an EOS token; lm-eval's HF wrapper needs one to "
                         "tokenise (it stands in for an empty prompt and marks text that already starts with it)")
    encoded: list[tuple[list[int], list[int]] | None] = [None] * len(pairs)
    asked = []
    for index, (context, continuation) in enumerate(pairs):
        if context == "":
            if not tokenizer.encode(continuation, add_special_tokens=False):
                encoded[index] = ([int(prefix)], [])
                continue
        asked.append(index)
    requests = [SimpleNamespace(args=pairs[index], task_name=None) for index in asked]
    for index, (context_ids, continuation_ids) in zip(asked, lm.loglikelihood(requests, disable_tqdm=True)):
        encoded[index] = (list(context_ids), list(continuation_ids))
    return encoded  # type: ignore[return-value]  (every slot is filled above)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``encode_pairs`` for one pair."""
    return encode_pairs(tokenizer, [(context, continuation)])[0]


def chat_template_of(tokenizer: Any) -> Callable[..., str]:
    """lm-eval's ``HFLM.apply_chat_template`` for ``tokenizer`` (the callable its chat requests are rendered with)."""
    return _tokenizer_only_hflm(tokenizer).apply_chat_template


def _tokenizer_only_hflm(tokenizer: Any) -> Any:
    return _tokenizer_only_class()(tokenizer)


@functools.cache
def _tokenizer_only_class() -> type:
    from lm_eval.models.huggingface import HFLM

    class _TokenizerOnlyHFLM(HFLM):
        """``HFLM``'s tokenising methods without a model; ``_loglikelihood_tokens`` hands back the token ids."""

        def __init__(self, tokenizer: Any) -> None:  # noqa: D107  (HFLM.__init__ is skipped: it loads weights)
            self.tokenizer = tokenizer
            self.backend = "causal"
            self.add_bos_token = None
            self.custom_prefix_token_id = None
            self.chat_template_args = {}
            self.enable_thinking = None

        def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False, **kwargs: Any) -> list:
            return [(context_ids, continuation_ids) for _, context_ids, continuation_ids in requests]

    return _TokenizerOnlyHFLM
