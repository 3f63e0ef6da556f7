"""The ``clauwaert2021`` architecture (seqxai.dna_clauwaert) against the original code,
jdcla/DNA-transformer: ``mem_transformer.py`` (MemTransformerLM, RelPartialLearnableMultiHeadAttn)
as ``run_regulon.sh`` configures it through ``train.py``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from seqxai.dna_clauwaert import ClauwaertTransformer
from seqxai.dna_model import TSSTransformer, build_model, key_receptive_field, load_model, save_model
from seqxai.io import DataError
from seqxai.tss_training import train_tss_model
from seqxai.tss_windows import PAD, oriented_tokens

PAPER = dict(architecture="clauwaert2021", n_layers=6, n_heads=6, d_model=32, d_head=32, context=511,
             conv_width=7, dropout=0.1, label_offset=20, attention_sink=False)
TINY = dict(architecture="clauwaert2021", n_layers=3, n_heads=2, d_model=8, d_head=4, context=64,
            conv_width=7, dropout=0.0, label_offset=5, attn_chunk=8, attention_sink=False)


def _tiny(**over):
    torch.manual_seed(0)
    return build_model({**TINY, **over}).eval()


def test_parameter_count_and_shapes_equal_the_original():
    """Numbers from mem_transformer.py with run_regulon.sh's settings (n_layer 6, n_head 6,
    d_model = d_embed 32, d_head 32, conv_size 7, 4 input and 2 output tokens, --not_tied).
    The original counts 314,948 trainable parameters; 66 of them sit in ``crit``
    (ProjectedAdaptiveLogSoftmax(2, 32, 32): one Linear(32, 2)), which the forward pass never
    uses (it calls ``out_layer``), so the model without it has 314,948 - 66 = 314,882."""
    model = build_model(PAPER)
    assert isinstance(model, ClauwaertTransformer)
    # per layer (RelPartialLearnableDecoderLayer.dec_attn): qkv_net 32 x 576 (no bias) = 18,432;
    # motif_net_q/k/v: 3 x (32 x 32 x 7 + 32) = 21,600; r_net 32 x 192 = 6,144; o_net 192 x 32
    # = 6,144; layer_norm 64 -> 52,384
    per_layer = 32 * 576 + 3 * (32 * 32 * 7 + 32) + 32 * 192 + 192 * 32 + 2 * 32
    assert per_layer == 52_384
    for layer in model.layers:
        assert sum(p.numel() for p in layer.parameters()) == 52_384
    # + r_w_bias, r_r_bias 2 x 6 x 32 = 384 (shared) + embedding 4 x 32 = 128 + out_layer 66
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_trainable == 6 * 52_384 + 384 + 128 + 66 == 314_882
    # the original's tensor names (left) and shapes; ours where the project's name differs
    original = {
        "word_emb.emb_layers.0.weight": (4, 32), "r_w_bias": (6, 32), "r_r_bias": (6, 32),
        "layers.0.dec_attn.qkv_net.weight": (576, 32),
        "layers.0.dec_attn.motif_net_q.weight": (32, 32, 7), "layers.0.dec_attn.motif_net_q.bias": (32,),
        "layers.0.dec_attn.motif_net_k.weight": (32, 32, 7), "layers.0.dec_attn.motif_net_k.bias": (32,),
        "layers.0.dec_attn.motif_net_v.weight": (32, 32, 7), "layers.0.dec_attn.motif_net_v.bias": (32,),
        "layers.0.dec_attn.r_net.weight": (192, 32), "layers.0.dec_attn.o_net.weight": (32, 192),
        "layers.0.dec_attn.layer_norm.weight": (32,), "layers.0.dec_attn.layer_norm.bias": (32,),
        "out_layer.weight": (2, 32), "out_layer.bias": (2,),
    }
    ours = {k.replace("word_emb.emb_layers.0", "embed").replace(".dec_attn", ""): v
            for k, v in original.items()}
    shapes = {k: tuple(p.shape) for k, p in model.named_parameters() if not k.startswith("layers.")
              or k.startswith("layers.0.")}
    assert shapes == ours
    assert not any("ff" in k or "bias" in k and ("qkv" in k or "o_net" in k or "r_net" in k)
                   for k, _ in model.named_parameters())


def _original_forward(model, x):
    """An independent re-implementation of the original forward pass (mems None, eval mode),
    following MemTransformerLM._forward and RelPartialLearnableMultiHeadAttn.forward in
    mem_transformer.py line by line in its [qlen, bsz, ...] layout, with this model's weights;
    returns the 2-class logits ``[bsz, qlen, 2]`` and ``attn_prob[layer][qlen, klen, bsz, n_head]``."""
    cfg = model.config
    n_head, d_head, d_model = cfg["n_heads"], cfg["d_head"], cfg["d_model"]
    dec_inp = x.T                                                                      # qlen x bsz
    qlen, bsz = dec_inp.shape
    word_emb = F.embedding(dec_inp, model.embed.weight) * d_model ** 0.5               # AdaptiveEmbedding
    klen = qlen
    dec_attn_mask = torch.triu(torch.ones(qlen, klen), diagonal=1).bool()[:, :, None]
    pos_seq = torch.arange(klen - 1, -1, -1.0)
    inv_freq = 1 / (10000 ** (torch.arange(0.0, d_model, 2.0) / d_model))             # PositionalEmbedding
    sinusoid_inp = torch.outer(pos_seq, inv_freq)
    r = torch.cat([sinusoid_inp.sin(), sinusoid_inp.cos()], dim=-1)[:, None, :]
    core_out, probs = word_emb, []
    for layer in model.layers:
        w = core_out
        w_heads = layer.qkv_net(w)
        r_head_k = layer.r_net(r)
        w_head_q, w_head_k, w_head_v = torch.chunk(w_heads, 3, dim=-1)
        heads = []
        for t, conv in ((w_head_q, layer.motif_net_q), (w_head_k, layer.motif_net_k),
                        (w_head_v, layer.motif_net_v)):
            t = t.view(qlen, bsz, n_head, d_head).permute(2, 1, 3, 0).reshape(n_head * bsz, d_head, qlen)
            heads.append(conv(t).view(n_head, bsz, d_head, qlen).permute(3, 1, 0, 2))
        w_head_q, w_head_k, w_head_v = heads
        r_head_k = r_head_k.view(klen, n_head, d_head)
        AC = torch.einsum("ibnd,jbnd->ijbn", (w_head_q + model.r_w_bias, w_head_k))
        BD = torch.einsum("ibnd,jnd->ijbn", (w_head_q + model.r_r_bias, r_head_k))
        zero_pad = torch.zeros((BD.size(0), 1, *BD.size()[2:]))                         # _rel_shift
        BD = torch.cat([zero_pad, BD], dim=1).view(BD.size(1) + 1, BD.size(0), *BD.size()[2:])[1:].view_as(BD)
        attn_score = (AC + BD) * (1 / d_head ** 0.5)
        attn_score = attn_score.masked_fill(dec_attn_mask[:, :, :, None], -float("inf"))
        attn_prob = F.softmax(attn_score, dim=1)
        attn_vec = torch.einsum("ijbn,jbnd->ibnd", (attn_prob, w_head_v)).reshape(qlen, bsz, n_head * d_head)
        core_out = layer.layer_norm(w + layer.o_net(attn_vec))
        probs.append(attn_prob)
    return model.out_layer(core_out).transpose(0, 1), probs


def test_forward_equals_the_original_code():
    """Logits and every attention matrix equal the original's computation (T <= context + 1,
    so the band is the original's full causal segment), rows computed for a few queries too."""
    model = _tiny()
    x = torch.randint(0, 4, (2, 40))
    with torch.no_grad():
        ref_logits, ref_probs = _original_forward(model, x)
        logits, attn = model(x, return_attention=True)
        lg2, rows = model(x, return_attention=True, attention_queries=[0, 17, 39])
        cls = model.class_logits(x)
    assert torch.allclose(cls, ref_logits, atol=1e-5)
    assert torch.allclose(logits, ref_logits[..., 1] - ref_logits[..., 0], atol=1e-5)
    assert torch.allclose(lg2, logits, atol=1e-6)                         # chunked == dense path
    for l, p in enumerate(ref_probs):
        assert torch.allclose(attn[:, l], p.permute(2, 3, 0, 1), atol=1e-6)
    assert torch.allclose(rows, attn[:, :, :, [0, 17, 39]], atol=1e-6)
    # the probe's path: the first n layers' rows only, no logits
    for n in range(1, model.config["n_layers"] + 1):
        with torch.no_grad():
            none, part = model(x, return_attention=True, attention_queries=[0, 17, 39], attention_layers=n)
        assert none is None and part.shape[1] == n
        assert torch.allclose(part, attn[:, :n, :, [0, 17, 39]], atol=1e-6)


