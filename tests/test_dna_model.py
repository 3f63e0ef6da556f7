import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pandas as pd
import pytest
import torch

from seqxai.dna_model import build_model
from seqxai.io import DataError
from seqxai.synth_dna import make_demo_genome
from seqxai.tss_training import train_tss_model
from seqxai.tss_windows import (
    PAD,
    check_tss,
    make_labels,
    make_windows,
    oriented_tokens,
    split_blocks,
    window_spans,
)

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
        for _strand, (_lo, _hi) in (("+", block), ("-", (L - block[1], L - block[0]))):
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


def _model(**over):
    torch.manual_seed(0)
    return build_model({**SMALL, **over}).eval()


@pytest.mark.parametrize("sink", [False, True])
def test_causal_and_dense_equals_chunked(sink):
    model = _model(attention_sink=sink)
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
    if sink:   # the sink keeps 1 / (1 + sum exp(s)) of every row: rows sum to less than 1
        assert (attn.sum(-1) < 1 - 1e-4).all() and (attn.sum(-1) > 0).all()
    else:
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
    mcfg = dict(n_layers=1, n_heads=4, d_model=16, d_head=4, context=48, attn_chunk=32)
    tcfg = dict(epochs=3, batch_size=2, lr=0.01, stride=464)
    m1, met1, log1 = train_tss_model(genome, tss, mcfg, tcfg, None, seed=3)
    test = met1["splits"]["test"]
    assert test["pr_auc"] > 10 * test["positive_rate"]             # chance: PR AUC = positive rate
    assert test["roc_auc"] > 0.8
    assert list(log1.columns) == ["epoch", "step", "train_loss", "valid_loss", "valid_pr_auc", "seconds"]
    _, met2, _ = train_tss_model(genome, tss, mcfg, dict(tcfg, epochs=1, max_windows_per_epoch=10), None, seed=3)
    _, met3, _ = train_tss_model(genome, tss, mcfg, dict(tcfg, epochs=1, max_windows_per_epoch=10), None, seed=3)
    assert met2["splits"]["test"]["pr_auc"] == met3["splits"]["test"]["pr_auc"]


