"""Training checkpoints that resume only the run they belong to.

A checkpoint holds the full training state (model, optimiser, RNGs, position in the data) and a
signature: one SHA-256 per thing the training reads, by content, not by name (the initial
weights as loaded, the token ids and labels of the data, the splits, the settings). A rerun
resumes from a checkpoint only when every digest matches; otherwise it logs which ones differ
and trains afresh. A path is never part of the signature: the same path may hold new weights
(MLM pretraining reran), and the demo encoder is built in a fresh temporary folder each time.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def weights_digest(model: nn.Module) -> str:
    """sha256 over every state tensor (name, dtype, shape, bytes) of ``model``."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def array_digest(*arrays) -> str:
    """sha256 over arrays/tensors (dtype, shape, bytes) in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def value_digest(value) -> str:
    """sha256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save to a temporary name, then rename: a kill never leaves half a checkpoint."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, signature: dict[str, str]) -> dict | None:
    """The checkpoint at ``path`` if it exists and its signature equals ``signature`` (a
    {part: digest} mapping), else None, with a warning naming the parts that differ."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("signature")
    if saved == signature:
        return state
    if not isinstance(saved, dict):
        why = "it was written by an older version of seqxai (no per-input digests)"
    else:
        differ = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
        why = "it differs in: " + ", ".join(differ)
    log.warning("checkpoint %s belongs to another run (%s); not resuming, training afresh",
                path, why)
    return None


def drop_checkpoint(checkpoint_dir) -> None:
    """Remove a finished job's checkpoint: it exists to resume interrupted jobs only, and a
    later rerun (changed code, forced) must train afresh rather than reload old weights."""
    if checkpoint_dir is None:
        return
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if path.exists():
        path.unlink()
        log.info("training finished; removed its checkpoint %s", path)
    with contextlib.suppress(OSError):
        Path(checkpoint_dir).rmdir()


def rng_state(batch_rng: np.random.Generator) -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "batch": batch_rng.bit_generator.state,
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict, batch_rng: np.random.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    batch_rng.bit_generator.state = state["batch"]
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
