"""The bridge's tokenizer-only HF wrapper gives the token ids and chat prompts of lm-eval's real ``HFLM`` (a model
loaded, the oracle), for plain and BOS-adding tokenizers, empty prompts and a template that refuses a system role."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from first_eval.errors import InputError
from first_eval.lm_eval_bridge import chat_template_of, encode_pair, encode_pairs
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

# (context, continuation) pairs exercising lm-eval's whitespace rule and BPE merges across the boundary.
PAIRS = [
    ("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"),
    ("Question: Is the sky blue? \nAnswer: ", "yes"),
    ("The sun rises in the", " east"),
    ("Tabs and spaces\t \t", "end"),
    ("Unicode: café", " naïve résumé"),
    ("A", " B"),
    ("<bos>Already has BOS:", " yes"),
    ("", " hello"),  # an empty context: lm-eval's prefix token
    ("", "<bos> starts with the prefix token"),
]
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
NO_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
                      + CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def bos_model_dir(tiny_llama_dir, tmp_path_factory):  # noqa: F811
    """The tiny model with a tokenizer that prepends <bos> (as Llama tokenizers do)."""
    from tokenizers import Tokenizer, processors

    folder = tmp_path_factory.mktemp("bos") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos_id)])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def real_hflm(model_dir: Path):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model_dir), device="cpu", dtype="float32")


def lm_eval_token_ids(lm, pairs):
    """The (context, continuation) ids a real HFLM's ``loglikelihood`` hands its model, the model call skipped."""
    lm._loglikelihood_tokens = lambda requests, disable_tqdm=False: [(c, x) for _, c, x in requests]
    return lm.loglikelihood([SimpleNamespace(args=pair, task_name=None) for pair in pairs], disable_tqdm=True)


@pytest.mark.parametrize("which", ["plain", "bos"])
def test_token_ids_equal_lm_evals_hf_wrapper(which, tiny_llama_dir, bos_model_dir):  # noqa: F811
    lm = real_hflm(tiny_llama_dir if which == "plain" else bos_model_dir)
    if which == "bos":
        assert lm.tokenizer.encode("x")[0] == lm.tokenizer.bos_token_id  # the fixture really adds BOS
    expected = lm_eval_token_ids(lm, PAIRS)
    assert encode_pairs(lm.tokenizer, PAIRS) == [(list(c), list(x)) for c, x in expected]
    for pair, (context_ids, continuation_ids) in zip(PAIRS, expected):
        assert encode_pair(lm.tokenizer, *pair) == (list(context_ids), list(continuation_ids)), pair
        if pair[0]:
            assert encode_pair(lm.tokenizer, *pair) == tuple(lm._encode_pair(*pair))


def test_empty_prompt_is_the_prefix_token(tiny_llama_dir):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    assert encode_pair(tokenizer, "", " hello") == ([tokenizer.bos_token_id],
                                                    tokenizer.encode(" hello", add_special_tokens=False))
    # A continuation with no token at all (lm-eval would index an empty list): no completion token, for the caller to refuse.
    assert encode_pair(tokenizer, "", "") == ([tokenizer.bos_token_id], [])


def test_a_tokenizer_without_bos_or_eos_is_refused(tiny_llama_dir):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    tokenizer.bos_token = tokenizer.eos_token = None
    with pytest.raises(InputError, match="neither a BOS nor an EOS token"):
        encode_pairs(tokenizer, [("A", " B")])


@pytest.mark.parametrize("template", [CHAT_TEMPLATE, NO_SYSTEM_TEMPLATE], ids=["chatml", "refuses-system"])
def test_chat_prompts_equal_lm_evals_apply_chat_template(template, tiny_llama_dir, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(folder))
    lm = real_hflm(folder)
    ours = chat_template_of(AutoTokenizer.from_pretrained(str(folder)))
    history = [{"role": "system", "content": "Answer with a letter."}, {"role": "user", "content": "Q: 1+1?\nA:"}]
    for add_generation_prompt in (True, False):
        messages = history if add_generation_prompt else history + [{"role": "assistant", "content": "B"}]
        assert ours(messages, add_generation_prompt) == lm.apply_chat_template(messages, add_generation_prompt)