ROOT = Path(__file__).parents[1]
SHIPPED_CONFIGS = sorted([ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml",
                          *(ROOT / "config" / "paper").glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_builds_its_dna_model(path):
    """Each shipped config validates, and its DNA model (e.g. the paper's 6 heads on d_model 32)
    builds and runs forward, with probe rows of the right shape."""
    import copy

    import yaml
    from snakemake.utils import validate

    cfg = copy.deepcopy(yaml.safe_load(path.read_text()))
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    mcfg = cfg["dna"]["model"]
    torch.manual_seed(0)
    model = build_model(mcfg).eval()
    assert model.config["d_head"] == mcfg["d_head"] and model.config["n_heads"] == mcfg["n_heads"]
    x = torch.randint(0, 4, (2, 24))
    with torch.no_grad():
        logits, rows = model(x, return_attention=True, attention_queries=[23])
    assert logits.shape == (2, 24) and torch.isfinite(logits).all()
    assert rows.shape == (2, mcfg["n_layers"], mcfg["n_heads"], 1, 24)
    assert (rows.sum(-1) <= 1 + 1e-5).all()          # < 1 with the attention sink


def test_head_width_independent_of_d_model():
    model = build_model(dict(n_layers=1, n_heads=6, d_model=32, d_head=6, context=8))
    layer = model.layers[0]
    assert layer.qkv.out_features == 3 * 6 * 6 and layer.out.in_features == 6 * 6


@pytest.mark.parametrize("sink", [False, True])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("position", ["rotary", "xl"])
def test_attention_rows_equal_dense_rows(position, attention, sink):
    """Rows computed for a few queries only equal those rows of the dense T x T attention
    (with left PAD, band edges and positions before the context filled), and a naive loop;
    with the sink the naive loop adds one key of score 0 to the softmax."""
    torch.manual_seed(1)
    model = build_model(dict(n_layers=3, n_heads=3, d_model=12, d_head=4, context=10, attn_chunk=4,
                             position=position, attention=attention, attention_sink=sink)).eval()
    x = torch.randint(0, 4, (2, 37))
    x[1, :5] = PAD
    queries = [0, 3, 9, 10, 11, 36]
    with torch.no_grad():
        logits_d, dense = model(x, return_attention=True)
        logits_r, rows = model(x, return_attention=True, attention_queries=queries)
    assert rows.shape == (2, 3, 3, len(queries), 37)
    assert torch.allclose(rows, dense[:, :, :, queries, :], atol=1e-6)
    assert torch.allclose(logits_r, logits_d, atol=1e-5)
    for n in (1, 2, 3):  # the probe's path: the first n layers' rows, without the layers above
        with torch.no_grad():
            none, part = model(x, return_attention=True, attention_queries=queries, attention_layers=n)
        assert none is None and part.shape[1] == n
        assert torch.allclose(part, dense[:, :n, :, queries, :], atol=1e-6)
    with pytest.raises(ValueError, match="attention_layers"):
        model(x, return_attention=True, attention_layers=1)
    layer = model.layers[0]
    with torch.no_grad():
        h = layer.ln1(model.embed(x))
        qkv = layer.conv(torch.nn.functional.pad(layer.qkv(h).transpose(1, 2), (6, 0))).transpose(1, 2)
        q, k, _ = qkv.reshape(2, 37, 3, 3, 4).permute(2, 0, 3, 1, 4)
        if position == "xl":
            r = layer.r_net(layer.rel_enc).view(-1, 3, 4)     # rows: distances d_min..10
        d_min = 0 if attention == "causal" else -10
        assert layer.rel_enc.shape[0] == 11 - d_min
        for b in range(2):
            for hd in range(3):
                for i in queries:
                    s = torch.full((37,), float("-inf"))
                    last = i if attention == "causal" else min(36, i + 10)
                    for j in range(max(0, i - 10), last + 1):
                        if position == "xl":
                            s[j] = ((q[b, hd, i] + layer.u[hd]) @ k[b, hd, j]
                                    + (q[b, hd, i] + layer.v[hd]) @ r[i - j - d_min, hd]) / 2
                        else:                                 # pairs turned by angle t * 10000^(-2m/4)
                            def turn(vec, t):
                                ang = t * torch.tensor([1.0, 0.01])
                                c, si = torch.cos(ang), torch.sin(ang)
                                return torch.stack([vec[0::2] * c - vec[1::2] * si, vec[0::2] * si + vec[1::2] * c], -1).flatten()
                            s[j] = turn(q[b, hd, i], i) @ turn(k[b, hd, j], j) / 2
                        if x[b, j] == PAD:
                            s[j] = -1e9
                    want = torch.softmax(torch.cat([s, torch.zeros(1)]), 0)[:-1] if sink else torch.softmax(s, 0)
                    assert torch.allclose(want, rows[b, 0, hd, queries.index(i)], atol=1e-5)


def test_rotary_scores_depend_on_distance_only():
    from seqxai.dna_model import rotate

    torch.manual_seed(2)
    q, k = torch.randn(1, 12, 8), torch.randn(1, 12, 8)
    qr, kr = rotate(q), rotate(k)
    # same q/k vectors placed 5 positions later: identical scores for the same i - j
    q5, k5 = rotate(torch.cat([torch.zeros(1, 5, 8), q], 1))[:, 5:], rotate(torch.cat([torch.zeros(1, 5, 8), k], 1))[:, 5:]
    assert torch.allclose(qr @ kr.transpose(-1, -2), q5 @ k5.transpose(-1, -2), atol=1e-5)
    assert not torch.allclose(qr, q5)


# ---------------------------------------------------------------- split checks, metrics, early stop, device
TINY_MODEL = dict(n_layers=1, n_heads=2, d_model=8, d_head=4, context=16, attn_chunk=16)


def _tiny_demo(length=12000, n=40, seed=2):
    genome, tss, *_ = make_demo_genome({"genome_length": length, "n_promoters": n, "tfs": []}, seed=seed)
    return genome, tss


def test_empty_or_tss_free_split_fails_at_start_naming_it():
    with pytest.raises(DataError, match=r"the test block \[5, 5\) of a 5-nt genome is empty"):
        split_blocks(5, 0.05, 0.2)
    genome, tss = _tiny_demo()
    L = len(next(iter(genome.values())))
    first_half = tss[tss.position < 0.5 * L]                      # nothing in valid [0.7L, 0.8L) or test
    with pytest.raises(DataError, match=r"tss: no TSS label falls in the valid block \[8400, 9600\)"):
        train_tss_model(genome, first_half, TINY_MODEL, dict(epochs=1, stride=200), None, seed=1, device="cpu")


def test_metrics_never_hold_nan():
    import json

    from seqxai.tss_training import assert_finite_metrics, auc_metrics

    m = auc_metrics(np.zeros(5), np.arange(5.0))
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["auc_undefined"] == "no positive position"
    json.dumps(m, allow_nan=False)
    assert auc_metrics(np.array([0, 1, 1.0]), np.array([0.1, 0.9, 0.8]))["roc_auc"] == 1.0
    with pytest.raises(FloatingPointError, match=r"metrics.splits.test.pr_auc is nan"):
        assert_finite_metrics({"splits": {"test": {"pr_auc": float("nan"), "n": 3}}})


def test_early_stop_runs_exactly_patience_bad_epochs(monkeypatch):
    """Validation PR AUC scripted per epoch: best at epoch 2, then 3 worse epochs; patience 3
    stops after epoch 5 (3 bad epochs, not 4), keeps epoch 2; patience 0 runs every epoch."""
    import seqxai.tss_training as training
    from seqxai.tss_training import early_stop

    assert [early_stop(b, 3) for b in range(5)] == [False, False, False, True, True]
    assert not early_stop(100, 0)
    real = training.auc_metrics
    genome, tss = _tiny_demo()
    for patience, expect_epochs in ((3, 5), (0, 6)):
        scripted = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.7])
        calls = {"n": 0}

        def fake(y, score):
            out = real(y, score)
            if calls["n"] < 6 and len(y) == valid_len[0]:  # noqa: B023
                calls["n"] += 1  # noqa: B023
                out["pr_auc"] = next(scripted)  # noqa: B023
            return out

        valid_len = [None]
        x_v = make_windows(oriented_tokens(next(iter(genome.values()))),
                           make_labels(tss, 12000, 20), split_blocks(12000, 0.2, 0.1)["valid"], 16, 200)
        valid_len[0] = int(x_v[2].sum())
        monkeypatch.setattr(training, "auc_metrics", fake)
        _, met, log_df = train_tss_model(genome, tss, TINY_MODEL, dict(epochs=6, stride=200, patience=patience,
                                                                       max_windows_per_epoch=4),
                                         None, seed=1, device="cpu")
        assert len(log_df) == expect_epochs and met["epochs"] == expect_epochs
        assert met["best_epoch"] == (2 if patience else 6)