def test_two_class_cross_entropy_is_the_bce_of_the_logit_difference():
    """The project trains ``BCE(l_1 - l_0, y)``: the original's 2-class softmax cross-entropy."""
    model = _tiny()
    x = torch.randint(0, 4, (3, 30))
    y = (torch.rand(3, 30) < 0.3).float()
    with torch.no_grad():
        ce = F.cross_entropy(model.class_logits(x).reshape(-1, 2), y.reshape(-1).long())
        bce = F.binary_cross_entropy_with_logits(model(x), y)
    assert torch.isclose(ce, bce, atol=1e-6)


def test_focal_loss_is_the_originals():
    """tss_loss with focal_gamma equals the original's FocalLoss (utils/dna_functions.py:
    ``-(1 - pt)^gamma * log pt`` on the 2-class log-softmax, averaged; train.py uses gamma 0.8),
    and gamma 0 is the plain 2-class cross-entropy."""
    from seqxai.tss_training import tss_loss

    torch.manual_seed(4)
    l = torch.randn(200, 2) * 3
    y = (torch.rand(200) < 0.2).long()
    logpt = F.log_softmax(l, -1).gather(1, y[:, None])[:, 0]
    focal = (-(1 - logpt.exp()) ** 0.8 * logpt).mean()
    z = l[:, 1] - l[:, 0]
    assert torch.isclose(tss_loss(z, y.float(), None, 0.8), focal, atol=1e-6)
    assert torch.isclose(tss_loss(z, y.float(), None, 0.0), F.cross_entropy(l, y), atol=1e-6)
    assert tss_loss(z, y.float(), None, 0.8) < tss_loss(z, y.float(), None, 0.0)


