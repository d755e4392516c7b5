"""Checks of what a user hands a command, run before any model loads or any file is written.

Each check raises ``InputError`` with one line that names the flag and quotes the bad value; none of them imports
lm-eval or loads weights (lm-eval's model-type check is the bridge's ``check_model_type``). Shared by ``first report`` (live runs), ``first compare`` and the ``first distill``
commands, so a broken model folder or an unwritable output is refused the same way everywhere.

- ``check_output_folder``: the folder can be created (or is an existing folder) and written, proven by creating
  and removing a probe folder beside it, so a read-only file system, ``/proc`` or an existing *file* fail at once
  instead of after the computing.
- ``check_model_folder``: a Hugging Face model folder lm-eval or transformers will load: a readable
  ``config.json`` whose ``model_type`` transformers knows, no custom code unless ``trust_remote_code`` was given,
  weight files whose size matches their safetensors header (a truncated download is refused), a GGUF file with
  the GGUF magic.
- ``check_device``: ``cpu``, ``cuda``, ``cuda:N`` with N below the GPU count, ``mps`` where available.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from pathlib import Path

from first_eval.errors import InputError

# Paths no command may write into: kernel file systems refuse or, worse, accept odd writes.
_FORBIDDEN_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_output_folder(path: str | Path, flag: str = "--output") -> Path:
    """``path`` is an existing writable folder or can be created; returns it (expanded). Writes nothing."""
    path = Path(path).expanduser()
    absolute = path.absolute()
    if any(absolute == root or root in absolute.parents for root in _FORBIDDEN_ROOTS):
        raise InputError(f"{flag} {path}: a system folder ({absolute.parts[1]}); choose a folder of your own")
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: is an existing file, not a folder; choose a folder path")
    ancestor = absolute
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{flag} {path}: {ancestor} is a file, so the folder cannot be created under it")
    try:  # the only sure test of writability (read-only mounts, ACLs, root on NFS): make and remove a probe
        probe = tempfile.mkdtemp(prefix=".first-write-probe-", dir=ancestor)
        os.rmdir(probe)
    except OSError as error:
        raise InputError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror or error})") from None
    return path


def check_model_folder(folder: str | Path, gguf_file: str | None = None, trust_remote_code: bool = False,
                       flag: str = "--model-args pretrained") -> None:
    """The folder holds a model transformers can load without running code it was not allowed to run."""
    folder = Path(folder).expanduser()
    where = f"{flag}={folder}" if flag.endswith("pretrained") else f"{flag} {folder}"
    if gguf_file:
        _check_gguf(folder / gguf_file, where)
        return
    config = _read_config(folder / "config.json", where)
    model_type = config.get("model_type")
    if config.get("auto_map") and not trust_remote_code:
        raise InputError(f"{where}: the model ships its own Python code (auto_map in config.json); it runs only "
                         "with trust_remote_code=True in --model-args, after you have read that code")
    if not config.get("auto_map"):
        from transformers import CONFIG_MAPPING

        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise InputError(f"{where}: config.json has model_type {model_type!r}, which transformers does not know"
                             + (" (a newer transformers, or trust_remote_code=True with the model's code?)"
                                if isinstance(model_type, str) else ""))
    for weights in _safetensors_files(folder, where):
        _check_safetensors(weights, where)


def check_device(device: str | None, flag: str = "--device") -> None:
    """``cpu``, ``cuda``, ``cuda:N`` (N < number of GPUs) or ``mps`` on a machine that has it."""
    if device is None or device == "cpu":
        return
    match = re.fullmatch(r"(cuda|mps|xpu)(?::(\d+))?", device)
    if match is None:
        raise InputError(f"{flag} {device!r}: expected cpu, cuda, cuda:N or mps")
    import torch

    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"{flag} {device}: this machine has no CUDA GPU (torch sees none); use --device cpu")
        if index is not None and int(index) >= count:
            raise InputError(f"{flag} {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"{flag} {device}: Apple's MPS is not available on this machine; use --device cpu")
    elif kind == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise InputError(f"{flag} {device}: no Intel XPU on this machine; use --device cpu")


def _read_config(path: Path, where: str) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where}: no config.json in the folder") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{where}: cannot read config.json ({getattr(error, 'strerror', None) or error})") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise InputError(f"{where}: config.json is not valid JSON ({getattr(error, 'msg', error)})") from None
    if not isinstance(config, dict):
        raise InputError(f"{where}: config.json holds a JSON {type(config).__name__}, not an object")
    return config


def _safetensors_files(folder: Path, where: str) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{where}: model.safetensors.index.json is not a valid index (no weight_map)") from None
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise InputError(f"{where}: the index names {missing[0]}, which is not in the folder")
        return [folder / name for name in names]
    return sorted(folder.glob("*.safetensors"))


def _check_safetensors(path: Path, where: str) -> None:
    """The header parses and the file is as long as the header says (a truncated download fails here)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > min(size, 100_000_000):
                raise ValueError(f"header of {header_size} bytes")
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as error:
        raise InputError(f"{where}: {path.name} is not a readable safetensors file ({error})") from None
    if size < 8 + header_size + end:
        raise InputError(f"{where}: {path.name} is truncated ({size} bytes, its header needs {8 + header_size + end})")


def _check_gguf(path: Path, where: str) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise InputError(f"{where}: cannot read {path} ({error.strerror or error})") from None
    if magic != b"GGUF":
        raise InputError(f"{where}: {path.name} is not a GGUF file (it does not start with the GGUF magic)")
