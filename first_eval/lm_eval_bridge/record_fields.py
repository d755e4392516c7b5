"""The fields of one lm-eval samples record, read without trusting them (stringified in saved files, typed in memory).

Each reader takes the record (or one field) and ``where`` (file and line, for the message) and returns a plain
value or raises one ``InputError`` naming the field and quoting its value.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from first_eval.errors import InputError

_INT64 = 2**63  # a doc_id must fit numpy int64


def _choice_logliks(record: dict, where: str) -> tuple[list[float], list[bool | None]]:
    """Each choice's summed log-likelihood and lm-eval's ``is_greedy`` flag (None when unreadable)."""
    responses = record.get("filtered_resps", record.get("resps"))
    if responses is None:
        raise InputError(f"{where}: no 'filtered_resps' field; is this an lm-eval samples file?")
    if not isinstance(responses, list):
        raise InputError(f"{where}: field 'filtered_resps' is {_short(responses)}, not a list of "
                         "(log-likelihood, is_greedy) pairs")
    if not responses:
        raise InputError(f"{where}: field 'filtered_resps' is empty")
    lls, flags = [], []
    for j, response in enumerate(responses):
        # filtered_resps[j] is (loglik, is_greedy); resps[j] is [(loglik, is_greedy)]
        while isinstance(response, list) and len(response) == 1 and isinstance(response[0], (list, tuple)):
            response = response[0]
        if not isinstance(response, (list, tuple)) or len(response) != 2:
            raise InputError(
                f"{where}: field 'filtered_resps[{j}]' is {_short(response)}, not a (log-likelihood, is_greedy) pair: "
                "calibration needs a multiple-choice (loglikelihood) task, not a generation task"
            )
        value = _to_float(response[0])
        if value is None:
            raise InputError(
                f"{where}: field 'filtered_resps[{j}][0]' is {_short(response[0])}, not a log-likelihood: "
                "calibration needs a multiple-choice (loglikelihood) task, not a generation task"
            )
        if not math.isfinite(value):
            raise InputError(f"{where}: field 'filtered_resps[{j}][0]' is {_short(response[0])}; log-likelihoods must be finite")
        lls.append(value)
        flags.append(_to_bool(response[1]))
    return lls, flags


def _doc_id(value: Any, where: str) -> int:
    """lm-eval's ``doc_id``: an integer (a digit string is accepted too) within int64."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{where}: field 'doc_id' is {_short(value)}, not an integer document id")
    if not -_INT64 <= int(value) < _INT64:
        raise InputError(f"{where}: field 'doc_id' is {_short(value)}, outside the 64-bit integer range")
    return int(value)


def _to_bool(value: Any) -> bool | None:
    """lm-eval's ``is_greedy``: a bool in memory, ``"True"``/``"False"`` in saved files."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value in ("True", "true", "1", 1):
        return True
    if value in ("False", "false", "0", 0):
        return False
    return None


def _are_letters(continuations: list[str]) -> bool:
    """Continuations ``" A", " B", ...`` (any one delimiter): the choices of a lettered question."""
    letters = [c.strip() for c in continuations]
    return 2 <= len(letters) <= 26 and letters == [chr(ord("A") + i) for i in range(len(letters))]


def _continuations(record: dict, n_choices: int) -> tuple[list[str] | None, bool]:
    """The continuation strings (delimiter + choice) and whether they are all identical (multiple input)."""
    arguments = record.get("arguments")
    pairs: list[Any] = []
    if isinstance(arguments, dict):  # saved form: {"gen_args_0": {"arg_0": ctx, "arg_1": cont}, ...}
        pairs = [(v.get("arg_0"), v.get("arg_1")) if isinstance(v, dict) else v
                 for _, v in sorted(arguments.items(), key=lambda kv: _argument_number(kv[0]))]
    elif isinstance(arguments, list):
        pairs = arguments
    continuations = [p[1] for p in pairs if isinstance(p, (list, tuple)) and len(p) >= 2 and isinstance(p[1], str)]
    if len(continuations) != len(pairs) or len(continuations) not in (n_choices,):
        return None, False
    contexts = {p[0] if isinstance(p[0], str) else _short(p[0]) for p in pairs}
    same = len(set(continuations)) == 1 and len(contexts) > 1
    return continuations, same


def _argument_number(key: str) -> int:
    """``gen_args_12`` -> 12 (saved files key each request by its number); 0 for any other key."""
    suffix = str(key).rsplit("_", 1)[-1]
    return int(suffix) if suffix.isascii() and suffix.isdigit() and len(suffix) <= 18 else 0


def _has_unconditional_half(record: dict) -> bool:
    """acc_mutual_info tasks append (\"\", continuation) requests after the real ones."""
    arguments = record.get("arguments")
    pairs = list(arguments.values()) if isinstance(arguments, dict) else arguments or []
    half = len(pairs) // 2
    contexts = [p.get("arg_0") if isinstance(p, dict) else p[0] for p in pairs]
    return half > 0 and len(pairs) % 2 == 0 and all(c == "" for c in contexts[half:]) and all(c != "" for c in contexts[:half])


def _strip_delimiter(continuations: list[str]) -> list[str]:
    """lm-eval's acc_norm divides by len(choice), the continuation without its target delimiter (default " ")."""
    if all(c.startswith(" ") for c in continuations):
        return [c[1:] for c in continuations]
    return continuations


def _gold_index(target: Any, continuations: list[str] | None, n_choices: int, where: str) -> int:
    if isinstance(target, list) and len(target) == 1:
        target = target[0]
    if isinstance(target, bool) or target is None:
        raise InputError(f"{where}: field 'target' is {target!r}, not a gold choice index")
    if isinstance(target, (int, np.integer)) or (isinstance(target, float) and target.is_integer()):
        index = int(target)
    elif isinstance(target, str) and re.fullmatch(r"-?[0-9]+", target.strip()):
        digits = target.strip()
        index = int(digits) if len(digits) <= 20 else n_choices  # int() refuses > 4300 digits; any long one is out of range
    elif isinstance(target, str) and continuations is not None:
        choices = _strip_delimiter(continuations)
        if target not in choices:
            raise InputError(f"{where}: field 'target' is {_short(target)}, which is neither an index nor one of the "
                             f"choices {_short(choices, 200)}")
        index = choices.index(target)
    elif isinstance(target, (list, str)):
        raise InputError(f"{where}: field 'target' is {_short(target)}; tasks with several gold answers are not supported")
    else:
        raise InputError(f"{where}: field 'target' is {_short(target)}, not a gold choice index")
    if not 0 <= index < n_choices:
        shown = target.strip() if isinstance(target, str) else str(index)
        shown = shown if len(shown) <= 24 else shown[:21] + "..."
        raise InputError(f"{where}: field 'target' is {shown}, outside the {n_choices} choices (0..{n_choices - 1})")
    return index


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)) and abs(int(value)) > 2**1024:  # float() would raise OverflowError
        return math.inf if value > 0 else -math.inf
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_number_like(value: Any) -> bool:
    return _to_float(value) is not None


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a value from a file may be huge or nested very deeply)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply, or an integer of over 4300 digits
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."