def test_causality_is_exactly_the_centred_convolutions_lookahead():
    """Attention is causal, but each centred convolution reads 3 positions ahead of its layer
    input: layer l's (1-based) attention row at query t depends on tokens up to t + 3 l, and
    the logit at t on tokens up to t + 3 n_layers; a change further downstream changes nothing."""
    model = _tiny(context=20).double()
    with torch.no_grad():   # weights larger than the N(0, 0.02) init, so that every path is visible
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    n = model.config["n_layers"]
    torch.manual_seed(3)
    x = torch.randint(0, 4, (1, 60))
    t = 25
    with torch.no_grad():
        logits, attn = model(x, return_attention=True)
        assert attn[0, :, :, t, t + 1:].abs().max() == 0                  # no key after the query
        for pos in range(t + 1, 60):
            x2 = x.clone()
            x2[0, pos] = (x2[0, pos] + 1) % 4
            lg2, attn2 = model(x2, return_attention=True)
            for l in range(1, n + 1):
                change = float((attn2[0, l - 1, :, t] - attn[0, l - 1, :, t]).abs().max())
                assert (change > 1e-9) == (pos <= t + 3 * l), (l, pos, change)
            assert (abs(float(lg2[0, t] - logits[0, t])) > 1e-9) == (pos <= t + 3 * n), pos


