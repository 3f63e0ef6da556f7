"""The torch device of a rule from ``config.device``, shared by the protein and DNA models."""
from __future__ import annotations

import torch

from .io import DataError


def pick_device(prefer: str = "auto") -> torch.device:
    """``config.device``: ``auto`` = CUDA when visible, else CPU; ``cpu``; ``cuda`` (an error
    when no CUDA device is visible, rather than a silent CPU run)."""
    if prefer not in ("auto", "cpu", "cuda"):
        raise DataError(f"device: '{prefer}' (expected auto, cpu or cuda)")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise DataError("device: 'cuda' requested but torch sees no CUDA device (set device: auto or cpu)")
    if prefer == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
