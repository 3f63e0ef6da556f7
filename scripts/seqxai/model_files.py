"""Clear errors for model folders and hub ids that do not load.

``from_pretrained`` accepts a local folder or a Hugging Face hub id; what it raises when either is
unusable (an OSError about the hub for a typo offline, a RuntimeError from the zip reader for a
truncated ``pytorch_model.bin``, a TypeError deep in the tokenizer for a folder without its
vocabulary) names neither the file nor the config key. :func:`loading` re-raises such errors as
a DataError that does.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .io import DataError

#: files that hold a tokenizer's vocabulary (one is enough: WordPiece/BPE, fast tokenizer, SentencePiece)
VOCAB_FILES = ("vocab.txt", "tokenizer.json", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
               "tokenizer.model")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
KEY = "protein.encoder.pretrained"


def is_local(name: str | os.PathLike) -> bool:
    """True when a model name is a local path rather than a hub id ('org/name'); the rule of
    ``looks_local`` in workflow/rules/common.smk."""
    name = str(name)
    return (os.path.exists(os.path.expanduser(name)) or os.path.isabs(name) or name.startswith((".", "~"))
            or name.count(os.sep) > 1 or name.endswith(os.sep))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def check_vocabulary(name: str | os.PathLike) -> None:
    """DataError naming the folder and the files looked for when a local model folder has no
    tokenizer vocabulary."""
    path = Path(os.path.expanduser(str(name)))
    if not path.is_dir() or any((path / f).is_file() for f in VOCAB_FILES):
        return
    has = sorted(p.name for p in path.iterdir())
    raise DataError(f"{path}: no tokenizer vocabulary (none of {', '.join(VOCAB_FILES)}); the folder has {has}. "
                    f"Save the tokenizer with tokenizer.save_pretrained(folder), or copy its files there")


@contextlib.contextmanager
def loading(name: str | os.PathLike, what: str):
    """Re-raise a failed ``from_pretrained`` of ``name`` as a DataError naming the hub id (with
    how to use a local folder instead) or the local file (``what``: "weights" or "tokenizer")."""
    try:
        yield
    except DataError:
        raise
    except Exception as exc:  # OSError, RuntimeError, SafetensorError, TypeError...: re-raised, chained
        if not is_local(name):
            raise DataError(
                f"'{name}' is not a local folder and cannot be loaded from the Hugging Face hub ({_first_line(exc)}). "
                f"A typo in the hub id, or no network on this machine? Download the model where there is "
                f"network (huggingface-cli download {name} --local-dir FOLDER) and set {KEY} to that local "
                f"folder") from exc
        path = Path(os.path.expanduser(str(name)))
        if what == "weights":
            found = [path / w for w in WEIGHT_FILES if (path / w).is_file()]
            where = found[0] if found else path
            raise DataError(f"{where}: cannot load the model weights ({_first_line(exc)}); a truncated or "
                            f"damaged file? Copy or save the model again") from exc
        raise DataError(f"{path}: cannot load the tokenizer ({_first_line(exc)})") from exc