def test_device_setting_reaches_both_rule_scripts(tmp_path):
    """train_dna and tss_attention take config.device (not params): cpu runs on the CPU, cuda
    without a visible GPU is a clear error, auto falls back to the CPU."""
    import runpy
    from types import SimpleNamespace

    from seqxai.devices import pick_device
    from seqxai.io import write_fasta, write_table

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DataError, match="device: 'gpu'"):
        pick_device("gpu")
    genome, tss = _tiny_demo()
    write_fasta(tmp_path / "g.fasta", genome)
    write_table(tmp_path / "tss.parquet", tss, table="tss")
    scripts = Path(__file__).parents[1] / "scripts"

    def sm(device, **kw):
        return SimpleNamespace(scriptdir=str(scripts), log=[str(tmp_path / "log.txt")], threads=1,
                               config={"device": device,  # speed-only settings come from the config
                                       "dna": {"model": {"attn_chunk": 64}, "probe": {"batch_size": 32}}},
                               **kw)

    train = dict(input=SimpleNamespace(genome=str(tmp_path / "g.fasta"), tss=str(tmp_path / "tss.parquet")),
                 output=SimpleNamespace(model=str(tmp_path / "m.pt"), metrics=str(tmp_path / "metrics.json"),
                                        training_log=str(tmp_path / "log.tsv")),
                 params=SimpleNamespace(model=TINY_MODEL, train=dict(epochs=1, stride=200), split={}, seed=1))
    runpy.run_path(str(scripts / "train_dna.py"), init_globals={"snakemake": sm("cpu", **train)})
    import json

    assert json.loads((tmp_path / "metrics.json").read_text())["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="'cuda' requested but torch sees no CUDA device"):
            runpy.run_path(str(scripts / "train_dna.py"), init_globals={"snakemake": sm("cuda", **train)})
        probe = dict(input=SimpleNamespace(model=str(tmp_path / "m.pt"), genome="g", tss="t", tf_sites="s",
                                           tf_motifs="m"),
                     output=SimpleNamespace(**{k: str(tmp_path / k) for k in
                                               ("profiles", "head_motifs", "head_motifs_meme", "tf_enrichment",
                                                "tomtom", "summary", "sigma70_reference")}),
                     params=SimpleNamespace(probe={}, elements={}, seed=1))
        with pytest.raises(DataError, match="'cuda' requested"):
            runpy.run_path(str(scripts / "tss_attention.py"), init_globals={"snakemake": sm("cuda", **probe)})


@pytest.mark.parametrize("position", ["xl", "rotary"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_attention_mode_decides_whether_downstream_positions_matter(attention, position):
    """causal: the output at t ignores positions > t; bidirectional: it reads up to
    n_layers * context positions downstream (and no further). Chunked == dense in both."""
    torch.manual_seed(2)
    ctx = 6
    model = build_model(dict(n_layers=2, n_heads=2, d_model=16, d_head=8, context=ctx, attn_chunk=8,
                             position=position, attention=attention)).eval()
    x = torch.randint(0, 4, (2, 45))
    t = 20
    with torch.no_grad():
        a = model(x)
        dense, attn = model(x, return_attention=True)
        x2 = x.clone()
        x2[:, t + 1:] = (x2[:, t + 1:] + 1) % 4                     # change everything after t
        b = model(x2)
        x3 = x.clone()
        x3[:, t + 2 * ctx + 1:] = (x3[:, t + 2 * ctx + 1:] + 1) % 4   # beyond 2 layers x context
        c = model(x3)
    assert torch.allclose(a, dense, atol=1e-5)
    q, k = torch.meshgrid(torch.arange(45), torch.arange(45), indexing="ij")
    outside = (q - k > ctx) | ((k > q) if attention == "causal" else (k - q > ctx))
    assert attn[..., outside].abs().max() == 0
    assert attn[..., ~outside].min() > 0
    if attention == "causal":
        assert torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
    else:
        assert (a[:, t] - b[:, t]).abs().min() > 1e-4                 # position t saw the change
        assert torch.allclose(a[:, t], c[:, t], atol=1e-6)            # receptive field ends at t + 12
    with pytest.raises(DataError, match="dna.model.attention"):
        build_model({"attention": "sideways"})
