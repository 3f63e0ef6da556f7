"""A tiny DNA TSS model with non-zero weights and a few windows around a TSS, shared by the DNA
attribution tests (integrated gradients and the other methods)."""
import numpy as np
import torch

from seqxai import dna_attribution as da
from seqxai.dna_model import build_model
from seqxai.tss_windows import PAD

TINY = dict(n_layers=2, n_heads=2, d_model=16, d_head=8, context=12, conv_width=3, label_offset=4, attn_chunk=8)


def tiny_model(overrides: dict | None = None, seed: int = 0, scale: float = 0.5):
    """The model of ``TINY`` (plus ``overrides``) in eval mode, every parameter, biases and
    u, v included, drawn from N(0, scale)."""
    torch.manual_seed(seed)
    m = build_model({**TINY, **(overrides or {})}).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, scale)
    return m


def tiny_windows(model, n: int = 3, seed: int = 0):
    """``n`` random windows of the extent IG uses for offsets -10..4, the first reaching past
    the strand start (padding), the second with an N; and the TSS column ``left``."""
    left, right = da.window_extent(model.config, -10, 4)
    x = np.random.default_rng(seed).integers(0, 4, (n, left + 1 + right))
    x[0, :3] = PAD        # a window reaching past the strand start
    if n > 1:
        x[1, 5] = 4       # an N
    return x, left