def test_post_norm_residual_without_feed_forward():
    """Each layer returns LayerNorm(x + o_net(attention context)): rows have mean 0 and variance
    1 before the LayerNorm's affine map, and nothing (no feed-forward) follows the norm."""
    model = _tiny()
    x = torch.randint(0, 4, (2, 30))
    seen = {}
    hooks = [layer.o_net.register_forward_pre_hook(lambda m, a, l=l: seen.__setitem__(("ctx", l), a[0]))
             for l, layer in enumerate(model.layers)]
    hooks += [layer.register_forward_hook(lambda m, a, o, l=l: seen.__setitem__(("io", l), (a[0], o[0])))
              for l, layer in enumerate(model.layers)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for l, layer in enumerate(model.layers):
        inp, out = seen[("io", l)]
        ln = layer.layer_norm
        with torch.no_grad():
            res = inp + layer.o_net(seen[("ctx", l)])                     # the residual sum
            z = (out - ln.bias) / ln.weight
            var = res.var(-1, unbiased=False)
            assert torch.allclose(z.mean(-1), torch.zeros(()), atol=1e-5)
            # unit variance up to LayerNorm's eps: var(z) = var(res) / (var(res) + eps)
            assert torch.allclose(z.var(-1, unbiased=False), var / (var + ln.eps), atol=1e-4)
            assert torch.allclose(out, ln(res), atol=1e-6)


def test_key_receptive_field_and_probe_window():
    f = key_receptive_field(PAPER)
    assert f[["lo", "hi", "centre", "width"]].drop_duplicates().values.tolist() == [[-3, 3, 0, 7]]
    # layer l (0-based): upstream (l+1)*3 + l*511, downstream (l+1)*3 (earlier layers' lookahead)
    assert f.token_lo.tolist() == [-3 - 514 * l for l in range(6)]
    assert f.token_hi.tolist() == [3, 6, 9, 12, 15, 18]
    assert f.mixes_context.tolist() == [False] + [True] * 5
    own = key_receptive_field(dict(n_layers=2, context=16, conv_width=7))       # seqxai: causal conv
    assert own[["lo", "hi", "centre"]].values.tolist() == [[-6, 0, -3]] * 2
    assert own.token_lo.tolist() == [-6, -28] and own.token_hi.tolist() == [0, 0]
    from seqxai.tss_profiles import motif_flank, probe_extent, probe_window

    assert probe_extent(PAPER) == (6 * (511 + 3), 6 * 3)
    Wp, off = probe_window(PAPER)
    left = 6 * 514
    assert Wp == left + 1 + 18 and off[left] == 20                    # the query's own key: TSS + 20
    assert np.all(np.diff(off) == 1) and motif_flank(PAPER, 3) == 3 + 3


def test_probe_rows_on_the_new_model():
    """The probe's window reaches 3 n_layers tokens past the query (the lookahead the model
    reads), its rows equal the model's dense attention at the query, and the key at offset o
    is the key whose own convolution is centred on token t + o."""
    from seqxai.tss_probe import attention_rows
    from seqxai.tss_profiles import probe_extent, probe_window, tss_profiles

    model = _tiny(context=16)
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 400))
    tokens = oriented_tokens(seq)
    Wp, key_offset = probe_window(model.config)
    left, right = probe_extent(model.config)
    assert (left, right) == (3 * 19, 9)
    t_index, strands = np.array([200, 2, 390]), np.array(["+", "-", "+"])
    rows = attention_rows(model, tokens, t_index, strands, batch_size=2)
    assert rows.shape == (3, 3, 2, Wp)
    q = 200 + 5
    x = torch.as_tensor(tokens["+"][q - left : q + right + 1][None].astype(np.int64))
    with torch.no_grad():
        _, dense = model(x, return_attention=True)
    assert torch.allclose(torch.as_tensor(rows[0]), dense[0, :, :, left], atol=1e-6)
    assert np.allclose(rows.sum(-1), 1.0, atol=1e-5)
    assert rows[..., key_offset > 5].max() == 0                        # keys after the query
    # TSS 2 on "-": the window starts before the strand; left padding gets no attention
    assert rows[1][..., : left - 5 - 2].max() < 1e-6
    # TSS 390: the query 395 leaves 4 tokens of lookahead before the strand end; padded, finite
    assert np.isfinite(rows[2]).all()
    prof, offs = tss_profiles(rows, key_offset, -10, 5)
    assert prof.shape == (3, 2, 16)
    assert np.allclose(prof[..., offs == 5][..., 0], rows[..., left].mean(0))


