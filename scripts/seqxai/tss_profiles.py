"""TSS-relative attention profiles: the probe window and the TSS-relative offset of each of its
keys, the mean attention per offset, each head's peak and its top-attended offsets."""
from __future__ import annotations

import numpy as np

from .dna_model import key_receptive_field


def probe_extent(model_cfg: dict) -> tuple[int, int]:
    """``(left, right)``: tokens the probe window holds before and after the predicting query,
    ``n_layers * (context - lo)`` and ``n_layers * hi`` with ``lo..hi`` the span of a key's own
    convolution (:func:`seqxai.dna_model.key_receptive_field`): every key the query can see has
    its full receptive field inside the window, and every token the query's rows depend on."""
    field = key_receptive_field(model_cfg).iloc[0]
    n, ctx = int(model_cfg["n_layers"]), int(model_cfg["context"])
    return n * (ctx - int(field.lo)), n * int(field.hi)


def probe_window(model_cfg: dict) -> tuple[int, np.ndarray]:
    """Window length ``Wp = left + 1 + right`` (:func:`probe_extent`; query at index ``left``)
    and the offset of every key index: ``key_offset[j] = j + centre - left + label_offset``
    (``centre`` of the key's own convolution, relative to ``j``; the same in every layer).

    ``seqxai``: ``Wp = n_layers * (context + conv_width - 1) + 1``, the query is the last index."""
    left, right = probe_extent(model_cfg)
    centre = key_receptive_field(model_cfg).centre.to_numpy()
    assert (centre == centre[0]).all(), "one key -> token mapping for all layers"
    Wp = left + 1 + right
    return Wp, np.arange(Wp) + int(centre[0]) - left + model_cfg["label_offset"]


def motif_flank(model_cfg: dict, motif_pad: int) -> int:
    """Half-width of the logo window around a top-attended key's centre: the key's own
    convolution span on either side of its centre, plus ``motif_pad``."""
    f = key_receptive_field(model_cfg).iloc[0]
    return int(max(f.centre - f.lo, f.hi - f.centre)) + int(motif_pad)


def tss_profiles(attn_rows: np.ndarray, key_offset: np.ndarray, offset_min: int, offset_max: int):
    """Mean attention per TSS-relative offset: ``profile[layer, head, o] = mean_tss
    attn_rows[tss, layer, head, j(o)]`` for ``o`` in ``offset_min..offset_max``; offsets no key
    maps to get 0. Returns ``(profile, offsets)``."""
    offsets = np.arange(offset_min, offset_max + 1)
    profile = np.zeros(attn_rows.shape[1:3] + (len(offsets),))
    sel = (key_offset >= offset_min) & (key_offset <= offset_max)
    if len(attn_rows):
        profile[..., key_offset[sel] - offset_min] = attn_rows[..., sel].mean(axis=0)
    return profile, offsets


def profile_peaks(profile: np.ndarray, offsets: np.ndarray, halfwidth: int = 3):
    """Per head: ``peak_offset = argmax_o profile``, ``peak_mass = sum of profile over
    |o - peak| <= halfwidth`` (mean attention mass per TSS near the peak)."""
    idx = profile.argmax(axis=-1)
    near = np.abs(np.arange(len(offsets))[None, None, :] - idx[..., None]) <= halfwidth
    return offsets[idx], (profile * near).sum(axis=-1)


def top_offsets(attn_rows: np.ndarray, key_offset: np.ndarray, offset_min: int, offset_max: int, k: int = 1):
    """Offsets of the ``k`` most-attended keys inside the offset range:
    ``top[tss, layer, head, k]`` (ties -> lower key index)."""
    sel = np.flatnonzero((key_offset >= offset_min) & (key_offset <= offset_max))
    sub = attn_rows[..., sel]
    order = np.argsort(-sub, axis=-1, kind="stable")[..., :k]
    return key_offset[sel][order]
