import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pandas as pd
import pytest
import torch

from seqxai.dna_model import (PAD, build_model, check_tss, make_labels, make_windows, oriented_tokens,
                              split_blocks, train_tss_model, window_spans)
from seqxai.io import DataError
from seqxai.synth_dna import make_demo_genome

SMALL = dict(n_layers=2, n_heads=2, d_model=8, context=16, attn_chunk=8)


def test_split_blocks_contiguous_disjoint():
    b = split_blocks(1000, 0.2, 0.1)
    assert b == {"train": (0, 700), "valid": (700, 800), "test": (800, 1000)}
    with pytest.raises(DataError):
        split_blocks(1000, 0.7, 0.4)


def test_windows_score_every_position_once_inside_block():
    L = 500
    tokens = oriented_tokens("ACGT" * (L // 4))
    labels = {s: np.arange(L, dtype=np.float32) for s in "+-"}   # label = oriented index
    for block in [(0, 350), (350, 500)]:
        x, y, m = make_windows(tokens, labels, block, context=16, stride=40)
        assert x.shape[1] == 56
        for strand, (lo, hi) in (("+", block), ("-", (L - block[1], L - block[0]))):
            pass
        scored = np.sort(y[m])
        expect = np.sort(np.concatenate([np.arange(*block), np.arange(L - block[1], L - block[0])]))
        assert np.array_equal(scored, expect)                     # once each, both strands
        for xi, yi in zip(x, y):                                  # inputs never leave the block
            real = yi[xi != PAD]
            pl, ph = block
            ml, mh = L - block[1], L - block[0]
            assert ((real >= pl) & (real < ph)).all() or ((real >= ml) & (real < mh)).all()
    for s, e in [(0, 10), (5, 100), (7, 300)]:
        spans = window_spans(s, e, 16, 40)
        covered = np.concatenate([np.arange(a, b) for _, a, b in spans])
        assert np.array_equal(covered, np.arange(s, e)) and min(i for i, _, _ in spans) >= s


def test_labels_at_t_plus_offset_in_strand_orientation():
    L = 100
    tss = pd.DataFrame({"tss_id": ["a", "b", "c"], "chrom": "c", "position": [11, 31, 95], "strand": ["+", "-", "+"]})
    y = make_labels(tss, L, 20)
    assert np.flatnonzero(y["+"]).tolist() == [10 + 20]           # position 95 -> 114 is off the end
    assert np.flatnonzero(y["-"]).tolist() == [(L - 31) + 20]      # oriented index of genome 30 is 69


def test_check_tss_errors_name_record_and_field():
    genome = {"c": "ACGT" * 10}
    bad_pos = pd.DataFrame({"tss_id": ["t1"], "chrom": ["c"], "position": [41], "strand": ["+"]})
    with pytest.raises(DataError, match=r"tss.parquet: record t1: field 'position'"):
        check_tss(bad_pos, genome, "tss.parquet")
    bad_strand = bad_pos.assign(position=5, strand="x")
    with pytest.raises(DataError, match="field 'strand'"):
        check_tss(bad_strand, genome, "tss.parquet")
    with pytest.raises(DataError, match="field 'chrom'"):
        check_tss(bad_pos.assign(position=5, chrom="zz"), genome, "tss.parquet")


def _model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


def test_causal_and_dense_equals_chunked():
    model = _model()
    x = torch.randint(0, 4, (2, 50))
    with torch.no_grad():
        a = model(x)
        dense, attn = model(x, return_attention=True)
        x2 = x.clone()
        x2[:, 30:] = (x2[:, 30:] + 1) % 4                         # change the future of position 29
        b = model(x2)
    assert torch.allclose(a, dense, atol=1e-5)
    assert torch.allclose(a[:, :30], b[:, :30], atol=1e-6)
    assert not torch.allclose(a[:, 30:], b[:, 30:])
    assert attn.shape == (2, 2, 2, 50, 50)                        # batch, layer, head, query, key
    q, k = torch.meshgrid(torch.arange(50), torch.arange(50), indexing="ij")
    assert attn[..., (k > q) | (q - k > 16)].abs().max() == 0      # causal, band of context 16
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)


def test_conv_width_on_keys_and_values():
    """Layer-1 key/value at index j depends on tokens j-6..j only (centred on j-3)."""
    model = _model()
    layer = model.layers[0]
    x = torch.randint(0, 4, (1, 40))

    def kv(tokens):
        h = model.embed(tokens)
        qkv = layer.qkv(layer.ln1(h)).transpose(1, 2)
        return layer.conv(torch.nn.functional.pad(qkv, (6, 0))).transpose(1, 2)[0]

    j = 20
    with torch.no_grad():
        base = kv(x)
        for pos, changes in [(j + 1, False), (j, True), (j - 6, True), (j - 7, False)]:
            x2 = x.clone()
            x2[0, pos] = (x2[0, pos] + 2) % 4
            assert (not torch.allclose(kv(x2)[j], base[j])) == changes, pos


def test_padding_left_is_masked():
    model = _model()
    x = torch.randint(0, 4, (1, 30))
    xp = torch.cat([torch.full((1, 10), PAD), x], 1)
    with torch.no_grad():
        _, attn = model(xp, return_attention=True)
    assert attn[0, :, :, 10:, :10].max() < 1e-6                   # real queries ignore PAD keys


def test_small_training_beats_positive_rate_and_is_deterministic():
    demo = {"genome_length": 40000, "n_promoters": 160, "box_mutation_rate": 0.1}
    genome, tss, *_ = make_demo_genome(demo, seed=5)
    mcfg = dict(n_layers=1, n_heads=4, d_model=16, context=48, attn_chunk=32)
    tcfg = dict(epochs=3, batch_size=2, lr=0.01, stride=464)
    m1, met1, log1 = train_tss_model(genome, tss, mcfg, tcfg, None, seed=3)
    test = met1["splits"]["test"]
    assert test["pr_auc"] > 10 * test["positive_rate"]
    assert test["roc_auc"] > 0.8
    assert list(log1.columns) == ["epoch", "step", "train_loss", "valid_loss", "valid_pr_auc", "seconds"]
    _, met2, _ = train_tss_model(genome, tss, mcfg, dict(tcfg, epochs=1), None, seed=3)
    _, met3, _ = train_tss_model(genome, tss, mcfg, dict(tcfg, epochs=1), None, seed=3)
    assert met2["splits"]["test"]["pr_auc"] == met3["splits"]["test"]["pr_auc"]