def test_full_probe_runs_on_the_new_model(tmp_path):
    """probe_tss_attention end to end on a tiny demo genome; the summary records the
    architecture and per-layer receptive fields, the logo window is the centred conv's, and the
    figures say that keys of L1 and deeper also mix upstream (and downstream) context."""
    import seqxai.tss_probe as tp
    from seqxai.dna_plots import key_field_note, plot_logos, plot_profiles
    from seqxai.io import read_json, write_json
    from seqxai.synth_dna import make_demo_genome

    genome, tss, sites, *_ = make_demo_genome({"genome_length": 12000, "n_promoters": 24}, seed=2)
    model = _tiny(n_layers=2, context=24, label_offset=20)
    res = tp.probe_tss_attention(model, genome, tss, sites, {}, dict(n_background=20, offset_min=-40), seed=1)
    s = res["summary"]
    assert s["architecture"] == "clauwaert2021" and s["key_shift"] == 0 and s["motif_window"] == [-6, 6]
    assert [f["mixes_context"] for f in s["key_receptive_field"]] == [False, True]
    prof = res["profiles"]
    assert prof.offset.max() == 20 and prof[prof.offset == 20].attention.gt(0).all()   # the query's own key
    assert len(res["head_motifs"]) == 4 and np.isfinite(res["head_motifs"].peak_mass).all()
    # the TF test on attention mass (top-1 test as secondary columns), the control's verdict, and
    # Tomtom matches named only when reported (information floor + decoy test)
    from seqxai.tf_probe import MASS_COLUMNS
    assert set(MASS_COLUMNS) | {"top1_p", "top1_p_bh"} <= set(res["tf_enrichment"].columns)
    # the demo's TF sites (-65, -48) lie outside offsets -40..20: no test, no pass
    assert len(res["tf_enrichment"]) == 0 and s["tf_control"]["pass"] is False
    assert np.isfinite(res["head_motifs"].information_content).all()
    tt = res["tomtom"]
    best = {(b["layer"], b["head"]) for b in s["best_tomtom_match"]}
    assert best == set(zip(tt[tt.reported].layer, tt[tt.reported]["head"]))
    write_json(tmp_path / "summary.json", s)                           # as dna_summary.json holds it
    summary = read_json(tmp_path / "summary.json")
    note = key_field_note(summary)
    assert "tokens -3..+3" in note and "L1+ also mix upstream context" in note
    assert "+3 nt more downstream by L1" in note
    plot_profiles(prof, {"minus10": {"centre": -9.5}}, tmp_path / "p.png", summary)
    plot_logos(res["head_motifs"], summary, tmp_path / "l.png", n_heads=4)
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "l.png").stat().st_size > 1000


def test_save_load_records_the_architecture(tmp_path):
    model = _tiny()
    x = torch.randint(0, 4, (2, 33))
    x[1, 28:] = PAD
    save_model(tmp_path / "m.pt", model, {"seed": 3})
    loaded, ckpt = load_model(tmp_path / "m.pt")
    assert ckpt["config"]["architecture"] == "clauwaert2021" and isinstance(loaded, ClauwaertTransformer)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # a checkpoint written before the choice existed (no "architecture") loads as seqxai
    torch.manual_seed(0)
    old = build_model(dict(n_layers=1, n_heads=2, d_model=8, context=8))
    cfg = {k: v for k, v in old.config.items() if k != "architecture"}
    torch.save({"state_dict": old.state_dict(), "config": cfg}, tmp_path / "old.pt")
    back, _ = load_model(tmp_path / "old.pt")
    assert isinstance(back, TSSTransformer) and back.config["architecture"] == "seqxai"


