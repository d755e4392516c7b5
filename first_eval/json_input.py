"""Reading the JSON and JSON Lines files a user hands us, without trusting them.

A path given as input may be anything: a folder, ``/dev/zero``, a pipe, a 50 GB file with no line break,
a value nested 100,000 deep, an integer of 5,000 digits. Each becomes one ``InputError`` line naming the
file, never a ``MemoryError``, a ``RecursionError`` or a hang:

- ``open_input``: a regular file or a pipe (``--samples <(zcat f.jsonl.gz)``), never a device or a socket;
- ``json_lines``: a JSON Lines file line by line (memory follows one line), each line at most ``MAX_LINE_BYTES``;
- ``read_json_value``: the rest of a file as one JSON value, at most ``limit`` bytes;
- ``parse_json``: ``json.loads`` whose every failure is a ``ValueError`` (``json_error_reason`` says why).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from first_eval.errors import InputError

# A samples record is one line of a few kB to a few MB (long contexts times the choices); a "line" far beyond
# that is not a JSON Lines file (a binary file without line breaks, say), and reading it whole only eats memory.
MAX_LINE_BYTES = 64 * 2**20
# A whole-file JSON value (a results JSON holding samples) is parsed at once, so it is held in memory.
MAX_DOCUMENT_BYTES = 2 * 2**30


def open_input(path: Path, hint: str = "") -> BinaryIO:
    """``path`` opened for binary reading: a regular file or a pipe; ``InputError`` (ending in ``hint``) otherwise."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a file{hint}")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise InputError(f"{path}: {kind}, not a regular file{hint}")
    try:
        return open(path, "rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None


def json_lines(stream: BinaryIO, path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of each non-blank line (its line break kept), decoded as UTF-8."""
    line_number = 0
    while True:
        line_number += 1
        try:
            raw = stream.readline(MAX_LINE_BYTES + 1)
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(f"{path}: line {line_number} is longer than {MAX_LINE_BYTES // 2**20} MiB; "
                             "not a JSON Lines file (one JSON record per line)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not a UTF-8 text file ({error.reason} at line {line_number}, "
                             f"byte {error.start + 1})") from None
        if text.strip():
            yield line_number, text


def rejoin(lines: list[tuple[int, str]]) -> str:
    """The text of ``json_lines``' first lines again, blank lines included (so line numbers stay the file's)."""
    parts, last = [], 0
    for line_number, text in lines:
        parts.append("\n" * (line_number - last - 1) + text)
        last = line_number
    return "".join(parts)


def read_json_value(stream: BinaryIO, path: Path, already: str = "", limit: int = MAX_DOCUMENT_BYTES,
                    syntax_error: str | None = None) -> Any:
    """The rest of ``stream``, after the text ``already`` read from it, parsed as one JSON value.

    Invalid JSON is refused with ``syntax_error`` when given, else with the parser's line and reason.
    """
    prefix = already.encode("utf-8")
    try:
        size = os.fstat(stream.fileno()).st_size if stat.S_ISREG(os.fstat(stream.fileno()).st_mode) else 0
        if size > limit:  # refused before reading (a pipe is refused once more than limit bytes came)
            raise InputError(f"{path}: {_size(size)} is too large to read as one JSON document (limit {_size(limit)})")
        data = prefix + stream.read(limit + 1 - len(prefix))
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > limit:
        raise InputError(f"{path}: more than {_size(limit)} is too large to read as one JSON document")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start + 1})") from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    try:
        return parse_json(text)
    except ValueError as error:
        if syntax_error is not None:
            raise InputError(syntax_error) from None
        where = f"line {error.lineno}: {error.msg}" if isinstance(error, json.JSONDecodeError) else json_error_reason(error)
        raise InputError(f"{path}: not valid JSON ({where})") from None


def parse_json(text: str) -> Any:
    """``json.loads`` with every failure a ``ValueError`` (syntax, nesting too deep, an integer too long)."""
    try:
        return json.loads(text.rstrip("\r\n"))  # a line's own break would move an error's column to "line 2"
    except RecursionError:
        raise ValueError("nested too deeply") from None


def json_error_reason(error: ValueError) -> str:
    """Why ``parse_json`` failed, in a few words (no position for errors that are not syntax errors)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    return str(error).split(";")[0]


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.3g} MiB"