def test_settings_the_architecture_fixes_are_checked():
    with pytest.raises(DataError, match="dna.model.attention_sink"):
        build_model({**TINY, "attention_sink": True})
    with pytest.raises(DataError, match="dna.model.position"):
        build_model({**TINY, "position": "rotary"})
    with pytest.raises(DataError, match="odd width"):
        build_model({**TINY, "conv_width": 6})
    with pytest.raises(DataError, match="dna.model.architecture"):
        build_model({"architecture": "vaswani2017"})


def test_tiny_training_run_lowers_the_loss():
    """A few epochs on the synthetic promoter genome (seqxai.synth_dna) with Adam (weight decay
    0), dropout 0.1 and the plain 2-class loss (pos_weight 1): the training loss falls."""
    from seqxai.synth_dna import make_demo_genome

    genome, tss, *_ = make_demo_genome({"genome_length": 16000, "n_promoters": 64}, seed=5)
    mcfg = dict(TINY, n_layers=2, context=32, label_offset=20, dropout=0.1, attention_sink=False)
    tcfg = dict(epochs=4, batch_size=4, lr=3e-3, weight_decay=0.0, stride=96, pos_weight=1.0,
                max_windows_per_epoch=24)
    model, metrics, log_df = train_tss_model(genome, tss, mcfg, tcfg, None, seed=2)
    assert isinstance(model, ClauwaertTransformer) and model.config["dropout"] == 0.1
    loss = log_df.train_loss.to_numpy()
    assert loss[-1] < 0.8 * loss[0], loss
    assert np.isfinite(pd.Series(metrics["splits"]["test"]).drop("auc_undefined", errors="ignore")
                       .astype(float)).all()


def test_integrated_gradients_on_the_new_model():
    """IG of the predicting logit runs on the new model (its embedding and output map under the
    project's names): completeness of the input and of every layer's output (a cut), and tokens
    past the lookahead window get exactly 0 while the window reaches the last token that matters."""
    from seqxai import dna_attribution as da

    model = _tiny(n_layers=2, context=8, label_offset=4).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    left, right = da.window_extent(model.config)
    assert (left, right) == (2 * (8 + 3), 2 * 3)
    x = np.random.default_rng(0).integers(0, 4, (2, left + 1 + right + 4))   # 4 tokens past the window
    res = da.integrated_gradients(model, x, left, None, n_steps=128, batch_size=64, heads=True)
    gap = res["f_input"] - res["f_baseline"]
    assert np.abs(res["delta"]).max() < 1e-3 * np.abs(gap).max()
    assert np.abs(res["layer_delta"]).max() < 1e-3 * np.abs(gap).max()
    contrib = np.abs(res["contribution"])
    assert contrib[:, left + right + 1:].max() == 0 and contrib[:, left + right].min() > 0
    assert res["heads"].shape == (2, 2, 2, x.shape[1])


def test_learns_a_fixed_offset_dependency():
    """Beyond the base rate: labelling position i by whether token i - 10 is an A needs the
    attention to read a fixed upstream distance. The best constant predictor has loss
    H(0.25) = 0.562 and accuracy 0.75; a few hundred Adam steps reach far below / above."""
    torch.manual_seed(0)
    model = build_model({**TINY, "n_layers": 2, "d_model": 16, "d_head": 8, "context": 16})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)

    def batch():
        x = torch.randint(0, 4, (16, 64), generator=gen)
        return x, (x[:, :-10] == 0).float()                  # labels of positions 10..63

    model.train()
    for _ in range(250):
        x, y = batch()
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 10:], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch()
    with torch.no_grad():
        logits = model(x)[:, 10:]
    assert F.binary_cross_entropy_with_logits(logits, y) < 0.1
    assert ((logits > 0).float() == y).float().mean() > 0.97
